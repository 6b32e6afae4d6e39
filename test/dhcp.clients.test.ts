// Slipway's DHCP server against real clients, in network namespaces this test creates
// (nothing touches the root namespace): dhclient and busybox udhcpc dressed as BIOS PXE,
// UEFI PXE, UEFI HTTP boot and iPXE; ProxyDHCP beside a real dnsmasq; a machine on
// another rack behind ISC dhcrelay; leases across a restart and across `kill -9` in the
// middle of a lease storm; and the start-up check that finds a rival DHCP server.
//
// Every process runs in its own namespace on one bridged segment (helpers/dhcp-lab.ts),
// is killed by PID at the end, and every wait is bounded.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import type { ChildProcess } from 'node:child_process';
import { DhcpLab } from './helpers/dhcp-lab.ts';
import type { Netns } from './helpers/netns.ts';
import type { ServeRequest } from './helpers/dhcp-serve.ts';
import { generatedMacs, type LoadRequest, type LoadResult } from './helpers/dhcp-load.ts';
import type { Offer } from './helpers/dhcp-probe.ts';
import type { RivalReport } from '../src/serve/dhcp/rival.ts';
import { formatIp } from '../src/lib/ipv4.ts';
import { haSpec } from './helpers/spec.ts';

const HELPERS = join(dirname(fileURLToPath(import.meta.url)), 'helpers');
const NODE = process.execPath;
const PROV = '10.20.30.2';
const BASE = `http://${PROV}:8080`;
const POOL = { start: '10.20.30.100', end: '10.20.30.199' };
const MACHINES = haSpec().machines;
const [CP1, CP2, CP3, W1, W2] = MACHINES as [(typeof MACHINES)[0], (typeof MACHINES)[0], (typeof MACHINES)[0], (typeof MACHINES)[0], (typeof MACHINES)[0]];
const STRANGER = '52:54:00:99:99:01';

let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-dhcp-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

// --- processes ---------------------------------------------------------------------------

interface Daemon {
  child: ChildProcess;
  log: () => string;
}

function daemon(ns: Netns, cmd: string, args: string[]): Daemon {
  const child = ns.spawn(cmd, args);
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  return { child, log: () => log };
}

interface Slipway extends Daemon {
  /** SIGTERM; resolves with the Prometheus text the server printed on its way out */
  stop(): Promise<string>;
}

async function slipway(ns: Netns, req: ServeRequest): Promise<Slipway> {
  const d = daemon(ns, NODE, [join(HELPERS, 'dhcp-serve.ts'), JSON.stringify({ serve: req })]);
  await ns.waitFor(`slipway dhcp ready:\n${d.log()}`, () => d.log().includes('"event":"ready"') || d.child.exitCode !== null, 15_000, 50);
  assert.ok(d.log().includes('"event":"ready"'), d.log());
  return {
    ...d,
    stop: async () => {
      await ns.kill(d.child);
      const m = /\{"event":"metrics".*\}/.exec(d.log());
      return m ? (JSON.parse(m[0]) as { text: string }).text : '';
    },
  };
}

async function dnsmasq(ns: Netns, name: string, range: string): Promise<Daemon> {
  const dir = join(work, name);
  const d = daemon(ns, 'dnsmasq', [
    '-k',
    '--conf-file=/dev/null',
    '--port=0',
    '--interface=eth0',
    '--bind-interfaces',
    `--dhcp-range=${range}`,
    '--dhcp-option=option:router,10.20.30.1',
    '--no-ping',
    '--log-facility=-',
    '--log-dhcp',
    `--dhcp-leasefile=${dir}.leases`,
    `--pid-file=${dir}.pid`,
    '--user=root',
  ]);
  await ns.waitFor(`${name} ready:\n${d.log()}`, () => /DHCP, IP range/.test(d.log()) || d.child.exitCode !== null, 10_000, 50);
  assert.ok(/DHCP, IP range/.test(d.log()), d.log());
  return d;
}

/** key=value lines of `env` → object */
const parseEnv = (text: string) => Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

/** A hook script for dhclient and udhcpc that only records what the client was told. */
function clientDir(name: string): string {
  const dir = join(work, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const script = join(dir, 'hook.sh');
  // written aside and renamed: the test reads the file as soon as it exists (CI once
  // read it between the shell's truncating open and env's write: no new_ip_address)
  writeFileSync(script, '#!/bin/sh\nd=$(dirname "$0"); r=${reason:-$1}\nenv > "$d/.env.$r.tmp" && mv "$d/.env.$r.tmp" "$d/env.$r"\n', { mode: 0o755 });
  return dir;
}

interface ClientDress {
  /** option 60 */
  vendor?: string;
  /** option 93 */
  arch?: number;
  /** option 77 as iPXE sends it (plain string) or RFC 3004 (length-prefixed) */
  userClass?: 'plain' | 'rfc3004';
}

/** ISC dhclient, once, with a private config, lease file and hook: what it bound, or undefined. */
async function dhclient(ns: Netns, name: string, dress: ClientDress): Promise<Record<string, string> | undefined> {
  const dir = clientDir(`dhclient-${name}`);
  const conf = [
    'option pxe-arch code 93 = unsigned integer 16;',
    dress.vendor ? `send vendor-class-identifier "${dress.vendor}";` : '',
    dress.arch !== undefined ? `send pxe-arch ${dress.arch};` : '',
    dress.userClass ? 'send user-class "iPXE";' : '',
    'request subnet-mask, broadcast-address, routers, domain-name-servers, host-name, ntp-servers;',
    'timeout 8;',
    'initial-interval 1;',
  ].join('\n');
  writeFileSync(join(dir, 'dhclient.conf'), conf);
  const child = ns.spawn('dhclient', ['-4', '-d', '-1', '-v', '-cf', join(dir, 'dhclient.conf'), '-lf', join(dir, 'lease'), '-pf', join(dir, 'pid'), '-sf', join(dir, 'hook.sh'), 'eth0'], { env: { PATH: process.env.PATH } });
  const bound = join(dir, 'env.BOUND');
  try {
    await ns.waitFor('dhclient BOUND', () => existsSync(bound) || child.exitCode !== null, 12_000, 50);
  } catch {
    /* no lease in time */
  }
  await ns.kill(child);
  return existsSync(bound) ? parseEnv(readFileSync(bound, 'utf8')) : undefined;
}

/** busybox udhcpc, once (-q -n): what it bound, or undefined. */
async function udhcpc(ns: Netns, name: string, dress: ClientDress, tries = 3): Promise<Record<string, string> | undefined> {
  const dir = clientDir(`udhcpc-${name}`);
  const args = ['-i', 'eth0', '-f', '-q', '-n', '-t', String(tries), '-T', '1', '-A', '1', '-s', join(dir, 'hook.sh'), '-O', 'bootfile', '-O', 'tftp'];
  if (dress.vendor) args.push('-V', dress.vendor);
  if (dress.arch !== undefined) args.push('-x', `0x5d:${dress.arch.toString(16).padStart(4, '0')}`);
  if (dress.userClass === 'rfc3004') args.push('-x', `0x4d:04${Buffer.from('iPXE').toString('hex')}`);
  if (dress.userClass === 'plain') args.push('-x', `0x4d:${Buffer.from('iPXE').toString('hex')}`);
  const r = await ns.exec('udhcpc', args, { timeoutMs: (tries + 5) * 1000, env: { PATH: process.env.PATH } });
  const bound = join(dir, 'env.bound');
  if (!existsSync(bound)) {
    assert.notEqual(r.code, 0, `udhcpc exited 0 without a lease: ${r.out}`);
    return undefined;
  }
  return parseEnv(readFileSync(bound, 'utf8'));
}

const pxe = (arch: number) => `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`;

async function runNode<T>(ns: Netns, helper: string, arg: object, timeoutMs = 30_000): Promise<T> {
  const r = await ns.exec(NODE, [join(HELPERS, helper), JSON.stringify(arg)], { timeoutMs });
  assert.equal(r.code, 0, r.out);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

const inPool = (ip: string | undefined, pool = POOL) => {
  const n = (s: string) => s.split('.').reduce((a, b) => a * 256 + Number(b), 0);
  return ip !== undefined && n(ip) >= n(pool.start) && n(ip) <= n(pool.end);
};

// --- full mode ---------------------------------------------------------------------------

describe('full mode, real clients', () => {
  let lab: DhcpLab;
  let cli: Netns;
  let gen: Netns;
  let server: Slipway;
  before(async () => {
    lab = DhcpLab.create(`${PROV}/24`);
    cli = lab.host('cli');
    gen = lab.host('gen', { address: '10.20.30.250/24' });
    server = await slipway(lab.srv, { mode: 'full', pool: POOL });
  });
  after(async () => {
    await lab?.close();
  });

  test('dhclient as BIOS PXE: planned address, router, DNS, NTP, hostname, undionly.kpxe from the provisioner', async () => {
    lab.setMac(cli, CP1.mac);
    const env = await dhclient(cli, 'bios', { vendor: pxe(0), arch: 0 });
    assert.ok(env, `no lease:\n${server.log()}`);
    assert.equal(env.new_ip_address, CP1.ip);
    assert.equal(env.new_subnet_mask, '255.255.255.0');
    assert.equal(env.new_routers, '10.20.30.1');
    assert.equal(env.new_domain_name_servers, '10.20.30.1');
    assert.equal(env.new_ntp_servers, PROV, 'option 42: time from the provisioner');
    assert.equal(env.new_host_name, 'cp1');
    assert.equal(env.new_filename, 'undionly.kpxe');
    assert.equal(env.new_next_server, PROV);
    assert.equal(env.new_dhcp_server_identifier, PROV);
  });

  test("dhclient as iPXE (option 77 as iPXE's plain string): the boot script, and 175.176 = 1", async () => {
    lab.setMac(cli, CP2.mac);
    const env = await dhclient(cli, 'ipxe', { vendor: pxe(0), arch: 0, userClass: 'plain' });
    assert.ok(env, `no lease:\n${server.log()}`);
    assert.equal(env.new_ip_address, CP2.ip);
    assert.equal(env.new_filename, `${BASE}/boot.ipxe`);
    assert.equal(env.new_bootfile_name, `${BASE}/boot.ipxe`);
    assert.equal(env.new_unknown_175, 'b0:1:1');
  });

  test('udhcpc as UEFI x64 PXE (arch 7): snponly.efi over TFTP', async () => {
    lab.setMac(cli, CP3.mac);
    const env = await udhcpc(cli, 'efi7', { vendor: pxe(7), arch: 7 });
    assert.ok(env, `no lease:\n${server.log()}`);
    assert.equal(env.ip, CP3.ip);
    assert.equal(env.router, '10.20.30.1');
    assert.equal(env.dns, '10.20.30.1');
    assert.equal(env.boot_file, 'snponly.efi');
    assert.equal(env.siaddr, PROV);
    assert.equal(env.tftp, PROV);
  });

  test('udhcpc as iPXE on UEFI (arch 9, option 77 in RFC 3004 form): the boot script', async () => {
    lab.setMac(cli, W1.mac);
    const env = await udhcpc(cli, 'ipxe9', { vendor: pxe(9), arch: 9, userClass: 'rfc3004' });
    assert.ok(env, `no lease:\n${server.log()}`);
    assert.equal(env.ip, W1.ip);
    assert.equal(env.boot_file, `${BASE}/boot.ipxe`);
  });

  test('dhclient as UEFI HTTP boot (arch 16): the ipxe.efi URL and vendor class HTTPClient echoed', async () => {
    lab.setMac(cli, W2.mac);
    const env = await dhclient(cli, 'http', { vendor: 'HTTPClient:Arch:00016:UNDI:003001', arch: 16 });
    assert.ok(env, `no lease:\n${server.log()}`);
    assert.equal(env.new_ip_address, W2.ip);
    assert.equal(env.new_filename, `${BASE}/assets/ipxe/ipxe.efi`);
    assert.equal(env.new_vendor_class_identifier, 'HTTPClient');
  });

  test('an unknown MAC gets a pool address and no boot file; garbage on the wire is counted and survived', async () => {
    // 200 malformed packets first: the server must drop each with a reason and keep serving.
    await runNode<LoadResult>(gen, 'dhcp-load.ts', { server: PROV, relay: '10.20.30.250', count: 0, junk: 200 } satisfies LoadRequest);
    lab.setMac(cli, STRANGER);
    const env = await udhcpc(cli, 'stranger', { vendor: pxe(0), arch: 0 });
    assert.ok(env, `no lease:\n${server.log()}`);
    assert.ok(inPool(env.ip), `leased ${env.ip}`);
    assert.equal(env.boot_file, undefined);
    assert.equal(env.hostname, undefined);
    const metrics = await server.stop();
    assert.match(metrics, /slipway_dhcp_dropped_total\{reason="truncated"\} \d+/);
    assert.match(metrics, /slipway_dhcp_dropped_total\{reason="bad-magic-cookie"\} \d+/);
    // every ACK sent was timed, the lease commit included
    const acks = /slipway_dhcp_replies_total\{type="ack"\} (\d+)/.exec(metrics)?.[1];
    assert.ok(Number(acks) >= 1, metrics);
    assert.match(metrics, new RegExp(`slipway_dhcp_handle_seconds_count\\{type="ack"\\} ${acks}\n`));
  });

  test('without a pool an unknown MAC gets nothing; a machine still gets its address', async () => {
    const noPool = await slipway(lab.srv, { mode: 'full' });
    try {
      lab.setMac(cli, STRANGER);
      assert.equal(await udhcpc(cli, 'stranger-nopool', { vendor: pxe(0), arch: 0 }, 2), undefined);
      lab.setMac(cli, CP1.mac);
      assert.equal((await udhcpc(cli, 'cp1-nopool', {}))?.ip, CP1.ip);
      assert.match(noPool.log(), /"reason":"no-address"/);
    } finally {
      await noPool.stop();
    }
  });
});

// --- proxy mode --------------------------------------------------------------------------

describe('proxy mode beside a real dnsmasq', () => {
  test('dnsmasq gives the address, Slipway only boot parameters (and the PXE 4011 step)', { timeout: 60_000 }, async () => {
    const lab = DhcpLab.create(`${PROV}/24`);
    try {
      const site = lab.host('site', { address: '10.20.30.4/24' });
      const cli = lab.host('cli', { address: '10.20.30.250/24', defaultRoute: true });
      const siteDhcp = await dnsmasq(site, 'site-dnsmasq', '10.20.30.150,10.20.30.199,255.255.255.0,1h');
      const server = await slipway(lab.srv, { mode: 'proxy', unknown: 'ignore' });
      const offers = (mac: string, kind: string) => runNode<Offer[]>(cli, 'dhcp-probe.ts', { mac, kind, windowMs: 2_000 });

      const got = await offers(CP1.mac, 'bios');
      const fromSite = got.find((o) => o.serverId === '10.20.30.4');
      const fromUs = got.find((o) => o.serverId === PROV);
      assert.ok(fromSite && inPool(fromSite.yiaddr, { start: '10.20.30.150', end: '10.20.30.199' }), `site offer: ${JSON.stringify(got)}\n${siteDhcp.log()}`);
      assert.ok(fromUs, `no ProxyDHCP offer: ${JSON.stringify(got)}\n${server.log()}`);
      assert.equal(fromUs.yiaddr, '0.0.0.0', 'ProxyDHCP never offers an address');
      assert.equal(fromUs.vendorClass, 'PXEClient');
      assert.equal(fromUs.pxeControl, 8);
      assert.equal(fromUs.siaddr, PROV);
      assert.equal(fromUs.file, 'undionly.kpxe');
      assert.equal(fromUs.router, undefined);

      // The 4011 step, from the address the site's server gave (here the client's own).
      for (const [kind, file] of [['bios', 'undionly.kpxe'], ['efi9', 'snponly.efi'], ['ipxe', `${BASE}/boot.ipxe`]] as const) {
        const ack = await runNode<Offer | { none: true }>(cli, 'dhcp-probe.ts', { mac: CP1.mac, kind, ciaddr: '10.20.30.250', proxy: PROV, timeoutMs: 3_000 });
        assert.ok(!ack.none, `${kind}: no answer on port 4011:\n${server.log()}`);
        assert.equal(ack.type, 5);
        assert.equal(ack.file, file, kind);
        assert.equal(ack.yiaddr, '0.0.0.0');
      }

      // Not ours to answer: UEFI HTTP boot (as dnsmasq.conf says) and MACs the inventory ignores.
      for (const [mac, kind] of [[CP1.mac, 'http'], [STRANGER, 'bios']] as const) {
        const only = await offers(mac, kind);
        assert.deepEqual(only.map((o) => o.serverId), ['10.20.30.4'], `${kind} ${mac}: ${JSON.stringify(only)}`);
      }
      assert.match(server.log(), /"reason":"http-boot-proxy"/);
      assert.match(server.log(), /"reason":"ignored-mac"/);
    } finally {
      await lab.close();
    }
  });
});

// --- relay -------------------------------------------------------------------------------

describe('a machine on another rack, behind ISC dhcrelay', () => {
  test('udhcpc on rack 2 gets its planned address, the relay as router and its boot file', { timeout: 60_000 }, async () => {
    const lab = DhcpLab.create(`${PROV}/24`);
    try {
      // rack 2: 10.20.40.0/24, the relay at .1 there and at 10.20.30.3 on the provisioning segment
      const relay = lab.host('relay', { address: '10.20.30.3/24' });
      const rack = lab.host('rack2', { bridged: false }); // not on the provisioning segment: wired to the relay only
      relay.addVeth('eth1', 'eth0', rack);
      relay.addAddress('eth1', '10.20.40.1/24');
      lab.srv.ip('route', 'add', '10.20.40.0/24', 'via', '10.20.30.3');
      const r2n1 = { name: 'r2n1', mac: '52:54:00:20:40:11', ip: '10.20.40.11', prefix: 24, roles: ['worker' as const], disk: '/dev/sda', labels: {} };
      lab.setMac(rack, r2n1.mac);
      const server = await slipway(lab.srv, { mode: 'full', pool: POOL, machines: [r2n1] });
      // -a: add a relay agent option; dhcrelay then insists the server echo it (RFC 3046)
      const dhcrelay = daemon(relay, 'dhcrelay', ['-d', '-4', '-a', '-i', 'eth0', '-i', 'eth1', PROV]);
      await relay.waitFor(`dhcrelay up:\n${dhcrelay.log()}`, () => /Sending on\s+Socket/.test(dhcrelay.log()) || dhcrelay.child.exitCode !== null, 10_000, 50);

      const env = await udhcpc(rack, 'rack2', { vendor: pxe(7), arch: 7 });
      assert.ok(env, `no lease through the relay:\n${server.log()}\n${dhcrelay.log()}`);
      assert.equal(env.ip, '10.20.40.11');
      assert.equal(env.router, '10.20.40.1');
      assert.equal(env.subnet, '255.255.255.0');
      assert.equal(env.boot_file, 'snponly.efi');
      assert.equal(env.siaddr, PROV);
      assert.match(server.log(), /"relay":"10\.20\.40\.1".*"msg":"dhcp ack"/);
    } finally {
      await lab.close();
    }
  });
});

// --- persistence -------------------------------------------------------------------------

describe('leases on disk', () => {
  const WIDE = '10.20.0.0/16';
  const BIG_POOL = { start: '10.20.32.0', end: '10.20.35.255' };
  let lab: DhcpLab;
  let cli: Netns;
  let gen: Netns;
  let state: string;
  before(() => {
    lab = DhcpLab.create(`${PROV}/16`);
    cli = lab.host('cli');
    gen = lab.host('gen', { address: '10.20.30.250/16' });
    state = mkdtempSync(join(work, 'state-'));
  });
  after(async () => {
    await lab?.close();
  });

  test('a lease survives a restart: the address stays with its client and is not given to another', async () => {
    let server = await slipway(lab.srv, { mode: 'full', pool: POOL, stateDir: state });
    lab.setMac(cli, STRANGER);
    const first = await udhcpc(cli, 'persist-1', {});
    assert.ok(first && inPool(first.ip), `first lease: ${JSON.stringify(first)}\n${server.log()}`);
    await server.stop();
    server = await slipway(lab.srv, { mode: 'full', pool: POOL, stateDir: state });
    try {
      lab.setMac(cli, '52:54:00:99:99:02');
      const other = await udhcpc(cli, 'persist-2', {});
      assert.ok(other && inPool(other.ip));
      assert.notEqual(other.ip, first.ip, 'the restarted server gave a held address to another MAC');
      lab.setMac(cli, STRANGER);
      assert.equal((await udhcpc(cli, 'persist-3', {}))?.ip, first.ip);
    } finally {
      await server.stop();
    }
  });

  test('kill -9 in a lease storm: every ACKed lease is on disk, no address twice, reservations intact, clients renew', { timeout: 90_000 }, async () => {
    const stormState = mkdtempSync(join(work, 'storm-'));
    const serve: ServeRequest = { mode: 'full', subnet: WIDE, pool: BIG_POOL, stateDir: stormState };
    const server = await slipway(lab.srv, serve);
    const macs = generatedMacs(800, 7);
    // the generator prints each ACK as it arrives; the server dies after the 200th
    const storm = gen.spawn(NODE, [join(HELPERS, 'dhcp-load.ts'), JSON.stringify({ server: PROV, relay: '10.20.30.250', macs, concurrency: 32, timeoutMs: 500, attempts: 2, progress: true } satisfies LoadRequest)]);
    const acked = new Map<string, string>();
    let buf = '';
    storm.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, nl)) as { ack?: string; ip?: string };
        buf = buf.slice(nl + 1);
        if (line.ack) acked.set(line.ack, line.ip!);
        if (acked.size >= 200 && server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
      }
    });
    await lab.srv.waitFor('the storm to reach 200 ACKs', () => server.child.signalCode === 'SIGKILL' || server.child.exitCode !== null, 30_000, 20);
    await lab.srv.waitFor('the killed server to exit', () => server.child.signalCode !== null, 5_000, 20);
    await gen.kill(storm, 500);
    assert.ok(acked.size >= 200, `only ${acked.size} ACKs before the server died`);

    // The database as the killed server left it.
    const db = new DatabaseSync(join(stormState, 'dhcp-leases.sqlite'));
    try {
      assert.equal(db.prepare('PRAGMA integrity_check').get()?.integrity_check, 'ok');
      assert.deepEqual(db.prepare('SELECT ip FROM leases GROUP BY ip HAVING COUNT(*) > 1').all(), []);
      assert.deepEqual(db.prepare('SELECT mac FROM leases WHERE mac IS NOT NULL GROUP BY mac HAVING COUNT(*) > 1').all(), []);
      const onDisk = new Map(db.prepare("SELECT mac, ip FROM leases WHERE state = 'bound'").all().map((r) => [String(r.mac), formatIp(Number(r.ip))]));
      const lost = [...acked].filter(([mac, ip]) => onDisk.get(mac) !== ip);
      assert.deepEqual(lost, [], `ACKed but not on disk (${lost.length} of ${acked.size})`);
    } finally {
      db.close();
    }

    const restarted = await slipway(lab.srv, serve);
    try {
      // Every client that got an ACK renews (RENEWING: ciaddr) and keeps its address.
      const renew = await runNode<LoadResult>(gen, 'dhcp-load.ts', { server: PROV, relay: '10.20.30.250', renew: Object.fromEntries(acked), concurrency: 32, timeoutMs: 1000 } satisfies LoadRequest, 60_000);
      assert.equal(renew.acks.length, acked.size, `naks ${renew.naks.length}, failed ${renew.failed.length}`);
      for (const a of renew.acks) assert.equal(a.ip, acked.get(a.mac), a.mac);
      // Reservations: every machine still gets its planned address.
      const machines = await runNode<LoadResult>(gen, 'dhcp-load.ts', { server: PROV, relay: '10.20.30.250', macs: MACHINES.map((m) => m.mac) } satisfies LoadRequest);
      assert.deepEqual(new Map(machines.acks.map((a) => [a.mac, a.ip])), new Map(MACHINES.map((m) => [m.mac, m.ip])));
      // The rest of the storm completes, and nobody shares an address.
      const rest = await runNode<LoadResult>(gen, 'dhcp-load.ts', { server: PROV, relay: '10.20.30.250', macs: macs.filter((m) => !acked.has(m)), concurrency: 32 } satisfies LoadRequest, 60_000);
      assert.equal(rest.acks.length, macs.length - acked.size, `naks ${rest.naks.length}, failed ${rest.failed.length}`);
      const all = [...renew.acks, ...machines.acks, ...rest.acks].map((a) => a.ip);
      assert.equal(new Set(all).size, all.length, 'an address was given to two MACs');
    } finally {
      await restarted.stop();
    }
  });
});

// --- rival detection ---------------------------------------------------------------------

describe('rival DHCP servers', () => {
  test('detectRivalDhcp reports a dnsmasq on the segment, and not our own server', { timeout: 60_000 }, async () => {
    const lab = DhcpLab.create(`${PROV}/24`);
    try {
      // Our own server answers the probe too (it has a pool): it must not count.
      await slipway(lab.srv, { mode: 'full', pool: POOL, unknown: 'local' });
      const check = () => runNode<RivalReport & { event: string }>(lab.srv, 'dhcp-serve.ts', { rival: { ours: [PROV], localAddress: PROV, timeoutMs: 1_500 } });
      const quiet = await check();
      assert.equal(quiet.error, undefined);
      assert.deepEqual(quiet.rivals, [], 'no rival yet');
      const rogue = lab.host('rogue', { address: '10.20.30.4/24' });
      await dnsmasq(rogue, 'rogue-dnsmasq', '10.20.30.200,10.20.30.220,255.255.255.0,1h');
      const loud = await check();
      assert.equal(loud.rivals.length, 1, JSON.stringify(loud));
      assert.equal(loud.rivals[0]!.serverId, '10.20.30.4');
      assert.equal(loud.rivals[0]!.proxy, false);
      assert.ok(inPool(loud.rivals[0]!.yiaddr, { start: '10.20.30.200', end: '10.20.30.220' }), loud.rivals[0]!.yiaddr);
    } finally {
      await lab.close();
    }
  });
});
