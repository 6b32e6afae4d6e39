// The machines of a simulated boot storm (bench/storm.bench.ts). Runs inside the client
// namespace, where every machine's IP is a local address, behind a router from the
// provisioner's point of view. Each machine, with a bounded number at once, does what a
// UEFI machine's firmware and iPXE do:
//   1. DHCP: a relayed DORA for its MAC (test/helpers/dhcp-load.ts, giaddr = its own IP,
//      so each machine has its own relay socket); the address offered must be its IP
//   2. TFTP: snponly.efi (RRQ with blksize 1468 and tsize, lock-step ACKs), from its IP;
//      the byte count must be the file's size
//   3. HTTP: /ipxe/mac/<mac>.ipxe, then /ipxe/<name>.ipxe, from its IP
//   4. HTTP: /machines/<name>/ignition.json from its IP: 200 and valid JSON
// It builds its own TFTP packets (nothing from src/: a client must not share the server's
// bugs). Every wait is bounded. Input (JSON on stdin):
//   {"server","httpPort","tftpFile","tftpSize","concurrency","machines":[{name,mac,ip}]}
// Output: one JSON line {"event":"done", elapsedMs, results:[…]}.
import { createSocket, type RemoteInfo } from 'node:dgram';
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { runLoad } from './dhcp-load.ts';

export interface StormMachine {
  name: string;
  mac: string;
  ip: string;
}

export interface StormRequest {
  server: string;
  httpPort: number;
  tftpFile: string;
  tftpSize: number;
  concurrency: number;
  /** DHCP: wait per attempt (default 1000 ms; PXE firmware waits 4, 8, 16, 32 s) and attempts (default 4) */
  dhcpTimeoutMs?: number;
  dhcpAttempts?: number;
  machines: StormMachine[];
}

export type Step = 'dhcp' | 'tftp' | 'script' | 'config';

export interface MachineResult {
  name: string;
  /** ms per step that completed */
  ms: Partial<Record<Step, number>>;
  /** first machine start → this machine's Ignition received */
  doneAtMs?: number;
  /** the step that failed and why */
  failed?: { step: Step; why: string };
}

// ---------------------------------------------------------------- TFTP (RFC 1350/2347/2348/2349)

function rrq(file: string, blksize: number): Buffer {
  const parts = [file, 'octet', 'blksize', String(blksize), 'tsize', '0'];
  const b = Buffer.concat([Buffer.from([0, 1]), ...parts.map((s) => Buffer.from(s + '\0', 'ascii'))]);
  return b;
}
const ack = (block: number) => Buffer.from([0, 4, (block >> 8) & 255, block & 255]);

function parseOack(b: Buffer): Record<string, string> {
  const parts = b.subarray(2).toString('ascii').split('\0');
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < parts.length; i += 2) if (parts[i]) o[parts[i]!.toLowerCase()] = parts[i + 1]!;
  return o;
}

/** Fetch `file` from server:69 with the source address `local`; resolves the byte count or rejects. */
export function tftpFetch(server: string, local: string, file: string, o: { blksize?: number; retransmitMs?: number; timeoutMs?: number } = {}): Promise<number> {
  const want = o.blksize ?? 1468;
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    let blksize = 512;
    let expected = 1; // unwrapped
    let bytes = 0;
    let tid: RemoteInfo | undefined;
    let last: Buffer = rrq(file, want);
    let done = false;
    let retries = 0;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(idle);
      sock.close();
      if (err) reject(err);
      else resolve(bytes);
    };
    const deadline = setTimeout(() => finish(new Error(`timed out after ${o.timeoutMs ?? 30_000} ms at block ${expected}`)), o.timeoutMs ?? 30_000);
    let idle: NodeJS.Timeout | undefined;
    const sendLast = () => {
      if (tid) sock.send(last, tid.port, tid.address);
      else sock.send(last, 69, server);
      clearTimeout(idle);
      idle = setTimeout(() => {
        if (++retries > 8) return finish(new Error(`no answer after ${retries} retransmissions at block ${expected}`));
        sendLast();
      }, o.retransmitMs ?? 1000);
    };
    sock.on('error', (e) => finish(e));
    sock.on('message', (msg, from) => {
      if (done || msg.length < 4) return;
      if (!tid) tid = from;
      else if (from.port !== tid.port || from.address !== tid.address) return;
      const op = msg.readUInt16BE(0);
      if (op === 5) return finish(new Error(`TFTP error ${msg.readUInt16BE(2)}: ${msg.subarray(4).toString('utf8').replace(/\0.*$/s, '')}`));
      if (op === 6) {
        if (expected !== 1) return;
        const opts = parseOack(msg);
        blksize = Number(opts.blksize ?? 512);
        retries = 0;
        last = ack(0);
        return sendLast();
      }
      if (op !== 3) return;
      const block = msg.readUInt16BE(2);
      if (block !== (expected & 0xffff)) {
        // a duplicate: re-ACK what we have (lock-step)
        if (block === ((expected - 1) & 0xffff)) sock.send(last, tid.port, tid.address);
        return;
      }
      const len = msg.length - 4;
      bytes += len;
      retries = 0;
      last = ack(expected & 0xffff);
      expected++;
      if (len < blksize) {
        clearTimeout(idle);
        sock.send(last, tid.port, tid.address, () => finish());
      } else sendLast();
    });
    sock.bind(0, local, () => sendLast());
  });
}

// ---------------------------------------------------------------- HTTP

function httpGet(host: string, port: number, path: string, local: string, timeoutMs = 15_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, localAddress: local, agent: false, headers: { 'User-Agent': 'iPXE/1.21.1 (storm)' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`GET ${path}: timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end();
  });
}

// ---------------------------------------------------------------- one machine

async function boot(m: StormMachine, req: StormRequest, t0: number): Promise<MachineResult> {
  const r: MachineResult = { name: m.name, ms: {} };
  let step: Step = 'dhcp';
  const timed = async <T>(s: Step, fn: () => Promise<T>): Promise<T> => {
    step = s;
    const t = performance.now();
    const v = await fn();
    r.ms[s] = performance.now() - t;
    return v;
  };
  try {
    const lease = await timed('dhcp', () =>
      runLoad({ server: req.server, relay: m.ip, macs: [m.mac], concurrency: 1, timeoutMs: req.dhcpTimeoutMs ?? 1000, attempts: req.dhcpAttempts ?? 4, restarts: 3, deadlineMs: 60_000, pxe: true }),
    );
    const got = lease.acks[0];
    if (!got) throw new Error(`no lease (naks ${lease.nakCount}, failed ${lease.failed.length})`);
    if (got.ip !== m.ip) throw new Error(`offered ${got.ip}, expected ${m.ip}`);

    const bytes = await timed('tftp', () => tftpFetch(req.server, m.ip, req.tftpFile));
    if (bytes !== req.tftpSize) throw new Error(`${req.tftpFile}: ${bytes} bytes, expected ${req.tftpSize}`);

    await timed('script', async () => {
      const byMac = await httpGet(req.server, req.httpPort, `/ipxe/mac/${m.mac.replace(/:/g, '-')}.ipxe`, m.ip);
      if (byMac.status !== 200 || !byMac.body.startsWith('#!ipxe')) throw new Error(`MAC script: ${byMac.status} ${byMac.body.slice(0, 120)}`);
      const byName = await httpGet(req.server, req.httpPort, `/ipxe/${m.name}.ipxe`, m.ip);
      if (byName.status !== 200 || !byName.body.startsWith('#!ipxe')) throw new Error(`machine script: ${byName.status} ${byName.body.slice(0, 120)}`);
      if (!byName.body.includes(`/machines/${m.name}/ignition.json`)) throw new Error(`machine script does not name its Ignition: ${byName.body.slice(0, 200)}`);
    });

    await timed('config', async () => {
      const ign = await httpGet(req.server, req.httpPort, `/machines/${m.name}/ignition.json`, m.ip);
      if (ign.status !== 200) throw new Error(`Ignition: ${ign.status} ${ign.body.slice(0, 160)}`);
      const j = JSON.parse(ign.body) as { ignition?: { version?: string } };
      if (!j.ignition?.version) throw new Error('Ignition: no ignition.version');
    });
    r.doneAtMs = performance.now() - t0;
  } catch (e) {
    r.failed = { step, why: (e as Error).message };
  }
  return r;
}

export async function runStorm(req: StormRequest): Promise<{ elapsedMs: number; results: MachineResult[] }> {
  const t0 = performance.now();
  const results: MachineResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < req.machines.length) results.push(await boot(req.machines[next++]!, req, t0));
  };
  await Promise.all(Array.from({ length: Math.max(1, req.concurrency) }, worker));
  return { elapsedMs: performance.now() - t0, results };
}

if (import.meta.main) {
  const req = JSON.parse(readFileSync(0, 'utf8')) as StormRequest;
  const r = await runStorm(req);
  process.stdout.write(JSON.stringify({ event: 'done', ...r }) + '\n');
}
