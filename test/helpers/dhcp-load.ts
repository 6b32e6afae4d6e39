// A DHCP load generator that plays a relay agent (RFC 1542): it sends each client's
// DISCOVER and REQUEST unicast to the server with giaddr set to its own address and
// receives the replies on its port 67, so one process can run thousands of clients
// without owning their MACs or fighting over port 68. Used by the storm tests and by
// bench/dhcp.bench.ts against Slipway, Kea and dnsmasq alike, so it builds its own
// packets (nothing from src/: the generator must not share bugs with the server).
//
//   ip netns exec <ns> node dhcp-load.ts '{"server":"10.20.30.2","relay":"10.20.30.250","count":500}'
//   ip netns exec <ns> node dhcp-load.ts - < request.json
//
// prints {"ack":mac,"ip":…} lines as ACKs arrive when "progress" is set, then one
// {"event":"done",…} line. Every wait is bounded (per attempt and overall).
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';

export interface LoadRequest {
  /** the DHCP server's address */
  server: string;
  /** this host's address: giaddr, and where replies arrive */
  relay: string;
  /** clients to run; or `count` generated MACs (02:xx, locally administered) */
  macs?: string[];
  count?: number;
  /** RENEWING instead of DORA: mac → the address it holds (REQUEST with ciaddr) */
  renew?: Record<string, string>;
  /** exchanges in flight at once (default 64) */
  concurrency?: number;
  /** per attempt (default 1000 ms) */
  timeoutMs?: number;
  /** attempts per message (default 3) */
  attempts?: number;
  /** DORA: how often a NAKed client starts over before giving up (default 3) */
  restarts?: number;
  /** the whole run (default 120 s) */
  deadlineMs?: number;
  serverPort?: number;
  /** dress as BIOS PXE clients (default true) */
  pxe?: boolean;
  /** garbage packets to send first (the server must survive them) */
  junk?: number;
  /** print each ACK as it arrives (CLI) */
  progress?: boolean;
}

export interface LoadResult {
  acks: { mac: string; ip: string }[];
  /** renewing: clients told NAK; DORA: clients still NAKed on their last attempt */
  naks: string[];
  /** NAKs seen in all (a DORA client answers one by starting over, as RFC 2131 §3.1 says) */
  nakCount: number;
  failed: string[];
  /** first DISCOVER (or REQUEST, renewing) to ACK, per client */
  latenciesMs: number[];
  elapsedMs: number;
}

/**
 * n distinct locally administered MACs (02:5e:…). `salt` gives another set. Sequential
 * MACs are realistic (a batch of servers) but flatter some servers: dnsmasq hashes the
 * MAC to pick an address, so neighbours collide; `scatter` spreads them over the
 * 32-bit space with a bijection (multiplying by an odd constant), still distinct.
 */
export function generatedMacs(n: number, salt = 0, scatter = false): string[] {
  return Array.from({ length: n }, (_, i) => {
    const v = scatter ? Math.imul(i + salt * 0x10000, 0x9e3779b1) >>> 0 : i + salt * 0x10000;
    return ['02', '5e', ...[24, 16, 8, 0].map((shift) => ((v >>> shift) & 255).toString(16).padStart(2, '0'))].join(':');
  });
}

const ip4 = (ip: string) => Buffer.from(ip.split('.').map(Number));
const readIp = (b: Buffer, at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;

interface Build {
  type: 1 | 3;
  xid: number;
  mac: string;
  giaddr: string;
  ciaddr?: string;
  requested?: string;
  serverId?: string;
  pxe: boolean;
}

function build(b: Build): Buffer {
  const h = Buffer.alloc(240);
  h[0] = 1;
  h[1] = 1;
  h[2] = 6;
  h[3] = 1; // one relay hop
  h.writeUInt32BE(b.xid >>> 0, 4);
  if (b.ciaddr) ip4(b.ciaddr).copy(h, 12);
  ip4(b.giaddr).copy(h, 24);
  Buffer.from(b.mac.split(':').map((x) => parseInt(x, 16))).copy(h, 28);
  h.writeUInt32BE(0x63825363, 236);
  const opts: number[] = [53, 1, b.type, 55, 6, 1, 3, 6, 12, 66, 67];
  if (b.requested) opts.push(50, 4, ...ip4(b.requested));
  if (b.serverId) opts.push(54, 4, ...ip4(b.serverId));
  if (b.pxe) opts.push(60, 32, ...Buffer.from('PXEClient:Arch:00000:UNDI:002001'), 93, 2, 0, 0, 94, 3, 1, 2, 1);
  opts.push(255);
  const pkt = Buffer.concat([h, Buffer.from(opts)]);
  return pkt.length < 300 ? Buffer.concat([pkt, Buffer.alloc(300 - pkt.length)]) : pkt;
}

interface Reply {
  xid: number;
  type: number;
  yiaddr: string;
  serverId?: string;
}

function parse(b: Buffer): Reply | undefined {
  if (b.length < 240 || b[0] !== 2 || b.readUInt32BE(236) !== 0x63825363) return undefined;
  let type = 0;
  let serverId: string | undefined;
  for (let i = 240; i < b.length && b[i] !== 255; ) {
    if (b[i] === 0) {
      i++;
      continue;
    }
    const code = b[i]!;
    const len = b[i + 1] ?? 0;
    if (code === 53) type = b[i + 2] ?? 0;
    if (code === 54 && len === 4) serverId = readIp(b, i + 2);
    i += 2 + len;
  }
  return { xid: b.readUInt32BE(4), type, yiaddr: readIp(b, 16), ...(serverId ? { serverId } : {}) };
}

/** Garbage a real network sees: random bytes, truncated and corrupted DHCP messages. */
function junkPacket(i: number, giaddr: string): Buffer {
  const valid = build({ type: 1, xid: i, mac: '02:00:00:00:00:01', giaddr, pxe: true });
  switch (i % 4) {
    case 0:
      return randomBytes(1 + (i % 600));
    case 1:
      return valid.subarray(0, 100 + (i % 140));
    case 2: {
      const b = Buffer.from(valid);
      b[241 + (i % 20)] = 250; // an option length that overruns
      return b;
    }
    default: {
      const b = Buffer.from(valid);
      b.writeUInt32BE(0xdeadbeef, 236);
      return b;
    }
  }
}

interface Exchange {
  mac: string;
  xid: number;
  stage: 'offer' | 'ack';
  started: number;
  /** sends of the current message */
  attempt: number;
  /** NAKs answered by starting over */
  restarts: number;
  timer?: NodeJS.Timeout;
  offered?: string;
  serverId?: string;
}

function bindSocket(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    s.once('error', reject);
    s.bind(port, address, () => resolve(s));
  });
}

export async function runLoad(req: LoadRequest, onAck?: (mac: string, ip: string) => void): Promise<LoadResult> {
  const port = req.serverPort ?? 67;
  const macs = req.macs ?? (req.renew ? Object.keys(req.renew) : generatedMacs(req.count ?? 0));
  const timeoutMs = req.timeoutMs ?? 1000;
  const attempts = req.attempts ?? 3;
  const pxe = req.pxe ?? true;
  const sock = await bindSocket(req.relay, port);
  sock.setSendBufferSize(4 << 20);
  sock.setRecvBufferSize(4 << 20);
  // garbage first, each send completed, so it is all on the wire before the run (or the close)
  for (let i = 0; i < (req.junk ?? 0); i++) await new Promise<void>((resolve) => sock.send(junkPacket(i, req.relay), port, req.server, () => resolve()));

  const result: LoadResult = { acks: [], naks: [], nakCount: 0, failed: [], latenciesMs: [], elapsedMs: 0 };
  const inflight = new Map<number, Exchange>();
  let nextXid = randomBytes(4).readUInt32BE(0);
  let next = 0;
  const t0 = performance.now();

  return new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      for (const ex of inflight.values()) {
        clearTimeout(ex.timer);
        result.failed.push(ex.mac);
      }
      inflight.clear();
      for (; next < macs.length; next++) result.failed.push(macs[next]!);
      result.elapsedMs = performance.now() - t0;
      sock.close(() => resolve(result));
    };
    const deadline = setTimeout(finish, req.deadlineMs ?? 120_000);

    const send = (ex: Exchange) => {
      const renewIp = req.renew?.[ex.mac];
      const pkt =
        ex.stage === 'offer'
          ? build({ type: 1, xid: ex.xid, mac: ex.mac, giaddr: req.relay, pxe })
          : build({ type: 3, xid: ex.xid, mac: ex.mac, giaddr: req.relay, pxe, ...(renewIp ? { ciaddr: renewIp } : { requested: ex.offered!, serverId: ex.serverId! }) });
      sock.send(pkt, port, req.server);
      clearTimeout(ex.timer);
      ex.timer = setTimeout(() => {
        if (++ex.attempt >= attempts) return end(ex, 'failed');
        send(ex);
      }, timeoutMs);
    };
    const end = (ex: Exchange, how: 'ack' | 'nak' | 'failed', ip?: string) => {
      clearTimeout(ex.timer);
      inflight.delete(ex.xid);
      if (how === 'ack') {
        result.acks.push({ mac: ex.mac, ip: ip! });
        result.latenciesMs.push(performance.now() - ex.started);
        onAck?.(ex.mac, ip!);
      } else (how === 'nak' ? result.naks : result.failed).push(ex.mac);
      startMore();
    };
    const startMore = () => {
      while (inflight.size < (req.concurrency ?? 64) && next < macs.length) {
        const mac = macs[next++]!;
        const xid = nextXid++ >>> 0;
        const ex: Exchange = { mac, xid, stage: req.renew ? 'ack' : 'offer', started: performance.now(), attempt: 0, restarts: 0 };
        inflight.set(xid, ex);
        send(ex);
      }
      if (inflight.size === 0 && next >= macs.length) finish();
    };
    sock.on('message', (msg) => {
      const r = parse(msg);
      const ex = r && inflight.get(r.xid);
      if (!r || !ex) return;
      if (ex.stage === 'offer' && r.type === 2) {
        ex.stage = 'ack';
        ex.attempt = 0;
        ex.offered = r.yiaddr;
        ex.serverId = r.serverId ?? req.server;
        send(ex);
      } else if (ex.stage === 'ack' && r.type === 5) end(ex, 'ack', r.yiaddr);
      else if (ex.stage === 'ack' && r.type === 6) {
        result.nakCount++;
        if (req.renew || ++ex.restarts >= (req.restarts ?? 3)) return end(ex, 'nak');
        ex.attempt = 0;
        ex.stage = 'offer'; // back to INIT: DISCOVER again
        send(ex);
      }
    });
    startMore();
  });
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // the request as the argument, or on stdin ("-") when it lists too many MACs for argv
  const req = JSON.parse(process.argv[2] === '-' ? readFileSync(0, 'utf8') : (process.argv[2] ?? '{}')) as LoadRequest;
  const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
  runLoad(req, req.progress ? (mac, ip) => out({ ack: mac, ip }) : undefined).then(
    (r) => out({ event: 'done', ...r }),
    (e: Error) => {
      console.error(e.stack);
      process.exit(2);
    },
  );
}
