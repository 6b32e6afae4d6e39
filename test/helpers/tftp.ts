// Test tools for the TFTP server:
//  - startTestTftp(): Slipway's server on 127.0.0.1 with a private registry and the log
//    lines kept in memory, plus metric lookups.
//  - tftpGet(): a small in-process TFTP client (lock-step or RFC 7440 windows) that can
//    lose DATA on purpose, repeat its ACKs, or never ACK: the server's retransmission,
//    duplicate-ACK and give-up paths are checked through it.
//  - LossyProxy: a UDP relay between a real client and the server that drops packets at
//    random (seeded) in both directions, and can delay them, standing in for
//    `tc netem loss/delay` where the kernel has no sch_netem.
//  - runBounded(): spawn a client program, kill it by its pid past a deadline.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import type { Registry } from 'prom-client';
import { newLogger } from '../../src/serve/log.ts';
import { newRegistry } from '../../src/serve/metrics.ts';
import { startTftpServer, type TftpServer, type TftpServerOptions } from '../../src/serve/tftp/server.ts';
import { decode, encodeAck, encodeError, encodeRequest, type Options } from '../../src/serve/tftp/packet.ts';

// ---------------------------------------------------------------- the server under test

export interface TestTftp {
  server: TftpServer;
  port: number;
  registry: Registry;
  /** every log line so far, parsed */
  logs: Record<string, unknown>[];
  /** a metric's value (0 when absent); labels must match exactly the ones given */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export async function startTestTftp(opts: Omit<TftpServerOptions, 'log' | 'registry' | 'address' | 'port'> & Partial<Pick<TftpServerOptions, 'address' | 'port'>>): Promise<TestTftp> {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const registry = newRegistry();
  const server = await startTftpServer({ address: '127.0.0.1', port: 0, ...opts, log: newLogger({ level: 'debug', pretty: false, destination }), registry });
  return {
    server,
    port: server.port,
    registry,
    logs,
    metric: (name, labels) => metricValue(registry, name, labels),
    close: () => server.close(),
  };
}

export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  const want = Object.entries(labels);
  let sum = 0;
  for (const v of values) {
    const l = v.labels as Record<string, string | number>;
    if (want.every(([k, x]) => String(l[k]) === x) && (!('metricName' in v) || v.metricName === undefined || v.metricName === name)) sum += v.value;
  }
  return sum;
}

// ---------------------------------------------------------------- a scriptable client

export interface GetOptions {
  options?: Options;
  mode?: 'octet' | 'netascii';
  /** ignore this arrival of DATA block `block` (unwrapped, 1-based); `copy` counts its arrivals, from 1 */
  dropData?: (block: number, copy: number) => boolean;
  /** send every ACK this many times (a duplicating network) */
  ackCopies?: number;
  /** send the request, then never answer: the server has to give up */
  silent?: boolean;
  /** re-send the last ACK when nothing arrives for this long (the client's own timer) */
  retransmitMs?: number;
  /** overall bound */
  timeoutMs?: number;
  /** stop after this many DATA blocks have been taken in order, then send an ERROR (a PXE-style abort) */
  abortAfter?: number;
}

export interface GetResult {
  data: Buffer;
  oack?: Options;
  error?: { code: number; message: string };
  timedOut: boolean;
  /** arrivals per unwrapped block number */
  copies: Map<number, number>;
  dataPackets: number;
  /** a DATA block numbered 0 arrived after block 65535: the block number wrapped */
  wrapped: boolean;
  serverTid?: number;
}

/**
 * Fetch a file like an RFC 1350 / RFC 7440 receiver: ACK every block (lock-step) or every
 * `windowsize` in-order blocks, ACK the last in-order block once when a gap shows (RFC 7440
 * section 4), re-ACK a duplicate in lock-step (as real clients do, which is what would
 * trigger the Sorcerer's Apprentice bug in a server that answered every ACK).
 */
export function tftpGet(port: number, filename: string, o: GetOptions = {}, host = '127.0.0.1'): Promise<GetResult> {
  return new Promise((resolve) => {
    const sock = createSocket('udp4');
    const chunks: Buffer[] = [];
    const copies = new Map<number, number>();
    const r: GetResult = { data: Buffer.alloc(0), timedOut: false, copies, dataPackets: 0, wrapped: false };
    let blksize = 512;
    let windowsize = 1;
    let expected = 1; // unwrapped number of the next block we need
    let inWindow = 0;
    let gapReported = false;
    let lastAck: Buffer | undefined;
    let tid: RemoteInfo | undefined;
    let over = false; // no more packets taken
    let settled = false;
    const request = encodeRequest({ op: 'RRQ', filename, mode: o.mode ?? 'octet', options: o.options ?? {} });

    const finish = () => {
      over = true;
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(idle);
      r.data = Buffer.concat(chunks);
      sock.close();
      resolve(r);
    };
    const deadline = setTimeout(() => {
      r.timedOut = true;
      finish();
    }, o.timeoutMs ?? 10_000);
    let idle: NodeJS.Timeout | undefined;
    const rearm = () => {
      clearTimeout(idle);
      if (o.silent || !o.retransmitMs) return;
      idle = setTimeout(() => {
        if (over) return;
        if (lastAck && tid) sock.send(lastAck, tid.port, tid.address);
        else sock.send(request, port, host);
        rearm();
      }, o.retransmitMs);
    };
    // `then` runs once the ACK has left: closing the socket earlier would cancel the send.
    const ack = (wire: number, then?: () => void) => {
      lastAck = encodeAck(wire & 0xffff);
      const n = o.ackCopies ?? 1;
      for (let i = 0; i < n; i++) sock.send(lastAck, tid!.port, tid!.address, i === n - 1 ? then : undefined);
    };

    sock.on('message', (msg, from) => {
      if (over) return;
      if (!tid) {
        tid = from;
        r.serverTid = from.port;
      } else if (from.port !== tid.port) return;
      rearm();
      const p = decode(msg);
      if (p.op === 'ERROR') {
        r.error = { code: p.code, message: p.message };
        return finish();
      }
      if (p.op === 'OACK') {
        r.oack = p.options;
        blksize = p.options.blksize ?? 512;
        windowsize = p.options.windowsize ?? 1;
        if (!o.silent) ack(0);
        return;
      }
      if (p.op !== 'DATA') return;
      r.dataPackets++;
      // Unwrap relative to what we expect: the block is within half the number space of it.
      const delta = (p.block - (expected & 0xffff) + 0x10000) & 0xffff;
      const seq = delta < 0x8000 ? expected + delta : expected - (0x10000 - delta);
      if (p.block === 0 && seq > 0) r.wrapped = true;
      const copy = (copies.get(seq) ?? 0) + 1;
      copies.set(seq, copy);
      if (o.silent || o.dropData?.(seq, copy)) return;
      if (seq === expected) {
        chunks.push(Buffer.from(p.data));
        expected++;
        inWindow++;
        gapReported = false;
        if (o.abortAfter !== undefined && expected - 1 >= o.abortAfter) {
          over = true; // take nothing more; the socket closes once the ERROR is out
          sock.send(encodeError(0, 'abort'), tid.port, tid.address, finish);
          return;
        }
        const final = p.data.length < blksize;
        if (final) {
          over = true;
          ack(seq, finish);
        } else if (inWindow >= windowsize) {
          ack(seq);
          inWindow = 0;
        }
      } else if (seq < expected) {
        if (windowsize === 1) ack(expected - 1); // lock-step clients re-ACK duplicates
      } else if (windowsize > 1 && !gapReported) {
        gapReported = true; // RFC 7440: report the gap once with the last in-order block
        inWindow = 0;
        ack(expected - 1);
      }
    });
    sock.bind(0, '127.0.0.1', () => {
      sock.send(request, port, host);
      rearm();
    });
  });
}

// ---------------------------------------------------------------- packet loss for real clients

/** A deterministic PRNG (mulberry32), so a lossy run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface Session {
  client: RemoteInfo;
  /** packets relayed so far, both ways */
  packets: number;
  /** talks to the server: the request port, then its transfer IDs */
  upstream: Socket;
  /** the client-facing twin of each server port (the client sees its own TID per server TID) */
  faces: Map<number, Socket>;
}

export interface ProxyOptions {
  /** probability of dropping each packet after a client's request, both directions */
  loss?: number;
  /**
   * packets of each session that always pass (default 1, the request). 3 also spares the
   * option handshake (OACK, ACK 0): atftp aborts on a retransmitted OACK ("unexpected OACK"),
   * a client bug that would otherwise fail a test about the server.
   */
  spare?: number;
  seed?: number;
  /** delay of every packet, each way, in ms (a timer's resolution: 1 ms is about the least) */
  delayMs?: number;
  /** the client-facing port (default: any free one) */
  port?: number;
}

/**
 * Clients talk to `port`; every packet after a session's first `spare` is dropped with
 * probability `loss`, in both directions. The request itself always passes: its loss is
 * recovered by the client's own timer, seconds long in most clients, and that would only
 * make the test slow, not test the server. With `delayMs`, every packet (the request too)
 * is held that long first, in order: a LAN round trip on loopback.
 */
export class LossyProxy {
  readonly port: number;
  forwarded = 0;
  dropped = 0;
  private readonly front: Socket;
  private readonly target: number;
  private readonly loss: number;
  private readonly spare: number;
  private readonly delayMs: number;
  private readonly random: () => number;
  private readonly sessions = new Map<string, Session>();

  private constructor(front: Socket, target: number, o: ProxyOptions) {
    this.front = front;
    this.port = front.address().port;
    this.target = target;
    this.loss = o.loss ?? 0;
    this.spare = o.spare ?? 1;
    this.delayMs = o.delayMs ?? 0;
    this.random = seededRandom(o.seed ?? 1);
    front.on('message', (msg, from) => this.fromClient(msg, from));
  }

  static async start(targetPort: number, o: ProxyOptions = {}): Promise<LossyProxy> {
    const front = await boundSocket(o.port);
    return new LossyProxy(front, targetPort, o);
  }

  /** Send now, or after the delay (timers of one duration fire in order, so packets stay in order). */
  private forward(sock: Socket, msg: Buffer, port: number, address: string): void {
    this.forwarded++;
    if (this.delayMs > 0) setTimeout(() => sock.send(msg, port, address), this.delayMs);
    else sock.send(msg, port, address);
  }

  private fromClient(msg: Buffer, from: RemoteInfo): void {
    const key = `${from.address}:${from.port}`;
    let s = this.sessions.get(key);
    if (!s) {
      const session: Session = { client: from, packets: 0, upstream: createSocket('udp4'), faces: new Map() };
      session.upstream.on('message', (m, srv) => void this.fromServer(session, m, srv));
      session.upstream.bind(0, '127.0.0.1');
      this.sessions.set(key, session);
      s = session;
    }
    if (this.lose(s)) return;
    this.forward(s.upstream, msg, this.target, '127.0.0.1');
  }

  private async fromServer(s: Session, msg: Buffer, srv: RemoteInfo): Promise<void> {
    let face = s.faces.get(srv.port);
    if (!face) {
      face = await boundSocket();
      s.faces.set(srv.port, face);
      face.on('message', (m, from) => {
        if (from.port !== s.client.port || this.lose(s)) return;
        this.forward(s.upstream, m, srv.port, '127.0.0.1');
      });
    }
    if (this.lose(s)) return;
    this.forward(face, msg, s.client.port, s.client.address);
  }

  private lose(s: Session): boolean {
    if (++s.packets <= this.spare || this.loss <= 0 || this.random() >= this.loss) return false;
    this.dropped++;
    return true;
  }

  async close(): Promise<void> {
    const socks = [this.front];
    for (const s of this.sessions.values()) socks.push(s.upstream, ...s.faces.values());
    await Promise.all(socks.map((x) => new Promise<void>((r) => x.close(() => r()))));
  }
}

function boundSocket(port = 0): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(port, '127.0.0.1', () => resolve(s));
  });
}

// ---------------------------------------------------------------- client programs

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  ms: number;
}

/** Run a program to completion; SIGKILL by its pid after timeoutMs. Never rejects for a non-zero exit. */
export function runBounded(cmd: string, args: string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => {
      out += `\n[runBounded] ${cmd} killed after ${opts.timeoutMs ?? 30_000} ms`;
      if (child.pid) process.kill(child.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, ms: performance.now() - t0 });
    });
  });
}
