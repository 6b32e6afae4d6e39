// The DHCP policy and the lease stores, without sockets: what each kind of client gets
// in full and proxy mode, the RFC 2131 request states, relays, and the lease invariants
// (one address per MAC and one MAC per address, reservations win, persistence).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { haSpec } from './helpers/spec.ts';
import { SpecInventory } from '../src/serve/inventory.ts';
import { bootUrls, LOADERS } from '../src/plan/phases/pxe/boot.ts';
import { parseCidr, parseIp } from '../src/lib/ipv4.ts';
import { handle, type Decision, type PolicyContext, type Via } from '../src/serve/dhcp/policy.ts';
import { MemoryLeaseStore, SqliteLeaseStore } from '../src/serve/dhcp/leases.ts';
import { DEFAULT_PORTS, replyTarget } from '../src/serve/dhcp/server.ts';
import {
  BOOTREQUEST,
  MessageType,
  Opt,
  chaddrOf,
  decodeSubOptions,
  encodeSubOptions,
  ipOpt,
  messageType,
  optIp,
  optString,
  optU32,
  strOpt,
  type Packet,
} from '../src/serve/dhcp/packet.ts';

const PROV = '10.20.30.2';
const BASE = `http://${PROV}:8080`;
const CP1 = { mac: '52:54:00:20:30:11', ip: '10.20.30.11', name: 'cp1' };
const STRANGER = '52:54:00:99:99:99';
const POOL = { start: '10.20.30.100', end: '10.20.30.103' };

type Kind = 'bios' | 'efi7' | 'efi9' | 'http' | 'ipxe' | 'plain';
const ARCH: Record<Kind, number | undefined> = { bios: 0, efi7: 7, efi9: 9, http: 16, ipxe: 0, plain: undefined };

interface ReqOpts {
  mac?: string;
  type?: number;
  kind?: Kind;
  giaddr?: string;
  ciaddr?: string;
  requested?: string;
  serverId?: string;
  extra?: [number, Buffer][];
}

function req(o: ReqOpts = {}): Packet {
  const kind = o.kind ?? 'bios';
  const options = new Map<number, Buffer>([[Opt.MESSAGE_TYPE, Buffer.from([o.type ?? MessageType.DISCOVER])]]);
  const arch = ARCH[kind];
  if (kind !== 'plain') options.set(Opt.VENDOR_CLASS, strOpt(kind === 'http' ? 'HTTPClient:Arch:00016:UNDI:003001' : `PXEClient:Arch:0000${arch}:UNDI:002001`));
  if (arch !== undefined) options.set(Opt.CLIENT_ARCH, Buffer.from([0, arch]));
  if (kind === 'ipxe') options.set(Opt.USER_CLASS, strOpt('iPXE'));
  if (o.requested) options.set(Opt.REQUESTED_IP, ipOpt(o.requested));
  if (o.serverId) options.set(Opt.SERVER_ID, ipOpt(o.serverId));
  for (const [c, v] of o.extra ?? []) options.set(c, v);
  return {
    op: BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 42,
    secs: 0,
    flags: 0x8000,
    ciaddr: o.ciaddr ?? '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: o.giaddr ?? '0.0.0.0',
    chaddr: chaddrOf(o.mac ?? CP1.mac),
    sname: '',
    file: '',
    options,
  };
}

function context(over: Partial<PolicyContext> = {}, unknown: 'ignore' | 'local' = 'ignore'): PolicyContext & { seen: string[]; clock: { t: number } } {
  const spec = haSpec();
  // a machine on another rack, reached through a relay
  spec.machines.push({ name: 'r2n1', mac: '52:54:00:20:40:11', ip: '10.20.40.11', prefix: 24, roles: ['worker'], disk: '/dev/sda', labels: {} });
  const seen: string[] = [];
  const clock = { t: 1_000_000 };
  return {
    mode: 'full',
    serverIp: PROV,
    subnet: spec.provisioner.dhcp.subnet,
    router: '10.20.30.1',
    dns: ['10.20.30.1'],
    leaseSeconds: 3600,
    inventory: new SpecInventory(spec, { unknown, onSeen: (mac) => seen.push(mac) }),
    leases: new MemoryLeaseStore(),
    bootUrls: bootUrls(spec),
    now: () => clock.t,
    seen,
    clock,
    ...over,
  };
}

type Reply = Extract<Decision, { outcome: 'reply' }>;
function replied(d: Decision, type: number): Reply {
  assert.equal(d.outcome, 'reply', `expected a reply, got ${JSON.stringify(d)}`);
  const r = d as Reply;
  assert.equal(messageType(r.reply), type, r.reason);
  return r;
}
function dropped(d: Decision, reason: string): void {
  assert.equal(d.outcome, 'drop', `expected a drop, got ${d.reason}`);
  assert.equal(d.reason, reason);
}
const file = (r: Reply) => optString(r.reply, Opt.BOOTFILE);

/** DISCOVER then REQUEST(selecting): the address bound. */
function dora(ctx: PolicyContext, o: ReqOpts = {}): Reply {
  const offer = replied(handle(req(o), ctx), MessageType.OFFER);
  return replied(handle(req({ ...o, type: MessageType.REQUEST, requested: offer.reply.yiaddr, serverId: PROV }), ctx), MessageType.ACK);
}

describe('full mode: what each client gets', () => {
  const EXPECT: Record<Exclude<Kind, 'plain'>, string> = {
    bios: LOADERS.bios,
    efi7: LOADERS.efi,
    efi9: LOADERS.efi,
    http: `${BASE}/assets/ipxe/ipxe.efi`,
    ipxe: `${BASE}/boot.ipxe`,
  };
  for (const [kind, want] of Object.entries(EXPECT) as [Exclude<Kind, 'plain'>, string][])
    test(`${kind}: the machine's address, its loader, the segment's parameters`, () => {
      const ctx = context();
      const r = replied(handle(req({ kind }), ctx), MessageType.OFFER);
      const p = r.reply;
      assert.equal(p.op, 2);
      assert.equal(p.yiaddr, CP1.ip);
      assert.equal(p.siaddr, PROV);
      assert.equal(p.file, want);
      assert.equal(file(r), want);
      assert.equal(optIp(p, Opt.SERVER_ID), PROV);
      assert.equal(optIp(p, Opt.SUBNET_MASK), '255.255.255.0');
      assert.equal(optIp(p, Opt.ROUTER), '10.20.30.1');
      assert.equal(optIp(p, Opt.DNS), '10.20.30.1');
      assert.equal(optIp(p, Opt.BROADCAST), '10.20.30.255');
      assert.equal(optString(p, Opt.HOSTNAME), 'cp1');
      assert.equal(optU32(p, Opt.LEASE_TIME), 3600);
      assert.equal(optU32(p, Opt.RENEWAL_TIME), 1800);
      assert.equal(optU32(p, Opt.REBINDING_TIME), 3150);
      assert.equal(optString(p, Opt.TFTP_SERVER), want.startsWith('http') ? undefined : PROV);
      assert.equal(optString(p, Opt.VENDOR_CLASS), kind === 'http' ? 'HTTPClient' : undefined);
      const ipxe = p.options.get(Opt.IPXE_ENCAP);
      assert.deepEqual(ipxe && [...decodeSubOptions(ipxe)], kind === 'ipxe' ? [[176, Buffer.from([1])]] : undefined, 'iPXE is told not to wait for ProxyDHCP');
      assert.deepEqual(ctx.seen, [CP1.mac]);
    });

  test('loader pxelinux: BIOS firmware gets pxelinux.0; UEFI and iPXE keep theirs (PXELINUX is BIOS only)', () => {
    const ctx = context({ loader: 'pxelinux' });
    assert.equal(replied(handle(req({ kind: 'bios' }), ctx), MessageType.OFFER).reply.file, 'pxelinux.0');
    assert.equal(replied(handle(req({ kind: 'efi9' }), ctx), MessageType.OFFER).reply.file, LOADERS.efi);
    assert.equal(replied(handle(req({ kind: 'ipxe' }), ctx), MessageType.OFFER).reply.file, `${BASE}/boot.ipxe`);
  });

  test('a client that is not a network-boot client gets an address and no boot file', () => {
    const r = replied(handle(req({ kind: 'plain' }), context()), MessageType.OFFER);
    assert.equal(r.reply.yiaddr, CP1.ip);
    assert.equal(r.reply.file, '');
    assert.equal(r.reply.siaddr, '0.0.0.0');
    assert.equal(file(r), undefined);
  });

  test('unknown MAC: nothing without a pool; a pool address without a boot file when ignored', () => {
    dropped(handle(req({ mac: STRANGER }), context()), 'no-address');
    const r = replied(handle(req({ mac: STRANGER }), context({ pool: POOL })), MessageType.OFFER);
    assert.equal(r.reply.yiaddr, POOL.start);
    assert.equal(r.reply.file, '');
    assert.equal(optString(r.reply, Opt.HOSTNAME), undefined);
  });

  test("unknown MAC with action 'local': a pool address and the loader (boot.ipxe sends it to its disk)", () => {
    const r = replied(handle(req({ mac: STRANGER }), context({ pool: POOL }, 'local')), MessageType.OFFER);
    assert.equal(r.reply.file, LOADERS.bios);
  });

  test('options come in the order the client asked (option 55), 82 last, client id echoed', () => {
    const relay = encodeSubOptions([[1, strOpt('port7')]]);
    const clientId = Buffer.from([1, 0x52, 0x54, 0, 0x20, 0x30, 0x11]);
    const r = replied(handle(req({ giaddr: '10.20.30.3', extra: [[Opt.PARAM_REQUEST_LIST, Buffer.from([6, 3, 1])], [Opt.RELAY_AGENT, relay], [Opt.CLIENT_ID, clientId]] }), context()), MessageType.OFFER);
    const codes = [...r.reply.options.keys()];
    assert.deepEqual(codes.slice(0, 5), [Opt.MESSAGE_TYPE, Opt.SERVER_ID, Opt.DNS, Opt.ROUTER, Opt.SUBNET_MASK]);
    assert.equal(codes.at(-1), Opt.RELAY_AGENT);
    assert.deepEqual(r.reply.options.get(Opt.RELAY_AGENT), relay);
    assert.deepEqual(r.reply.options.get(Opt.CLIENT_ID), clientId);
    assert.equal(r.reply.giaddr, '10.20.30.3');
  });

  test('not served: replies, non-Ethernet, BOOTP, lease queries', () => {
    const ctx = context();
    dropped(handle({ ...req(), op: 2 }, ctx), 'not-request');
    dropped(handle({ ...req(), htype: 32, hlen: 0 }, ctx), 'not-ethernet');
    const bootp = req();
    bootp.options.delete(Opt.MESSAGE_TYPE);
    dropped(handle(bootp, ctx), 'bootp');
    dropped(handle(req({ type: 10 }), ctx), 'unsupported');
    dropped(handle(req({ type: MessageType.REQUEST, ciaddr: CP1.ip }), ctx, 'pxe'), 'not-proxy-port');
  });
});

describe('full mode: RFC 2131 §4.3.2 request states', () => {
  test('SELECTING ours → ACK and a durable binding; another server chosen → our offer is freed', () => {
    const ctx = context({ pool: POOL });
    const ack = dora(ctx, { mac: STRANGER });
    assert.equal(ack.durable, true);
    assert.equal(ack.reply.yiaddr, POOL.start);
    assert.equal(ctx.leases.byMac(STRANGER)?.state, 'bound');
    const other = '52:54:00:99:99:98';
    const offer = replied(handle(req({ mac: other }), ctx), MessageType.OFFER);
    assert.equal(ctx.leases.byIp(offer.reply.yiaddr)?.state, 'offered');
    dropped(handle(req({ mac: other, type: MessageType.REQUEST, requested: offer.reply.yiaddr, serverId: '10.20.30.5' }), ctx), 'other-server');
    assert.equal(ctx.leases.byMac(other), undefined);
  });

  test('SELECTING a different address than offered → NAK', () => {
    const ctx = context();
    const r = replied(handle(req({ type: MessageType.REQUEST, requested: '10.20.30.12', serverId: PROV }), ctx), MessageType.NAK);
    assert.equal(r.reason, 'nak:wrong-address');
    assert.equal(r.reply.yiaddr, '0.0.0.0');
  });

  test('INIT-REBOOT: right address → ACK; another network → NAK; a client we know nothing of → silence', () => {
    const ctx = context();
    replied(handle(req({ type: MessageType.REQUEST, requested: CP1.ip }), ctx), MessageType.ACK);
    assert.equal(replied(handle(req({ type: MessageType.REQUEST, requested: '192.168.1.50' }), ctx), MessageType.NAK).reason, 'nak:wrong-network');
    dropped(handle(req({ mac: STRANGER, type: MessageType.REQUEST, requested: '10.20.30.150' }), ctx), 'no-record');
  });

  test('RENEWING/REBINDING (ciaddr): ACK extends the lease, copies ciaddr; a foreign address → NAK', () => {
    const ctx = context({ pool: POOL });
    const first = dora(ctx, { mac: STRANGER });
    ctx.clock.t += 1_800_000;
    const renew = replied(handle(req({ mac: STRANGER, type: MessageType.REQUEST, ciaddr: first.reply.yiaddr }), ctx), MessageType.ACK);
    assert.equal(renew.reply.ciaddr, first.reply.yiaddr);
    assert.equal(ctx.leases.byMac(STRANGER)?.expires, ctx.clock.t + 3_600_000);
    const wrong = replied(handle(req({ mac: STRANGER, type: MessageType.REQUEST, ciaddr: '10.20.30.101' }), ctx), MessageType.NAK);
    assert.equal(wrong.reason, 'nak:wrong-address');
  });

  test('an address bound to another MAC is never bound to a second one', () => {
    const ctx = context({ pool: POOL });
    const a = dora(ctx, { mac: STRANGER });
    const b = '52:54:00:99:99:97';
    const nak = replied(handle(req({ mac: b, type: MessageType.REQUEST, requested: a.reply.yiaddr }), ctx), MessageType.NAK);
    assert.equal(nak.reason, 'nak:wrong-address');
    assert.equal(ctx.leases.byIp(a.reply.yiaddr)?.mac, STRANGER);
  });

  test('pool: reservations, the server, router and DNS are never handed out; exhaustion → no offer', () => {
    const ctx = context({ pool: { start: '10.20.30.1', end: '10.20.30.13' } });
    const got = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const d = handle(req({ mac: `02:00:00:00:00:${i.toString(16).padStart(2, '0')}` }), ctx);
      if (d.outcome === 'reply') got.add(d.reply.yiaddr);
      else dropped(d, 'pool-exhausted');
    }
    assert.deepEqual([...got].sort(), ['10.20.30.3', '10.20.30.4', '10.20.30.5', '10.20.30.6', '10.20.30.7', '10.20.30.8', '10.20.30.9', '10.20.30.10'].sort());
  });

  test('DECLINE takes the address out of use; RELEASE keeps it for the same client', () => {
    const ctx = context({ pool: POOL });
    const a = dora(ctx, { mac: STRANGER });
    const ip = a.reply.yiaddr;
    assert.equal(handle(req({ mac: STRANGER, type: MessageType.DECLINE, requested: ip, serverId: PROV }), ctx).reason, 'declined');
    assert.equal(ctx.leases.byIp(ip)?.state, 'declined');
    const next = replied(handle(req({ mac: STRANGER }), ctx), MessageType.OFFER);
    assert.notEqual(next.reply.yiaddr, ip);
    const b = dora(ctx, { mac: STRANGER });
    assert.equal(handle(req({ mac: STRANGER, type: MessageType.RELEASE, ciaddr: b.reply.yiaddr, serverId: PROV }), ctx).reason, 'released');
    assert.ok(ctx.leases.byMac(STRANGER)!.expires <= ctx.clock.t);
    const again = replied(handle(req({ mac: STRANGER }), ctx), MessageType.OFFER);
    assert.equal(again.reply.yiaddr, b.reply.yiaddr, 'a returning client gets its previous address');
    // a machine declining its own planned address is reported, not acted on
    assert.equal(handle(req({ type: MessageType.DECLINE, requested: CP1.ip, serverId: PROV }), ctx).reason, 'declined-reserved');
  });

  test('INFORM: parameters and boot file for a client with its own address, no lease', () => {
    const r = replied(handle(req({ kind: 'efi9', type: MessageType.INFORM, ciaddr: '10.20.30.77' }), context()), MessageType.ACK);
    assert.equal(r.reply.yiaddr, '0.0.0.0');
    assert.equal(r.reply.ciaddr, '10.20.30.77');
    assert.equal(r.reply.file, LOADERS.efi);
    assert.equal(r.reply.options.has(Opt.LEASE_TIME), false);
    assert.equal(r.durable, false);
  });

  test('expired pool leases are reused once no never-used address is left', () => {
    const ctx = context({ pool: POOL, leaseSeconds: 10 });
    const macs = ['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03', '02:00:00:00:00:04'];
    for (const mac of macs) dora(ctx, { mac });
    dropped(handle(req({ mac: '02:00:00:00:00:05' }), ctx), 'pool-exhausted');
    ctx.clock.t += 11_000;
    const r = dora(ctx, { mac: '02:00:00:00:00:05' });
    assert.ok(Object.values(POOL).includes(r.reply.yiaddr) || r.reply.yiaddr.startsWith('10.20.30.10'));
    assert.equal(ctx.leases.byIp(r.reply.yiaddr)?.mac, '02:00:00:00:00:05');
  });
});

describe('relays', () => {
  test('giaddr on the server subnet: served as local; the reply keeps giaddr', () => {
    const r = replied(handle(req({ giaddr: '10.20.30.3' }), context()), MessageType.OFFER);
    assert.equal(r.reply.giaddr, '10.20.30.3');
    assert.equal(optIp(r.reply, Opt.ROUTER), '10.20.30.1');
  });

  test("another rack: the machine's own prefix, the relay as its router; strangers there get nothing", () => {
    const ctx = context({ pool: POOL });
    const r = replied(handle(req({ mac: '52:54:00:20:40:11', giaddr: '10.20.40.1' }), ctx), MessageType.OFFER);
    assert.equal(r.reply.yiaddr, '10.20.40.11');
    assert.equal(optIp(r.reply, Opt.ROUTER), '10.20.40.1');
    assert.equal(optIp(r.reply, Opt.BROADCAST), '10.20.40.255');
    dropped(handle(req({ mac: STRANGER, giaddr: '10.20.40.1' }), ctx), 'unknown-relay');
    dropped(handle(req({ giaddr: '10.20.40.1' }), ctx), 'unknown-relay'); // cp1 lives on 10.20.30.0/24
  });

  test('a NAK through a relay asks it to broadcast', () => {
    const r = replied(handle(req({ type: MessageType.REQUEST, requested: '10.20.30.99', giaddr: '10.20.30.3', extra: [[Opt.SERVER_ID, ipOpt(PROV)]] }), context()), MessageType.NAK);
    assert.equal(r.reply.flags & 0x8000, 0x8000);
  });
});

describe('proxy mode (ProxyDHCP)', () => {
  const proxy = () => context({ mode: 'proxy' }, 'local');
  test('DISCOVER from a PXE client → an offer without an address, PXEClient, discovery control 8, the file', () => {
    const r = replied(handle(req({ kind: 'efi7' }), proxy()), MessageType.OFFER);
    const p = r.reply;
    assert.equal(p.yiaddr, '0.0.0.0');
    assert.equal(p.siaddr, PROV);
    assert.equal(p.file, LOADERS.efi);
    assert.equal(optString(p, Opt.VENDOR_CLASS), 'PXEClient');
    assert.deepEqual([...p.options.get(Opt.VENDOR_SPECIFIC)!], [6, 1, 8, 255]);
    assert.equal(optIp(p, Opt.SERVER_ID), PROV);
    for (const code of [Opt.SUBNET_MASK, Opt.ROUTER, Opt.LEASE_TIME, Opt.IPXE_ENCAP]) assert.equal(p.options.has(code), false, `option ${code}`);
  });

  test('REQUEST on port 4011 → ACK with the file; iPXE gets the boot script', () => {
    const r = replied(handle(req({ kind: 'ipxe', type: MessageType.REQUEST, ciaddr: '10.20.30.150' }), proxy(), 'pxe'), MessageType.ACK);
    assert.equal(r.reply.ciaddr, '10.20.30.150');
    assert.equal(r.reply.yiaddr, '0.0.0.0');
    assert.equal(r.reply.file, `${BASE}/boot.ipxe`);
  });

  test('never answered: non-PXE clients, UEFI HTTP boot, ignored MACs, REQUESTs on port 67', () => {
    dropped(handle(req({ kind: 'plain' }), proxy()), 'not-pxe');
    dropped(handle(req({ kind: 'http' }), proxy()), 'http-boot-proxy');
    dropped(handle(req({ mac: STRANGER }), context({ mode: 'proxy' }, 'ignore')), 'ignored-mac');
    dropped(handle(req({ type: MessageType.REQUEST, requested: '10.20.30.150', serverId: '10.20.30.5' }), proxy()), 'not-proxy-port');
  });
});

describe('where replies go (RFC 2131 §4.1)', () => {
  const from = { address: '10.20.30.77', port: 68 };
  const target = (r: Packet, reply: Packet, via: Via = 'dhcp') => replyTarget(r, reply, from, via, DEFAULT_PORTS);
  const offer = (type: number = MessageType.OFFER) => ({ ...req(), op: 2, options: new Map([[Opt.MESSAGE_TYPE, Buffer.from([type])]]) });
  test('relay → giaddr:67; NAK → broadcast; ciaddr → unicast; else broadcast; port 4011 → the sender', () => {
    assert.deepEqual(target(req({ giaddr: '10.20.40.1' }), offer()), { address: '10.20.40.1', port: 67 });
    assert.deepEqual(target(req({ ciaddr: '10.20.30.77' }), offer(MessageType.NAK)), { address: '255.255.255.255', port: 68 });
    assert.deepEqual(target(req({ ciaddr: '10.20.30.77' }), offer(MessageType.ACK)), { address: '10.20.30.77', port: 68 });
    assert.deepEqual(target({ ...req(), flags: 0 }, offer()), { address: '255.255.255.255', port: 68 });
    assert.deepEqual(target(req(), offer(MessageType.ACK), 'pxe'), from);
  });
});

describe('lease stores', () => {
  test('reservations win: binding a machine address evicts the pool lease on it', () => {
    const l = new MemoryLeaseStore();
    assert.equal(l.bind('02:00:00:00:00:01', '10.20.30.50', 10_000, { now: 0 }), true);
    assert.equal(l.bind('02:00:00:00:00:02', '10.20.30.50', 10_000, { now: 0 }), false, 'held by another MAC');
    assert.equal(l.bind('02:00:00:00:00:02', '10.20.30.50', 10_000, { now: 0, evict: true }), true);
    assert.equal(l.byIp('10.20.30.50')?.mac, '02:00:00:00:00:02');
    assert.equal(l.byMac('02:00:00:00:00:01'), undefined);
  });

  test('one address per MAC: binding a new one drops the old', () => {
    const l = new MemoryLeaseStore();
    l.bind('02:00:00:00:00:01', '10.20.30.50', 10_000, { now: 0 });
    l.bind('02:00:00:00:00:01', '10.20.30.51', 10_000, { now: 0 });
    assert.equal(l.byIp('10.20.30.50'), undefined);
    assert.equal(l.byMac('02:00:00:00:00:01')?.ip, '10.20.30.51');
  });

  test('SQLite: bindings survive reopening; offers do not; a second opener is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-leases-'));
    try {
      const file = join(dir, 'leases.sqlite');
      const a = await SqliteLeaseStore.open(file);
      await assert.rejects(SqliteLeaseStore.open(file), /in use by another process/);
      const exclude = () => false;
      a.allocate('02:00:00:00:00:09', { start: '10.20.30.100', end: '10.20.30.110' }, { exclude, now: 0, holdMs: 60_000 });
      a.bind('02:00:00:00:00:01', '10.20.30.50', 10_000, { now: 0 });
      a.bind('02:00:00:00:00:02', '10.20.30.51', 10_000, { now: 0 });
      a.decline('10.20.30.52', 5_000);
      await a.flush();
      // flushes overlap in time but reach the disk in order
      a.bind('02:00:00:00:00:04', '10.20.30.54', 10_000, { now: 0 });
      const first = a.flush();
      a.bind('02:00:00:00:00:04', '10.20.30.55', 10_000, { now: 0 });
      await Promise.all([first, a.flush()]);
      a.bind('02:00:00:00:00:02', '10.20.30.53', 10_000, { now: 0 });
      await a.close(); // flushes the last change
      const b = await SqliteLeaseStore.open(file);
      assert.equal(b.byMac('02:00:00:00:00:01')?.ip, '10.20.30.50');
      assert.equal(b.byMac('02:00:00:00:00:02')?.ip, '10.20.30.53');
      assert.equal(b.byIp('10.20.30.51'), undefined);
      assert.equal(b.byMac('02:00:00:00:00:04')?.ip, '10.20.30.55');
      assert.equal(b.byIp('10.20.30.54'), undefined);
      assert.deepEqual(b.byIp('10.20.30.52'), { ip: '10.20.30.52', state: 'declined', expires: 5_000 });
      assert.equal(b.byMac('02:00:00:00:00:09'), undefined);
      await b.close();
      const db = new DatabaseSync(file);
      assert.equal(db.prepare('PRAGMA journal_mode').get()?.journal_mode, 'wal');
      const put = db.prepare('INSERT INTO leases VALUES (?, ?, ?, ?)');
      assert.throws(() => put.run(parseIp('10.20.30.50')!, '02:00:00:00:00:03', 'bound', 1), /UNIQUE/i, 'the table itself refuses a second holder of an address');
      assert.throws(() => put.run(parseIp('10.20.30.60')!, '02:00:00:00:00:01', 'bound', 1), /UNIQUE/i, 'and a second address for a MAC');
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('control: the subnet parser the tests lean on', () => {
  assert.equal(parseCidr('10.20.40.11/24')?.cidr, '10.20.40.0/24');
});
