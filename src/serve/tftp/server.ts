// Slipway's TFTP server: read-only, confined to one root, for network-boot loaders.
//
//   const tftp = await startTftpServer({ root, address: '10.20.0.2', log, registry,
//     inventory, resolve: (path, client) => path.startsWith('pxelinux.cfg/01-') ? menu(path) : undefined });
//   ...
//   await tftp.close();
//
// Requests arrive on the well-known port; each accepted read gets its own socket (its
// transfer ID, RFC 1350) and a Transfer (transfer.ts) that sends it. Options (RFC 2347):
// blksize, tsize, timeout and windowsize are granted, within this server's limits; others
// are ignored. Write requests are refused: nothing here ever writes a file.
//
// Bind it to the provisioner's address rather than 0.0.0.0 on a multi-homed host: each
// transfer socket binds the same address, so replies leave from the address the client
// asked (Node has no IP_PKTINFO to learn the destination of a wildcard-bound request).
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { realpath, stat } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import type { Inventory } from '../inventory.ts';
import { normalizeMac } from '../../lib/mac.ts';
import {
  DEFAULT_BLKSIZE,
  ERROR_CODE,
  OPTION_REASONS,
  OPTION_RANGES,
  TftpParseError,
  decode,
  encodeError,
  encodeOack,
  opcodeOf,
  type Options,
  type ParseReason,
  type RequestPacket,
} from './packet.ts';
import { cleanPath, fsRefusal, isRefusal, locate, noDescriptors, outOfDescriptors, refusal, type Refusal } from './paths.ts';
import { FileCache, bufferReader, netasciiBlocks, octetBlocks, type BlockSource, type ByteReader, type CacheLimits } from './source.ts';
import { Transfer, type TransferResult } from './transfer.ts';
import { tftpMetrics, type TftpMetrics } from './metrics.ts';

/**
 * Answers a path before the filesystem is asked: a Buffer is served, undefined falls
 * through to the root, a throw is ERROR 0 (counted as refusal "hook-error"). `path` is
 * already cleaned: relative, "/"-separated, no "..", no leading "/" ("pxelinux.cfg/01-52-54-00-20-30-11").
 */
export type ResolveHook = (path: string, clientAddress: string) => Buffer | undefined | Promise<Buffer | undefined>;

export interface TftpServerOptions {
  /** the directory served; must exist */
  root: string;
  /** default 0.0.0.0 */
  address?: string;
  /** default 69; 0 picks a free port (tests) */
  port?: number;
  /** virtual files (pxelinux.cfg/01-<mac> menus), consulted with the cleaned path before the root */
  resolve?: ResolveHook;
  /** told about every MAC a request names (pxelinux.cfg/01-<mac>) */
  inventory?: Pick<Inventory, 'seen'>;
  log: Logger;
  registry: Registry;
  /** largest blksize granted (default 65464, RFC 2348's maximum) */
  maxBlksize?: number;
  /** largest windowsize granted (default 64) */
  maxWindowsize?: number;
  /** a window never holds more than this many bytes (default 1 MiB): bounds memory per transfer */
  maxWindowBytes?: number;
  /** first retransmission timeout when the client sets none (default 1000 ms) */
  timeoutMs?: number;
  /** cap of the doubling retransmission timeout (default 10 s) */
  maxTimeoutMs?: number;
  /** retransmissions of one window before a transfer is given up (default 5) */
  maxRetries?: number;
  /** concurrent transfers; more get ERROR 0 "server busy" (default 1000) */
  maxTransfers?: number;
  cache?: CacheLimits;
}

export interface TftpServer {
  /** the port actually bound */
  port: number;
  address: string;
  /** stop listening, end every transfer (clients get ERROR 0), release every socket */
  close(): Promise<void>;
}

interface Limits {
  maxBlksize: number;
  maxWindowsize: number;
  maxWindowBytes: number;
  timeoutMs: number;
  maxTimeoutMs: number;
  maxRetries: number;
  maxTransfers: number;
}

export async function startTftpServer(opts: TftpServerOptions): Promise<TftpServer> {
  const realRoot = await realpath(opts.root);
  if (!(await stat(realRoot)).isDirectory()) throw new Error(`TFTP root ${opts.root} is not a directory`);
  const address = opts.address ?? '0.0.0.0';
  const server = new Server(opts, realRoot, address, limitsOf(opts));
  const port = await server.listen(opts.port ?? 69);
  opts.log.info({ root: realRoot, address, port }, 'tftp listening');
  return { port, address, close: () => server.close() };
}

function limitsOf(o: TftpServerOptions): Limits {
  return {
    maxBlksize: clamp(o.maxBlksize ?? OPTION_RANGES.blksize.max, OPTION_RANGES.blksize.min, OPTION_RANGES.blksize.max),
    maxWindowsize: clamp(o.maxWindowsize ?? 64, 1, OPTION_RANGES.windowsize.max),
    maxWindowBytes: Math.max(o.maxWindowBytes ?? 1024 * 1024, 1),
    timeoutMs: Math.max(o.timeoutMs ?? 1000, 1),
    maxTimeoutMs: Math.max(o.maxTimeoutMs ?? 10_000, 1),
    maxRetries: Math.max(o.maxRetries ?? 5, 0),
    maxTransfers: Math.max(o.maxTransfers ?? 1000, 1),
  };
}

const clamp = (n: number, lo: number, hi: number) => Math.min(Math.max(Math.floor(n), lo), hi);

/** What this server grants for a request's options (RFC 2347: each reply value is at most what was asked). */
export interface Negotiated {
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  /** the OACK's options; undefined when none is acknowledged, and DATA 1 answers the request directly */
  oack: Options | undefined;
}

export function negotiate(asked: Options, size: number | undefined, limits: Pick<Limits, 'maxBlksize' | 'maxWindowsize' | 'maxWindowBytes' | 'timeoutMs'>): Negotiated {
  const oack: Options = {};
  const blksize = asked.blksize === undefined ? DEFAULT_BLKSIZE : Math.min(asked.blksize, limits.maxBlksize);
  if (asked.blksize !== undefined) oack.blksize = blksize;
  // A window never holds more than maxWindowBytes, whatever the block size.
  const windowCap = Math.max(1, Math.min(limits.maxWindowsize, Math.floor(limits.maxWindowBytes / blksize)));
  const windowsize = asked.windowsize === undefined ? 1 : Math.min(asked.windowsize, windowCap);
  if (asked.windowsize !== undefined) oack.windowsize = windowsize;
  // RFC 2349: the server either accepts the client's timeout as is, or leaves it out.
  if (asked.timeout !== undefined) oack.timeout = asked.timeout;
  // RFC 2349: tsize is acknowledged with the file's size, when it is known up front.
  if (asked.tsize !== undefined && size !== undefined) oack.tsize = size;
  return { blksize, windowsize, timeoutMs: asked.timeout !== undefined ? asked.timeout * 1000 : limits.timeoutMs, oack: Object.keys(oack).length ? oack : undefined };
}

/** Parse errors of requests that are answered (see onBadRequest). */
const ANSWERED_PARSE_ERRORS: ReadonlySet<string> = new Set<ParseReason>(['bad-mode', 'bad-encoding', ...OPTION_REASONS]);

/** A MAC in a request path: PXELINUX's pxelinux.cfg/01-<mac> and GRUB's grub.cfg-01-<mac>. */
export function macInPath(path: string): string | undefined {
  const m = /(?:^|[/-])01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})$/i.exec(path);
  return m ? normalizeMac(m[1]!) : undefined;
}

/** An open file ready to send: its reader, size and where it came from (for logs). */
interface Opened {
  reader: ByteReader;
  size: number;
  origin: 'virtual' | 'cache' | 'disk';
}

class Server {
  private readonly opts: TftpServerOptions;
  private readonly realRoot: string;
  private readonly address: string;
  private readonly limits: Limits;
  private readonly log: Logger;
  private readonly m: TftpMetrics;
  private readonly cache: FileCache;
  private readonly socket: Socket;
  /** transfers by client address:port, so a retransmitted request does not start a second one */
  private readonly transfers = new Map<string, { request: Buffer; transfer: Transfer }>();
  /** requests being opened (no transfer yet), by client address:port: they count against maxTransfers */
  private readonly pending = new Map<string, Buffer>();
  private closed = false;

  constructor(opts: TftpServerOptions, realRoot: string, address: string, limits: Limits) {
    this.opts = opts;
    this.realRoot = realRoot;
    this.address = address;
    this.limits = limits;
    this.log = opts.log;
    this.m = tftpMetrics(opts.registry);
    this.m.limit.set(limits.maxTransfers);
    this.cache = new FileCache(opts.cache);
    this.socket = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
  }

  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(port, this.address, () => {
        this.socket.off('error', reject);
        this.socket.on('error', (err) => this.log.error({ err: err.message }, 'tftp socket error'));
        this.socket.on('message', (msg, rinfo) => this.onRequest(msg, rinfo));
        resolve(this.socket.address().port);
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const running = [...this.transfers.values()].map(({ transfer }) => {
      transfer.abort('closed', 'server closing');
      return transfer.done;
    });
    await Promise.all([new Promise<void>((r) => this.socket.close(() => r())), ...running]);
  }

  // ------------------------------------------------------------ requests

  private onRequest(msg: Buffer, from: RemoteInfo): void {
    let req: RequestPacket;
    try {
      const p = decode(msg);
      if (p.op !== 'RRQ' && p.op !== 'WRQ') return this.drop('not-a-request', from);
      req = p;
    } catch (e) {
      return this.onBadRequest(msg, e, from);
    }
    this.m.requests.inc({ op: req.op });
    this.handle(req, msg, from).catch((e: unknown) => {
      // Nothing below is supposed to throw; if it does, the client still hears back.
      this.log.error({ err: (e as Error).message, client: from.address }, 'tftp request failed');
      this.reply(from, ERROR_CODE.NOT_DEFINED, 'Internal error');
    });
  }

  /**
   * An undecodable packet on the request port. A complete request with a bad mode or bad
   * options is a real client's mistake and gets an ERROR (8 for options, RFC 2347) so it
   * can retry without them; truncated garbage is only dropped, so a spoofed two-byte
   * datagram never draws a larger reply at someone else.
   */
  private onBadRequest(msg: Buffer, e: unknown, from: RemoteInfo): void {
    const reason = e instanceof TftpParseError ? e.reason : 'undecodable';
    this.drop(reason, from, (e as Error).message);
    const op = opcodeOf(msg);
    if ((op !== 'RRQ' && op !== 'WRQ') || !ANSWERED_PARSE_ERRORS.has(reason)) return;
    const optionProblem = OPTION_REASONS.has(reason as ParseReason);
    if (optionProblem) this.m.refusals.inc({ reason: 'bad-option' });
    this.reply(from, optionProblem ? ERROR_CODE.OPTION_NEGOTIATION : ERROR_CODE.ILLEGAL_OPERATION, optionProblem ? 'Bad option' : 'Malformed request');
  }

  private async handle(req: RequestPacket, raw: Buffer, from: RemoteInfo): Promise<void> {
    const key = `${from.address}:${from.port}`;
    // The same request again while we answer it is the client retransmitting it.
    if (this.transfers.get(key)?.request.equals(raw) || this.pending.get(key)?.equals(raw)) return this.drop('duplicate-request', from);
    const path = this.precheck(req);
    if (isRefusal(path)) return this.refuse(path, req, from);
    if (this.transfers.size + this.pending.size >= this.limits.maxTransfers) {
      return this.refuse(refusal('busy', ERROR_CODE.NOT_DEFINED, 'Server busy'), req, from);
    }
    this.pending.set(key, raw);
    let opened: Opened | Refusal;
    try {
      opened = await this.openFor(path, from);
    } finally {
      if (this.pending.get(key) === raw) this.pending.delete(key);
    }
    if (isRefusal(opened)) return this.refuse(opened, req, from);
    await this.begin(req, path, raw, opened, from, key);
  }

  /** Refusals that need no filesystem (writes, mail mode, bad names); else the cleaned path. */
  private precheck(req: RequestPacket): string | Refusal {
    if (req.op === 'WRQ') return refusal('write-request', ERROR_CODE.ACCESS_VIOLATION, 'Read-only server');
    // RFC 1350 itself says mail mode should not be used; no boot loader does.
    if (req.mode === 'mail') return refusal('bad-mode', ERROR_CODE.ILLEGAL_OPERATION, 'Mail mode not supported');
    return cleanPath(req.filename);
  }

  /** The bytes a path names: the resolve hook's, else the root's file. */
  private async openFor(path: string, from: RemoteInfo): Promise<Opened | Refusal> {
    const mac = macInPath(path);
    if (mac) this.opts.inventory?.seen(mac, 'tftp', { file: path, client: from.address });
    if (this.opts.resolve) {
      let virtual: Buffer | undefined;
      try {
        virtual = await this.opts.resolve(path, from.address);
      } catch (e) {
        // The hook's bug must not look like a missing file (PXELINUX would fall back to its default menu).
        this.log.error({ err: (e as Error).message, file: path, client: from.address }, 'tftp resolve hook failed');
        return refusal('hook-error', ERROR_CODE.NOT_DEFINED, 'Internal error');
      }
      if (virtual !== undefined) return { reader: bufferReader(virtual), size: virtual.length, origin: 'virtual' };
    }
    const located = await locate(this.realRoot, path);
    if (isRefusal(located)) return located;
    try {
      const { reader, size, hit } = await this.cache.open(located);
      if (hit !== undefined) this.m.cache.inc({ result: hit ? 'hit' : 'miss' });
      return { reader, size, origin: hit ? 'cache' : 'disk' };
    } catch (e) {
      return fsRefusal(e);
    }
  }

  private async begin(req: RequestPacket, path: string, raw: Buffer, opened: Opened, from: RemoteInfo, key: string): Promise<void> {
    const startedAt = performance.now();
    // tftp-hpa does not acknowledge tsize in netascii mode either: the converted size is unknown until sent.
    const neg = negotiate(req.options, req.mode === 'octet' ? opened.size : undefined, this.limits);
    let socket: Socket;
    try {
      socket = await this.transferSocket(from);
    } catch (e) {
      await opened.reader.close().catch(() => {});
      this.log.warn({ err: (e as Error).message }, 'tftp cannot open a transfer socket');
      // "Server busy" is kept for maxTransfers: running out of descriptors is another problem
      return this.refuse(outOfDescriptors(e) ? noDescriptors : refusal('socket-error', ERROR_CODE.NOT_DEFINED, 'Internal error'), req, from);
    }
    if (this.closed) {
      socket.close();
      return void opened.reader.close().catch(() => {});
    }
    const source: BlockSource = req.mode === 'netascii' ? netasciiBlocks(opened.reader, neg.blksize) : octetBlocks(opened.reader, neg.blksize);
    for (const name of Object.keys(neg.oack ?? {})) this.m.options.inc({ option: name });
    const transfer = new Transfer({
      socket,
      source,
      blksize: neg.blksize,
      windowsize: neg.windowsize,
      timeoutMs: neg.timeoutMs,
      maxTimeoutMs: this.limits.maxTimeoutMs,
      maxRetries: this.limits.maxRetries,
      oack: neg.oack ? encodeOack(neg.oack) : undefined,
      startedAt,
      events: this.transferEvents(from),
    });
    // A different request from the same client port: the client gave up on the old transfer.
    this.transfers.get(key)?.transfer.abort('superseded', 'client sent a new request');
    this.transfers.set(key, { request: raw, transfer });
    this.m.active.inc();
    const info = { file: path, client: from.address, origin: opened.origin, size: opened.size, blksize: neg.blksize, windowsize: neg.windowsize };
    this.log.debug(info, 'tftp transfer start');
    transfer.start();
    const result = await transfer.done;
    this.m.active.dec();
    if (this.transfers.get(key)?.transfer === transfer) this.transfers.delete(key);
    this.record(result, info);
  }

  /** A new port (the transfer ID) on the server's address, connected to the client (see transfer.ts). */
  private transferSocket(client: RemoteInfo): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = createSocket(isIPv6(this.address) ? 'udp6' : 'udp4');
      const failed = (e: Error) => {
        closeQuietly(s);
        reject(e);
      };
      s.once('error', failed);
      s.bind(0, this.address, () =>
        s.connect(client.port, client.address, () => {
          s.off('error', failed);
          resolve(s);
        }),
      );
    });
  }

  private transferEvents(from: RemoteInfo) {
    return {
      sent: (bytes: number, retransmits: number) => {
        this.m.sentBytes.inc(bytes);
        if (retransmits) this.m.retransmits.inc(retransmits);
      },
      oackRetransmitted: () => this.m.retransmits.inc(),
      dropped: (reason: string) => this.drop(reason, from),
      sendError: (err: Error) => this.log.debug({ err: err.message, client: from.address }, 'tftp send failed'),
    };
  }

  private record(r: TransferResult, info: Record<string, unknown>): void {
    const ms = Math.round(r.ms);
    if (r.ok) {
      this.m.completed.inc();
      this.m.duration.observe(r.ms / 1000);
      this.log.info({ ...info, bytes: r.bytes, ms }, 'tftp sent');
    } else {
      this.m.failed.inc({ reason: r.reason });
      // A client abort right after the OACK is PXE's way to learn a size: not worth a warning.
      const level = r.reason === 'client_abort' || r.reason === 'superseded' ? 'info' : 'warn';
      this.log[level]({ ...info, reason: r.reason, detail: r.detail, bytes: r.bytes, ms }, 'tftp transfer ended early');
    }
  }

  // ------------------------------------------------------------ answers

  private refuse(r: Refusal, req: RequestPacket, from: RemoteInfo): void {
    this.m.refusals.inc({ reason: r.refused });
    // Missing files are routine (PXELINUX probes a dozen config names); the rest is worth a warning.
    const level = r.refused === 'not-found' ? 'debug' : 'warn';
    this.log[level]({ op: req.op, file: req.filename.slice(0, 256), client: from.address, reason: r.refused }, 'tftp refused');
    this.reply(from, r.code, r.message);
  }

  /** An ERROR from the request port: no transfer exists to send it from, and clients accept it from there. */
  private reply(to: RemoteInfo, code: number, message: string): void {
    if (this.closed) return;
    this.socket.send(encodeError(code, message), to.port, to.address, (err) => {
      if (err) this.log.debug({ err: err.message, client: to.address }, 'tftp send failed');
    });
  }

  private drop(reason: string, from: RemoteInfo, detail?: string): void {
    this.m.dropped.inc({ reason });
    this.log.debug({ reason, client: from.address, port: from.port, detail }, 'tftp packet dropped');
  }
}

function closeQuietly(s: Socket): void {
  try {
    s.close();
  } catch {
    // not open
  }
}
