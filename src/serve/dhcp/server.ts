// The DHCP server's edge: UDP sockets, metrics, logs. Decoding is packet.ts, decisions
// are policy.ts, leases are leases.ts; this file only moves bytes and keeps score.
//
// Sockets:
//   0.0.0.0:67          broadcasts from clients on the segment (and everything else)
//   <serverIp>:67       unicasts (relays, renewals) land here, and every reply leaves from
//                       it: Linux routes a limited broadcast (255.255.255.255) sent from a
//                       socket bound to an interface address out of that interface, so
//                       replies reach the provisioning segment even when the default route
//                       points elsewhere (node:dgram cannot set IP_PKTINFO/SO_BINDTODEVICE)
//   0.0.0.0:4011        proxy mode only: the PXE client's second request (PXE 2.1 §2.2)
// Where a reply goes (RFC 2131 §4.1): to the relay (giaddr:67) when relayed; NAKs to
// broadcast; to ciaddr when the client has an address; else broadcast. A client that
// did not set the broadcast flag would prefer a unicast to yiaddr, which needs an ARP
// entry user space cannot add; §4.1 allows the broadcast instead.
//
// An ACK leaves only after the lease store has made its binding durable; ACKs arriving
// in one event-loop turn share one commit (see leases.ts).
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { bootUrls as specBootUrls } from '../../plan/phases/pxe/boot.ts';
import type { Spec } from '../../spec/types.ts';
import type { Inventory } from '../inventory.ts';
import type { Logger } from '../log.ts';
import { counter, histogram } from '../metrics.ts';
import { MemoryLeaseStore, SqliteLeaseStore, type LeaseStore, type Pool } from './leases.ts';
import { DhcpParseError, LIMITED_BROADCAST, MessageType, Opt, ZERO, decode, encode, macOf, messageType, optU16, typeName, type Packet } from './packet.ts';
import { handle, type Decision, type DhcpMode, type PolicyContext, type Via } from './policy.ts';

/** how often the info-level line counting ACKs is written (while there are any) */
const SUMMARY_MS = 10_000;

export const LEASES_FILE = 'dhcp-leases.sqlite';

export interface DhcpPorts {
  /** where servers listen and relays receive replies (67) */
  server: number;
  /** where clients receive replies (68) */
  client: number;
  /** ProxyDHCP's PXE boot server port (4011) */
  proxy: number;
}
export const DEFAULT_PORTS: DhcpPorts = { server: 67, client: 68, proxy: 4011 };

export interface DhcpServerOptions {
  mode: DhcpMode;
  /** the provisioner's address on the segment: server identifier, reply source, default TFTP server */
  serverIp: string;
  /** TFTP server for the loaders (siaddr, option 66); default serverIp */
  tftpServer?: string;
  subnet: PolicyContext['subnet'];
  router?: string;
  dns?: string[];
  domain?: string;
  /** addresses for MACs not in the inventory (full mode) */
  pool?: Pool;
  /** default 3600 s, as the exported dhcpd/Kea/dnsmasq configs */
  leaseSeconds?: number;
  inventory: Inventory;
  bootUrls: PolicyContext['bootUrls'];
  /** what BIOS PXE firmware is handed: iPXE's undionly.kpxe (default) or pxelinux.0 */
  loader?: PolicyContext['loader'];
  /** full mode: leases persist in <stateDir>/dhcp-leases.sqlite; without it (and without `leases`) they live in memory. Proxy mode keeps no leases. */
  stateDir?: string;
  /** a lease store of the caller's (not closed by close()) */
  leases?: LeaseStore;
  /**
   * Where the receiving socket binds (default 0.0.0.0). Leave it: clients without an
   * address broadcast, and a socket bound to a unicast address never sees broadcasts.
   */
  listenAddress?: string;
  /** default 67/68/4011; tests and benchmarks may move them */
  ports?: Partial<DhcpPorts>;
  registry?: Registry;
  log?: Logger;
  /** ms since the epoch (tests) */
  now?: () => number;
}

export interface DhcpServer {
  /** the DHCP port's socket address */
  address: { address: string; port: number };
  /** proxy mode: the PXE port's socket address */
  proxyAddress?: { address: string; port: number };
  leases: LeaseStore;
  close(): Promise<void>;
}

/** The parts of DhcpServerOptions a cluster file decides; undefined when its DHCP mode is off. */
export function dhcpConfigFromSpec(spec: Spec): Pick<DhcpServerOptions, 'mode' | 'serverIp' | 'subnet' | 'router' | 'dns' | 'pool' | 'bootUrls'> | undefined {
  const d = spec.provisioner.dhcp;
  if (d.mode === 'off') return undefined;
  return {
    mode: d.mode,
    serverIp: spec.provisioner.address,
    subnet: d.subnet,
    ...(d.router ? { router: d.router } : {}),
    dns: d.dns,
    ...(d.pool ? { pool: d.pool } : {}),
    bootUrls: specBootUrls(spec),
  };
}

/** RFC 2131 §4.1 (see the header): where a reply to `req` goes. */
export function replyTarget(req: Packet, reply: Packet, from: { address: string; port: number }, via: Via, ports: DhcpPorts): { address: string; port: number } {
  // PXE 2.1 §2.2.3: the boot server answers the client's own address and port.
  if (via === 'pxe') return { address: from.address, port: from.port };
  if (req.giaddr !== ZERO) return { address: req.giaddr, port: ports.server };
  if (messageType(reply) === MessageType.NAK) return { address: LIMITED_BROADCAST, port: ports.client };
  if (req.ciaddr !== ZERO) return { address: req.ciaddr, port: ports.client };
  return { address: LIMITED_BROADCAST, port: ports.client };
}

function metrics(r: Registry) {
  return {
    requests: counter(r, 'slipway_dhcp_requests_total', 'DHCP messages received, by message type', ['type']),
    replies: counter(r, 'slipway_dhcp_replies_total', 'DHCP replies sent, by message type', ['type']),
    drops: counter(r, 'slipway_dhcp_dropped_total', 'DHCP messages dropped, by reason', ['reason']),
    latency: histogram(r, 'slipway_dhcp_handle_seconds', 'Time from a request arriving to its reply leaving (ACKs include the lease commit)', ['type']),
  };
}
type Metrics = ReturnType<typeof metrics>;

function bindUdp(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    const onError = (e: Error) => {
      s.close();
      reject(e);
    };
    s.once('error', onError);
    s.bind(port, address, () => {
      s.off('error', onError);
      s.setBroadcast(true);
      // A boot storm (hundreds of machines powered on together) overflows the default
      // ~208 KiB receive buffer and the kernel drops DHCP packets unseen: ask for 4 MiB
      // (the kernel caps it at net.core.rmem_max).
      try {
        s.setRecvBufferSize(4 * 1024 * 1024);
      } catch {
        /* keep the default */
      }
      resolve(s);
    });
  });
}

const closeSocket = (s: Socket): Promise<void> => new Promise((resolve) => s.close(() => resolve()));

interface Outgoing {
  bytes: Buffer;
  to: { address: string; port: number };
  socket: Socket;
  type: number;
  started: bigint;
  decision: Extract<Decision, { outcome: 'reply' }>;
}

export async function startDhcpServer(opts: DhcpServerOptions): Promise<DhcpServer> {
  const ports: DhcpPorts = { ...DEFAULT_PORTS, ...opts.ports };
  const log = opts.log ?? pino({ level: 'silent' });
  const m = metrics(opts.registry ?? new Registry());
  const ownLeases = !opts.leases;
  // ProxyDHCP hands out no addresses: nothing to keep, and no lock on the state directory's lease file.
  const leases = opts.leases ?? (opts.stateDir && opts.mode === 'full' ? await SqliteLeaseStore.open(join(opts.stateDir, LEASES_FILE)) : new MemoryLeaseStore());
  const ctx: PolicyContext = {
    mode: opts.mode,
    serverIp: opts.serverIp,
    ...(opts.tftpServer ? { tftpServer: opts.tftpServer } : {}),
    subnet: opts.subnet,
    ...(opts.router ? { router: opts.router } : {}),
    dns: opts.dns ?? [],
    ...(opts.domain ? { domain: opts.domain } : {}),
    leaseSeconds: opts.leaseSeconds ?? 3600,
    ...(opts.pool ? { pool: opts.pool } : {}),
    inventory: opts.inventory,
    leases,
    bootUrls: opts.bootUrls,
    ...(opts.loader ? { loader: opts.loader } : {}),
    now: opts.now ?? Date.now,
  };

  const sockets: Socket[] = [];
  try {
    const listen = opts.listenAddress ?? '0.0.0.0';
    if (listen !== '0.0.0.0') log.warn({ listen }, 'dhcp: bound to a unicast address, so broadcasts from clients without an address will not arrive');
    const main = await bindUdp(listen, ports.server);
    sockets.push(main);
    const out = listen === opts.serverIp ? undefined : await bindOut(opts.serverIp, main.address().port, log);
    if (out) sockets.push(out);
    const proxy = opts.mode === 'proxy' ? await bindUdp(listen, ports.proxy) : undefined;
    if (proxy) sockets.push(proxy);
    const server = new Handler(ctx, ports, m, log, out ?? main, proxy);
    main.on('message', (msg, rinfo) => server.onMessage(msg, rinfo, 'dhcp'));
    out?.on('message', (msg, rinfo) => server.onMessage(msg, rinfo, 'dhcp'));
    proxy?.on('message', (msg, rinfo) => server.onMessage(msg, rinfo, 'pxe'));
    for (const s of sockets) s.on('error', (e) => log.error({ err: e.message }, 'dhcp socket error'));
    log.info({ mode: opts.mode, serverIp: opts.serverIp, subnet: opts.subnet.cidr, pool: opts.pool, port: main.address().port, proxyPort: proxy?.address().port }, 'dhcp server listening');
    return {
      address: main.address(),
      ...(proxy ? { proxyAddress: proxy.address() } : {}),
      leases,
      close: async () => {
        await server.stop();
        await Promise.all(sockets.map(closeSocket));
        if (ownLeases) await leases.close();
      },
    };
  } catch (e) {
    await Promise.all(sockets.map(closeSocket));
    if (ownLeases) await leases.close();
    throw e;
  }
}

/** The reply socket on the server's own address; undefined (replies then leave from the wildcard socket) when that address is not local. */
async function bindOut(serverIp: string, port: number, log: Logger): Promise<Socket | undefined> {
  try {
    return await bindUdp(serverIp, port);
  } catch (e) {
    log.warn({ serverIp, err: (e as Error).message }, 'cannot bind the server address: broadcast replies follow the default route');
    return undefined;
  }
}

class Handler {
  private readonly ctx: PolicyContext;
  private readonly ports: DhcpPorts;
  private readonly m: Metrics;
  private readonly log: Logger;
  private readonly out: Socket;
  private readonly proxy: Socket | undefined;
  private pending: Outgoing[] = [];
  private flushScheduled = false;
  /** the commit in flight (resolved when none) */
  private flushing: Promise<void> = Promise.resolve();
  private stopped = false;
  /** the lease store may be closed: no more commits */
  private closed = false;
  /** ACKs since the last summary line; each one is logged at debug only */
  private acked = 0;
  private summary?: NodeJS.Timeout;

  constructor(ctx: PolicyContext, ports: DhcpPorts, m: Metrics, log: Logger, out: Socket, proxy: Socket | undefined) {
    this.ctx = ctx;
    this.ports = ports;
    this.m = m;
    this.log = log;
    this.out = out;
    this.proxy = proxy;
  }

  /** Send what is decided, then ignore everything: the lease store is about to close. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.summary);
    this.summarize();
    // a commit scheduled in this loop turn joins the chain first (immediates run in order)
    await new Promise<void>((resolve) => setImmediate(resolve));
    await this.flushing;
    await this.commitAndSend();
    this.closed = true;
  }

  onMessage(msg: Buffer, rinfo: RemoteInfo, via: Via): void {
    if (this.stopped) return;
    const started = process.hrtime.bigint();
    let req: Packet;
    try {
      req = decode(msg);
    } catch (e) {
      // Whatever arrives, the server keeps serving; a non-DhcpParseError is a codec bug, so it is logged loudly.
      if (e instanceof DhcpParseError) this.drop(e.reason.replace(/ /g, '-'), { from: rinfo.address, len: msg.length, err: e.message });
      else {
        this.log.error({ err: (e as Error).stack, from: rinfo.address }, 'dhcp: decoding failed');
        this.drop('internal-error', {});
      }
      return;
    }
    this.m.requests.inc({ type: typeName(messageType(req)) });
    let d: Decision;
    try {
      d = handle(req, this.ctx, via);
    } catch (e) {
      // The server keeps serving other clients whatever one request does to the policy.
      this.log.error({ err: (e as Error).stack, mac: macOf(req) }, 'dhcp: request handling failed');
      this.drop('internal-error', {});
      return;
    }
    if (d.outcome === 'drop') this.drop(d.reason, { mac: d.mac, machine: d.machine?.name, type: typeName(messageType(req)), from: rinfo.address });
    else if (d.outcome === 'done') this.done(d);
    else this.reply(req, d, rinfo, via, started);
  }

  private drop(reason: string, fields: Record<string, unknown>): void {
    this.m.drops.inc({ reason });
    this.log.debug({ reason, ...fields }, 'dhcp drop');
  }

  private done(d: Extract<Decision, { outcome: 'done' }>): void {
    const fields = { mac: d.mac, ip: d.ip, machine: d.machine?.name };
    if (d.reason === 'declined-reserved') this.log.warn(fields, 'dhcp: a machine declined its planned address: another host on the segment is using it');
    else this.log.info(fields, `dhcp ${d.reason}`);
    this.scheduleFlush(); // releases and declines are lease changes too
  }

  private reply(req: Packet, d: Extract<Decision, { outcome: 'reply' }>, rinfo: RemoteInfo, via: Via, started: bigint): void {
    let bytes: Buffer;
    try {
      bytes = encode(d.reply, { maxSize: Math.max(576, optU16(req, Opt.MAX_MESSAGE_SIZE) ?? 0) });
    } catch (e) {
      this.log.error({ mac: d.mac, err: (e as Error).message }, 'dhcp: reply does not fit the client');
      this.drop('reply-too-large', {});
      return;
    }
    const o: Outgoing = {
      bytes,
      to: replyTarget(req, d.reply, rinfo, via, this.ports),
      socket: via === 'pxe' && this.proxy ? this.proxy : this.out,
      type: messageType(d.reply)!,
      started,
      decision: d,
    };
    if (!d.durable) return this.send(o);
    this.pending.push(o);
    this.scheduleFlush();
  }

  /**
   * One commit at a time: while one is on its way to disk, new ACKs gather for the next
   * (group commit), and the server keeps answering everything else.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.stopped) return;
    this.flushScheduled = true;
    // After the I/O callbacks of this loop turn, and after the commit in flight.
    setImmediate(() => {
      if (!this.closed) this.flushing = this.flushing.then(() => this.commitAndSend());
    });
  }

  private async commitAndSend(): Promise<void> {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    try {
      await this.ctx.leases.flush();
    } catch (e) {
      // Not durable, so not sent: the clients retry, and the error is loud.
      this.log.error({ err: (e as Error).message, dropped: batch.length }, 'dhcp: cannot store leases');
      for (let i = 0; i < batch.length; i++) this.drop('lease-store-error', {});
      return;
    }
    for (const o of batch) this.send(o);
  }

  private send(o: Outgoing): void {
    const d = o.decision;
    o.socket.send(o.bytes, o.to.port, o.to.address, (err) => {
      if (err) {
        this.drop('send-failed', { to: o.to.address, err: err.message });
        return;
      }
      const type = typeName(o.type);
      this.m.replies.inc({ type });
      this.m.latency.observe({ type }, Number(process.hrtime.bigint() - o.started) / 1e9);
    });
    if (o.type === MessageType.ACK) this.countAck();
    // Per-reply lines at debug: at info, writing them to stderr cost a fifth of the DHCP
    // path's CPU in a storm (profiled; docs/benchmarks.md). Machines' progress shows as
    // lifecycle events, and the summary line below counts the ACKs.
    if (!this.log.isLevelEnabled('debug')) return;
    const fields = { mac: d.mac, ip: d.ip ?? (d.reply.ciaddr !== ZERO ? d.reply.ciaddr : undefined), machine: d.machine?.name, file: d.bootFile, relay: d.reply.giaddr !== ZERO ? d.reply.giaddr : undefined, to: o.to.address };
    this.log.debug(fields, `dhcp ${d.reason}`);
  }

  private countAck(): void {
    this.acked++;
    this.summary ??= setInterval(() => this.summarize(), SUMMARY_MS).unref();
  }

  /** One info line for the ACKs of the last SUMMARY_MS, none when there were none. */
  private summarize(): void {
    if (!this.acked) {
      clearInterval(this.summary);
      this.summary = undefined;
      return;
    }
    this.log.info({ acks: this.acked, seconds: SUMMARY_MS / 1000 }, 'dhcp leases acknowledged');
    this.acked = 0;
  }
}
