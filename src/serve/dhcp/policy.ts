// What Slipway answers to a DHCP request: a pure function of the request, the inventory
// and the lease store (no sockets, no clock of its own). The boot decisions are the ones
// the exported dhcpd.conf / kea-dhcp4.json / dnsmasq.conf make (plan/phases/pxe/), built
// from the same table (boot.ts), so `slipway serve` and a site's own DHCP server running
// those files hand a machine the same loader.
//
// Full mode (RFC 2131): DISCOVER → OFFER, REQUEST → ACK/NAK in each client state of
// §4.3.2, DECLINE, RELEASE, INFORM. Machines of the cluster file get their planned
// address; other MACs a pool address when there is a pool, else nothing.
// Proxy mode (PXE 2.1 §2.2, "ProxyDHCP"): another server owns addresses; Slipway answers
// PXE clients only, with boot parameters and never an address: an offer to the DISCOVER
// on port 67, an ACK to the REQUEST a PXE client then sends to port 4011.
// Relays (RFC 2131 §4.3.1, RFC 3046): the segment is chosen by giaddr, the reply goes back
// to the relay (server.ts), and option 82 is echoed.
import { broadcast, contains, formatIp, netmask, parseCidr, type Ipv4Net } from '../../lib/ipv4.ts';
import { ARCH, HTTP_CLIENT_CLASS, IPXE_USER_CLASS, bootRuleFor, type BootUrls } from '../../plan/phases/pxe/boot.ts';
import type { Machine } from '../../spec/types.ts';
import type { Inventory, Lookup } from '../inventory.ts';
import type { LeaseStore, Pool } from './leases.ts';
import {
  BOOTREPLY,
  BOOTREQUEST,
  BROADCAST_FLAG,
  MessageType,
  Opt,
  ZERO,
  clientArchs,
  clientUuid,
  encodeSubOptions,
  ipOpt,
  macOf,
  messageType,
  optIp,
  optString,
  paramRequestList,
  strOpt,
  typeName,
  u32Opt,
  u8Opt,
  userClasses,
  type Packet,
} from './packet.ts';

export type DhcpMode = 'full' | 'proxy';
/** where a request arrived: the DHCP port (67) or the PXE boot server port (4011) */
export type Via = 'dhcp' | 'pxe';

export interface PolicyContext {
  mode: DhcpMode;
  /** this server's address: option 54, and the default TFTP server */
  serverIp: string;
  /** where the TFTP loaders are (siaddr, option 66); default serverIp */
  tftpServer?: string;
  /** the segment the server sits on (requests without giaddr, relays inside it) */
  subnet: Ipv4Net;
  router?: string;
  dns: string[];
  domain?: string;
  leaseSeconds: number;
  pool?: Pool;
  inventory: Inventory;
  leases: LeaseStore;
  bootUrls: Pick<BootUrls, 'bootScript' | 'httpBootLoader'>;
  /** what BIOS PXE firmware is handed: iPXE (default) or PXELINUX (guide 01's way; BIOS only, so UEFI keeps iPXE) */
  loader?: 'ipxe' | 'pxelinux';
  /** ms since the epoch */
  now: () => number;
  /** how long an offered pool address is held for the client's REQUEST (default 60 s) */
  offerHoldSeconds?: number;
}

/**
 * Why a request got no answer. A small fixed set: these are metric labels.
 *   not-request      a BOOTREPLY (another server's answer) reached port 67
 *   not-ethernet     htype/hlen other than Ethernet: the inventory is keyed by Ethernet MAC
 *   bootp            no option 53: plain BOOTP is not served
 *   unsupported      a message type this server does not handle (lease query, …)
 *   malformed        a REQUEST/DECLINE/RELEASE/INFORM without the fields RFC 2131 requires
 *   not-pxe          proxy mode: not a PXE client
 *   http-boot-proxy  proxy mode: UEFI HTTP boot, which needs a full DHCP server (as dnsmasq.conf says)
 *   ignored-mac      proxy mode: the inventory says to ignore this MAC
 *   not-proxy-port   a request for the other mode's port
 *   unknown-relay    giaddr is on no segment this server knows for the client
 *   wrong-segment    a machine of the cluster file asked from a segment its address is not on
 *   no-address       an unknown MAC and no pool for its segment
 *   pool-exhausted   no free pool address
 *   other-server     the client chose another server's offer
 *   no-record        init-reboot/renewing from a client this server has no lease for
 */
export type DropReason =
  | 'not-request'
  | 'not-ethernet'
  | 'bootp'
  | 'unsupported'
  | 'malformed'
  | 'not-pxe'
  | 'http-boot-proxy'
  | 'ignored-mac'
  | 'not-proxy-port'
  | 'unknown-relay'
  | 'wrong-segment'
  | 'no-address'
  | 'pool-exhausted'
  | 'other-server'
  | 'no-record';

/** Why a NAK was sent. */
export type NakReason = 'wrong-network' | 'wrong-address' | 'address-taken';

export type Decision =
  | { outcome: 'reply'; reply: Packet; reason: 'offer' | 'ack' | 'inform' | 'proxy-offer' | 'proxy-ack' | `nak:${NakReason}`; mac: string; machine?: Machine; ip?: string; bootFile?: string; durable: boolean }
  | { outcome: 'drop'; reason: DropReason; mac: string; machine?: Machine }
  | { outcome: 'done'; reason: 'released' | 'declined' | 'declined-reserved'; mac: string; machine?: Machine; ip?: string };

/** What kind of network-boot client sent the request. */
export interface ClientInfo {
  type: number;
  vendorClass?: string;
  /** option 60 starts with PXEClient or HTTPClient */
  netboot: boolean;
  /** first option-93 architecture; undefined when absent (BIOS firmware of old omits it) */
  arch?: number;
  userClasses: string[];
  ipxe: boolean;
  /** UEFI HTTP boot: by architecture, as the exported configs decide */
  httpBoot: boolean;
  uuid?: string;
}

export function describeClient(req: Packet): ClientInfo {
  const vendorClass = optString(req, Opt.VENDOR_CLASS);
  const classes = userClasses(req);
  const arch = clientArchs(req)[0];
  const uuid = clientUuid(req);
  return {
    type: messageType(req) ?? 0,
    ...(vendorClass !== undefined ? { vendorClass } : {}),
    netboot: vendorClass !== undefined && (vendorClass.startsWith('PXEClient') || vendorClass.startsWith(HTTP_CLIENT_CLASS)),
    ...(arch !== undefined ? { arch } : {}),
    userClasses: classes,
    ipxe: classes.includes(IPXE_USER_CLASS),
    httpBoot: arch === ARCH.efiX64Http,
    ...(uuid ? { uuid } : {}),
  };
}

export interface BootChoice {
  file: string;
  /** fetched over TFTP from siaddr (else the file is a URL) */
  tftp: boolean;
  /** option 60 to echo: UEFI HTTP boot ignores offers without it */
  vendorClass?: string;
}

/** The loader for a kind of client: the first of BOOT_RULES that fits, as every export decides. */
export function bootFor(c: ClientInfo, urls: PolicyContext['bootUrls'], loader: PolicyContext['loader'] = 'ipxe'): BootChoice {
  const rule = bootRuleFor(c);
  return { file: rule.file(urls, loader), tftp: rule.tftp, ...(rule.vendorClass ? { vendorClass: rule.vendorClass } : {}) };
}

// --- entry point -----------------------------------------------------------------------

export function handle(req: Packet, ctx: PolicyContext, via: Via = 'dhcp'): Decision {
  const mac = macOf(req);
  if (req.op !== BOOTREQUEST) return { outcome: 'drop', reason: 'not-request', mac };
  if (req.htype !== 1 || req.hlen !== 6) return { outcome: 'drop', reason: 'not-ethernet', mac };
  const type = messageType(req);
  if (type === undefined) return { outcome: 'drop', reason: 'bootp', mac };
  const client = describeClient(req);
  const lookup = ctx.inventory.getByMac(mac);
  if (type === MessageType.DISCOVER || type === MessageType.REQUEST || type === MessageType.INFORM) {
    ctx.inventory.seen(mac, 'dhcp', {
      type: typeName(type),
      ...(client.vendorClass !== undefined ? { vendorClass: client.vendorClass } : {}),
      ...(client.arch !== undefined ? { arch: client.arch } : {}),
      ...(client.userClasses.length ? { userClass: client.userClasses.join(',') } : {}),
      ...(client.uuid ? { uuid: client.uuid } : {}),
      ...(req.giaddr !== ZERO ? { relay: req.giaddr } : {}),
    });
  }
  const r = new Request(req, ctx, client, lookup, mac);
  if (ctx.mode === 'proxy') return r.proxy(type, via);
  if (via !== 'dhcp') return r.drop('not-proxy-port');
  switch (type) {
    case MessageType.DISCOVER:
      return r.discover();
    case MessageType.REQUEST:
      return r.request();
    case MessageType.DECLINE:
      return r.decline();
    case MessageType.RELEASE:
      return r.release();
    case MessageType.INFORM:
      return r.inform();
    default:
      return r.drop('unsupported');
  }
}

// --- one request -----------------------------------------------------------------------

interface Segment {
  net: Ipv4Net;
  router?: string;
  /** the server's own segment (where the pool is) */
  local: boolean;
}

const machineNet = (m: Machine): Ipv4Net => parseCidr(`${m.ip}/${m.prefix}`)!;

class Request {
  private readonly req: Packet;
  private readonly ctx: PolicyContext;
  private readonly client: ClientInfo;
  private readonly lookup: Lookup;
  private readonly mac: string;
  private readonly machine: Machine | undefined;

  constructor(req: Packet, ctx: PolicyContext, client: ClientInfo, lookup: Lookup, mac: string) {
    this.req = req;
    this.ctx = ctx;
    this.client = client;
    this.lookup = lookup;
    this.mac = mac;
    this.machine = lookup.machine;
  }

  drop(reason: DropReason): Decision {
    return { outcome: 'drop', reason, mac: this.mac, ...(this.machine ? { machine: this.machine } : {}) };
  }

  /**
   * The client's segment (RFC 2131 §4.3.1): the relay's when giaddr is set, else the
   * network of ciaddr when the client has an address, else the server's own. A relay or
   * address outside the server's subnet is another rack: the cluster file does not
   * describe it, so it is known only through a machine whose address lies on it, and the
   * relay (normally the rack's router) is its gateway.
   */
  private segment(): Segment | undefined {
    const { req, ctx, machine } = this;
    const local: Segment = { net: ctx.subnet, ...(ctx.router ? { router: ctx.router } : {}), local: true };
    const at = req.giaddr !== ZERO ? req.giaddr : req.ciaddr !== ZERO ? req.ciaddr : undefined;
    if (at === undefined || contains(ctx.subnet, at)) return local;
    if (machine && contains(machineNet(machine), at)) {
      // Without a relay (a unicast renewal from another rack) the gateway is not known: leave it out.
      return { net: machineNet(machine), ...(req.giaddr !== ZERO ? { router: req.giaddr } : {}), local: false };
    }
    return undefined;
  }

  /** The address this client gets on `seg`, or why none. Pool addresses are held for the offer. */
  private address(seg: Segment, requested?: string): { ip: string } | { why: DropReason } {
    const { machine, ctx } = this;
    if (machine) return contains(seg.net, machine.ip) ? { ip: machine.ip } : { why: 'wrong-segment' };
    if (!ctx.pool || !seg.local) return { why: 'no-address' };
    const now = ctx.now();
    const ip = ctx.leases.allocate(this.mac, ctx.pool, {
      ...(requested ? { requested } : {}),
      exclude: excluded(ctx),
      now,
      holdMs: (ctx.offerHoldSeconds ?? 60) * 1000,
    });
    return ip !== undefined ? { ip } : { why: 'pool-exhausted' };
  }

  discover(): Decision {
    const seg = this.segment();
    if (!seg) return this.drop('unknown-relay');
    const got = this.address(seg, optIp(this.req, Opt.REQUESTED_IP));
    if ('why' in got) return this.drop(got.why);
    const { ip } = got;
    const reply = this.reply(MessageType.OFFER);
    reply.yiaddr = ip;
    this.addressOptions(reply, seg, ip, true);
    const boot = this.bootOptions(reply, 'full');
    return this.answer(reply, 'offer', ip, boot, false);
  }

  /** RFC 2131 §4.3.2: which state the client is in decides which address it asks about. */
  request(): Decision {
    const { req, ctx } = this;
    const serverId = optIp(req, Opt.SERVER_ID);
    const requested = optIp(req, Opt.REQUESTED_IP);
    const ciaddr = req.ciaddr !== ZERO ? req.ciaddr : undefined;
    if (serverId !== undefined && serverId !== ctx.serverIp) {
      // SELECTING another server's offer: ours is free again.
      ctx.leases.cancelOffer(this.mac);
      return this.drop('other-server');
    }
    // SELECTING and INIT-REBOOT name the address in option 50; RENEWING and REBINDING in ciaddr.
    const wanted = serverId !== undefined || !ciaddr ? requested : ciaddr;
    if (wanted === undefined) return this.drop('malformed');
    const seg = this.segment();
    if (!seg) return this.drop('unknown-relay');
    // A client that moved to another network: tell it at once (we are authoritative here).
    if (!contains(seg.net, wanted)) return this.nak('wrong-network');
    const known = this.machine !== undefined || this.ctx.leases.byMac(this.mac) !== undefined;
    if (!known && serverId === undefined && (!ctx.pool || !seg.local)) return this.drop('no-record');
    const got = this.address(seg, wanted);
    if ('why' in got) return got.why === 'pool-exhausted' ? this.nak('address-taken') : this.drop(got.why);
    const { ip } = got;
    if (ip !== wanted) return this.nak('wrong-address');
    const now = ctx.now();
    // Reservations win: binding a machine's address takes it from any pool lease holding it.
    if (!ctx.leases.bind(this.mac, ip, now + ctx.leaseSeconds * 1000, { now, evict: this.machine !== undefined })) return this.nak('address-taken');
    const reply = this.reply(MessageType.ACK);
    reply.yiaddr = ip;
    reply.ciaddr = req.ciaddr;
    this.addressOptions(reply, seg, ip, true);
    const boot = this.bootOptions(reply, 'full');
    return this.answer(reply, 'ack', ip, boot, true);
  }

  decline(): Decision {
    const { req, ctx } = this;
    const ip = optIp(req, Opt.REQUESTED_IP);
    if (optIp(req, Opt.SERVER_ID) !== ctx.serverIp || ip === undefined) return this.drop('malformed');
    const base = { outcome: 'done' as const, mac: this.mac, ip, ...(this.machine ? { machine: this.machine } : {}) };
    // Another host answers ARP for a machine's planned address: a site problem to report,
    // not an address to take out of use (no other address would be right for the machine).
    if (this.machine?.ip === ip) return { ...base, reason: 'declined-reserved' };
    if (ctx.leases.byIp(ip)?.mac !== this.mac) return this.drop('malformed');
    ctx.leases.decline(ip, ctx.now() + ctx.leaseSeconds * 1000);
    return { ...base, reason: 'declined' };
  }

  release(): Decision {
    const { req, ctx } = this;
    if (optIp(req, Opt.SERVER_ID) !== ctx.serverIp || req.ciaddr === ZERO) return this.drop('malformed');
    ctx.leases.release(this.mac, req.ciaddr, ctx.now());
    return { outcome: 'done', reason: 'released', mac: this.mac, ip: req.ciaddr, ...(this.machine ? { machine: this.machine } : {}) };
  }

  /** RFC 2131 §3.4: a client with an address of its own asks for the other parameters. */
  inform(): Decision {
    if (this.req.ciaddr === ZERO) return this.drop('malformed');
    const seg = this.segment();
    if (!seg) return this.drop('unknown-relay');
    const reply = this.reply(MessageType.ACK);
    reply.ciaddr = this.req.ciaddr;
    this.addressOptions(reply, seg, this.req.ciaddr, false);
    const boot = this.bootOptions(reply, 'full');
    return this.answer(reply, 'inform', undefined, boot, false);
  }

  /**
   * ProxyDHCP. PXE clients only, UEFI HTTP boot excepted (it takes its URL from the
   * address-giving server; the exported dnsmasq.conf says so too), and never an address.
   */
  proxy(type: number, via: Via): Decision {
    const { client } = this;
    if (!client.netboot) return this.drop('not-pxe');
    if (client.httpBoot || client.vendorClass?.startsWith(HTTP_CLIENT_CLASS)) return this.drop('http-boot-proxy');
    if (this.lookup.action === 'ignore') return this.drop('ignored-mac');
    const offer = via === 'dhcp' && type === MessageType.DISCOVER;
    const ack = via === 'pxe' && type === MessageType.REQUEST;
    if (!offer && !ack) return this.drop('not-proxy-port');
    const reply = this.reply(offer ? MessageType.OFFER : MessageType.ACK);
    if (ack) reply.ciaddr = this.req.ciaddr;
    const boot = this.bootOptions(reply, 'proxy');
    return this.answer(reply, offer ? 'proxy-offer' : 'proxy-ack', undefined, boot, false);
  }

  // --- building replies ------------------------------------------------------------------

  /** RFC 2131 table 3: the fields every reply copies from the request. */
  private reply(type: number): Packet {
    const { req, ctx } = this;
    return {
      op: BOOTREPLY,
      htype: req.htype,
      hlen: req.hlen,
      hops: 0,
      xid: req.xid,
      secs: 0,
      flags: req.flags,
      ciaddr: ZERO,
      yiaddr: ZERO,
      siaddr: ZERO,
      giaddr: req.giaddr,
      chaddr: req.chaddr,
      sname: '',
      file: '',
      options: new Map([
        [Opt.MESSAGE_TYPE, u8Opt(type)],
        [Opt.SERVER_ID, ipOpt(ctx.serverIp)],
      ]),
    };
  }

  private nak(reason: NakReason): Decision {
    const reply = this.reply(MessageType.NAK);
    // RFC 2131 §4.3.2: a NAK through a relay asks it to broadcast on the client's segment.
    if (this.req.giaddr !== ZERO) reply.flags |= BROADCAST_FLAG;
    reply.options.set(Opt.MESSAGE, strOpt(reason));
    return this.answer(reply, `nak:${reason}`, undefined, undefined, false);
  }

  private addressOptions(reply: Packet, seg: Segment, ip: string, lease: boolean): void {
    const { ctx, machine } = this;
    const o = reply.options;
    const net = parseCidr(`${ip}/${seg.net.prefix}`)!;
    o.set(Opt.SUBNET_MASK, ipOpt(netmask(seg.net.prefix)));
    o.set(Opt.BROADCAST, ipOpt(broadcast(net)));
    if (seg.router) o.set(Opt.ROUTER, ipOpt(seg.router));
    if (ctx.dns.length) o.set(Opt.DNS, ipOpt(...ctx.dns));
    if (ctx.domain) o.set(Opt.DOMAIN_NAME, strOpt(ctx.domain));
    // time from the provisioner (serve answers SNTP): new machines' clocks are often far off
    o.set(Opt.NTP_SERVERS, ipOpt(ctx.serverIp));
    if (machine) o.set(Opt.HOSTNAME, strOpt(machine.name));
    if (lease) {
      // T1 and T2 at RFC 2131 §4.4.5's defaults: half and seven eighths of the lease.
      o.set(Opt.LEASE_TIME, u32Opt(ctx.leaseSeconds));
      o.set(Opt.RENEWAL_TIME, u32Opt(Math.floor(ctx.leaseSeconds / 2)));
      o.set(Opt.REBINDING_TIME, u32Opt(Math.floor((ctx.leaseSeconds * 7) / 8)));
    }
  }

  /**
   * Boot parameters, for network-boot clients the inventory does not ignore. An
   * action of 'local' still gets its loader, like every exported config hands out: the
   * HTTP side then tells iPXE to leave for the local disk.
   */
  private bootOptions(reply: Packet, mode: DhcpMode): BootChoice | undefined {
    const { client, ctx } = this;
    if (!client.netboot || this.lookup.action === 'ignore') return undefined;
    const boot = bootFor(client, ctx.bootUrls, ctx.loader);
    const o = reply.options;
    const tftp = ctx.tftpServer ?? ctx.serverIp;
    reply.siaddr = tftp;
    // The file field for firmware that reads only it (it holds 127 bytes and a NUL);
    // option 67 as well, for clients that prefer it and for names too long for the field.
    if (Buffer.byteLength(boot.file, 'latin1') < 128) reply.file = boot.file;
    o.set(Opt.BOOTFILE, strOpt(boot.file));
    if (boot.tftp) o.set(Opt.TFTP_SERVER, strOpt(tftp));
    if (mode === 'proxy') {
      // A ProxyDHCP reply identifies itself as PXE (PXE 2.1 §2.2.2) and sets discovery
      // control bit 3: "a boot file name is in this offer: download it, no menu, no
      // boot server discovery".
      o.set(Opt.VENDOR_CLASS, strOpt('PXEClient'));
      o.set(Opt.VENDOR_SPECIFIC, encodeSubOptions([[PXE_DISCOVERY_CONTROL, u8Opt(8)]], true));
    } else if (boot.vendorClass) o.set(Opt.VENDOR_CLASS, strOpt(boot.vendorClass));
    // iPXE waits seconds for ProxyDHCP offers unless told there are none (175.176
    // "no-pxedhcp"); in full mode there are none. In proxy mode the file comes from one.
    if (mode === 'full' && client.ipxe) o.set(Opt.IPXE_ENCAP, encodeSubOptions([[IPXE_NO_PXEDHCP, u8Opt(1)]]));
    // PXE 2.1: the client machine identifier is echoed; some ROMs check it.
    const uuid = this.req.options.get(Opt.CLIENT_UUID);
    if (uuid) o.set(Opt.CLIENT_UUID, uuid);
    return boot;
  }

  /** Final touches every reply gets: the client's own id and relay info echoed, options in the order it asked. */
  private answer(reply: Packet, reason: Extract<Decision, { outcome: 'reply' }>['reason'], ip: string | undefined, boot: BootChoice | undefined, durable: boolean): Decision {
    const clientId = this.req.options.get(Opt.CLIENT_ID);
    if (clientId) reply.options.set(Opt.CLIENT_ID, clientId); // RFC 6842
    reply.options = orderOptions(reply.options, paramRequestList(this.req), this.req.options.get(Opt.RELAY_AGENT));
    return {
      outcome: 'reply',
      reply,
      reason,
      mac: this.mac,
      ...(this.machine ? { machine: this.machine } : {}),
      ...(ip ? { ip } : {}),
      ...(boot ? { bootFile: boot.file } : {}),
      durable,
    };
  }
}

/** PXE 2.1 §2.4, option 43 sub-option 6 */
export const PXE_DISCOVERY_CONTROL = 6;
/** iPXE's 175.176: do not wait for ProxyDHCP */
export const IPXE_NO_PXEDHCP = 176;

const fixedExclusions = new WeakMap<PolicyContext, Set<string | undefined>>();

/** Addresses a pool never hands out: the network and broadcast addresses, this server, the router, DNS servers and every machine's (asked live: the inventory can change). */
function excluded(ctx: PolicyContext): (ip: string) => boolean {
  let fixed = fixedExclusions.get(ctx);
  if (!fixed) {
    fixed = new Set([ctx.serverIp, ctx.tftpServer, ctx.router, ...ctx.dns, formatIp(ctx.subnet.base), broadcast(ctx.subnet)]);
    fixedExclusions.set(ctx, fixed);
  }
  const f = fixed;
  return (ip) => f.has(ip) || ctx.inventory.getByIp(ip) !== undefined;
}

/**
 * 53 and 54 first, then what the client asked for in option 55's order (RFC 2131 §4.3.1:
 * "MUST try to insert the requested options in the order requested"), then the rest,
 * and the relay agent's option 82 last (RFC 3046 §2.2).
 */
export function orderOptions(options: Map<number, Buffer>, prl: number[], relay?: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  const take = (code: number) => {
    const v = options.get(code);
    if (v !== undefined && !out.has(code)) out.set(code, v);
  };
  take(Opt.MESSAGE_TYPE);
  take(Opt.SERVER_ID);
  for (const code of prl) take(code);
  for (const code of options.keys()) take(code);
  out.delete(Opt.RELAY_AGENT);
  if (relay) out.set(Opt.RELAY_AGENT, relay);
  return out;
}
