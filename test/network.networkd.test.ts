// Issue 20's links, read by their real consumer: systemd-networkd (Debian 12's 252, the
// node OS's own version) parses every rendered .netdev and .network of the rack fixture
// (test/fixtures/rack/cluster.yaml) and applies them to NICs in a network namespace this
// test creates: veths with the MACs and names the cluster file gives. networkd runs as in
// cni.bridge.test.ts: in a private mount namespace whose /run/systemd and
// /etc/systemd/network are tmpfs, killed by its pid; `networkctl` asks it from inside.
//
//   - every file parses: networkd names no rendered file in a complaint ("FILE:LINE: ...");
//   - w2 (NICs by MAC, no bond): the node link gets the node address, default route and
//     both DNS servers; the storage NIC its IPv4 and IPv6 addresses, MTU 9000 and its route;
//     `networkctl status` says both are configured;
//   - cp1 and cp2 (bonds, VLANs): with a kernel that has bonding and 802.1Q, bond0 is built
//     of both member NICs in the rendered mode (LACP rate fast on cp2), with the primary on
//     the PXE NIC, node0 is VLAN 100 on it with the node address and MTU 9000. A kernel
//     without them (this CI's host kernel has neither) refuses networkd's netlink request:
//     the test then proves networkd parsed each netdev and asked for it ("netdev could not
//     be created: Operation not supported", nothing else), and says so; the bond and VLAN
//     themselves are then proved by the VM test with the node OS's kernel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slipway, ROOT } from './helpers/cli.ts';
import { Netns } from './helpers/netns.ts';

const NETWORKD = '/lib/systemd/systemd-networkd';
const RACK = join(ROOT, 'test/fixtures/rack/cluster.yaml');
const OS_TREES = '/var/cache/slipway/os-image';

let work: string;
let out: string;
const spaces: Netns[] = [];
/** files holding the pid of each namespace's own dbus-daemon */
const busPids: string[] = [];

before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-networkd-'));
  out = join(work, 'out');
  const r = slipway(['render', '-f', RACK, '-o', out, '--state', join(work, 'state')]);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  for (const f of busPids) {
    const pid = existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) : 0;
    if (pid > 1) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  for (const ns of spaces.reverse()) await ns.close();
  rmSync(work, { recursive: true, force: true });
});

const networkDir = (m: string) => join(out, 'machines', m, 'root/etc/systemd/network');

interface Running {
  ns: Netns;
  daemon: ChildProcess;
  log: () => string;
  /** `networkctl ARGS` inside networkd's own mount and network namespace */
  networkctl: (...args: string[]) => string;
}

/** A machine as a namespace: a veth per NIC (name and MAC as given, its peer up so it has carrier), networkd reading the machine's rendered files. */
async function machine(name: string, nics: { ifname: string; mac: string }[], dir = networkDir(name)): Promise<Running> {
  const ns = Netns.create(`slipway-nd-${name}`);
  spaces.push(ns);
  nics.forEach((n, i) => {
    ns.ip('link', 'add', n.ifname, 'address', n.mac, 'type', 'veth', 'peer', 'name', `peer${i}`);
    ns.up(`peer${i}`);
  });
  const script = [
    'set -e',
    'mount --bind /sys /sys',
    'mount -o remount,bind,ro /sys', // networkd's test for "in a container": no udev wanted
    'mount -t tmpfs tmpfs /run/systemd',
    'mkdir -p /run/systemd/network /run/systemd/netif',
    'chown systemd-network:systemd-network /run/systemd/netif',
    'mount -t tmpfs tmpfs /etc/systemd/network',
    'cp "$1"/* /etc/systemd/network/',
    // a system bus of its own, which networkctl asks networkd through; its pid for after()
    'mount -t tmpfs tmpfs /run/dbus',
    'dbus-daemon --system --nofork --nopidfile </dev/null >/dev/null 2>&1 & echo $! > "$2"',
    'for i in $(seq 50); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.1; done',
    `exec ${NETWORKD}`,
  ].join('\n');
  const busPid = join(work, `${name}-${busPids.length}.dbus.pid`);
  busPids.push(busPid);
  const daemon = ns.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', dir, busPid], { env: { ...process.env, SYSTEMD_LOG_TARGET: 'console', SYSTEMD_LOG_LEVEL: 'debug' } });
  let log = '';
  daemon.stdout?.setEncoding('utf8').on('data', (d: string) => (log += d));
  daemon.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));
  const networkctl = (...args: string[]) => {
    const r = spawnSync('nsenter', ['--target', String(daemon.pid), '--mount', '--net', 'networkctl', '--no-pager', ...args], { encoding: 'utf8', timeout: 10_000 });
    return `${r.stdout}${r.stderr}`;
  };
  return { ns, daemon, log: () => log, networkctl };
}

/** networkd's parse complaints name the file and line: "/etc/systemd/network/X:LINE: ...". */
function parseComplaints(log: string): string[] {
  return log.split('\n').filter((l) => /\/etc\/systemd\/network\/[^:\s]+:\d+: /.test(l));
}

/** Does this kernel build bonds and 802.1Q VLANs? (asked in a throwaway namespace) */
function kernelHasBondAndVlan(): boolean {
  const ns = Netns.create('slipway-nd-probe');
  try {
    const bond = spawnSync('ip', ['-n', ns.name, 'link', 'add', 'probe0', 'type', 'bond'], { encoding: 'utf8' }).status === 0;
    const vlan = bond && spawnSync('ip', ['-n', ns.name, 'link', 'add', 'link', 'probe0', 'name', 'probe0.7', 'type', 'vlan', 'id', '7'], { encoding: 'utf8' }).status === 0;
    return bond && vlan;
  } finally {
    spawnSync('ip', ['netns', 'delete', ns.name]);
  }
}

test('the node OS runs the networkd version this test runs', (t) => {
  const mine = spawnSync(NETWORKD, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]!;
  assert.match(mine, /^systemd 252 /);
  const trees = existsSync(OS_TREES) ? readdirSync(OS_TREES).map((d) => join(OS_TREES, d, 'root', NETWORKD)).filter(existsSync) : [];
  if (!trees.length) return t.diagnostic('no node OS tree built here to compare with');
  const theirs = spawnSync(trees[0]!, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]!;
  assert.equal(theirs.split(' ').slice(0, 2).join(' '), mine.split(' ').slice(0, 2).join(' '), 'the same systemd major version');
});

test('control: a key networkd does not know is reported as FILE:LINE (what the checks below look for)', async () => {
  const dir = join(work, 'control');
  cpSync(networkDir('w2'), dir, { recursive: true });
  const f = join(dir, '20-slipway-lan0.network');
  writeFileSync(f, readFileSync(f, 'utf8').replace('DHCP=no', 'DHCP=no\nNoSuchKey=1'));
  const c = await machine('w2', [{ ifname: 'ens3', mac: '52:54:00:20:30:22' }], dir);
  await c.ns.waitFor('networkd to complain', () => parseComplaints(c.log()).length > 0, 10_000);
  assert.match(parseComplaints(c.log()).join('\n'), /20-slipway-lan0\.network:\d+: Unknown key 'NoSuchKey'/);
});

test('w2: NICs matched by MAC get their addresses, routes, DNS and MTU; networkctl says configured', async () => {
  const w2 = await machine('w2', [{ ifname: 'ens3', mac: '52:54:00:20:30:22' }, { ifname: 'ens4', mac: '52:54:00:20:32:22' }]);
  const addr = () => w2.ns.ip('addr', 'show');
  try {
    await w2.ns.waitFor('networkd to configure ens3 and ens4', () => /inet 10\.20\.30\.22\/24 .*ens3/.test(addr()) && /inet 10\.40\.0\.22\/24 .*ens4/.test(addr()) && /inet6 fd00:40::22\/64/.test(addr()) && /default via 10\.20\.30\.1 dev ens3/.test(w2.ns.ip('-4', 'route')), 20_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${addr()}\n${w2.log().split('\n').slice(-40).join('\n')}`);
  }
  assert.deepEqual(parseComplaints(w2.log()), []);
  assert.match(w2.ns.ip('-4', 'route'), /10\.41\.0\.0\/16 via 10\.40\.0\.1 dev ens4/);
  assert.match(w2.ns.ip('link', 'show', 'ens4'), /mtu 9000/);
  assert.match(w2.ns.ip('link', 'show', 'ens3'), /mtu 1500/);
  // LinkLocalAddressing=no on the node link (IPv6 off), ipv6 on the storage NIC
  assert.doesNotMatch(w2.ns.ip('-6', 'addr', 'show', 'dev', 'ens3'), /inet6/);
  await w2.ns.waitFor('networkctl to report both configured', () => /ens3\s+ether\s+routable\s+configured/.test(w2.networkctl('list')) && /ens4\s+ether\s+routable\s+configured/.test(w2.networkctl('list')), 10_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${w2.networkctl('list')}`);
  });
  const status = w2.networkctl('status', 'ens3');
  assert.match(status, /Network File: \/etc\/systemd\/network\/20-slipway-lan0\.network/);
  assert.match(status, /DNS: 10\.20\.30\.1\s+10\.20\.30\.3/);
  assert.match(w2.networkctl('status', 'ens4'), /Network File: \/etc\/systemd\/network\/20-slipway-stor0\.network/);
});

test('w1 (the worker role default): eno1 by name, MTU 9000, carrying VLAN node0', async () => {
  const w1 = await machine('w1', [{ ifname: 'eno1', mac: '52:54:00:20:30:21' }]);
  await w1.ns.waitFor('networkd to apply eno1.network', () => /eno1: found matching network '\/etc\/systemd\/network\/20-slipway-eno1\.network'/.test(w1.log()) && /mtu 9000/.test(w1.ns.ip('link', 'show', 'eno1')), 20_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${w1.log().split('\n').slice(-40).join('\n')}`);
  });
  if (kernelHasBondAndVlan()) {
    await w1.ns.waitFor('node0 with the node address', () => /inet 10\.20\.30\.21\/24/.test(w1.ns.ip('addr', 'show', 'dev', 'node0')), 20_000);
    assert.match(w1.ns.ip('-d', 'link', 'show', 'node0'), /vlan protocol 802\.1Q id 100/);
    assert.match(w1.networkctl('status', 'node0'), /Network File: \/etc\/systemd\/network\/20-slipway-node0\.network/);
  } else {
    // networkd parsed node0.netdev and asked the kernel for the VLAN on eno1, which it cannot make
    await w1.ns.waitFor('networkd to ask the kernel for node0', () => /node0: Creating/.test(w1.log()) && /eno1: Could not create stacked netdev: .*Operation not supported/.test(w1.log()), 10_000);
  }
  assert.deepEqual(parseComplaints(w1.log()), []);
});

for (const [name, mode, lacp] of [['cp1', 'active-backup', undefined], ['cp2', '802.3ad', 'fast']] as const) {
  test(`${name}: bond0 (${mode}) and its VLANs are parsed and asked of the kernel`, async (t) => {
    const last = name === 'cp1' ? '11' : '12';
    const cp = await machine(name, [{ ifname: 'ens3', mac: `52:54:00:20:30:${last}` }, { ifname: 'ens4', mac: `52:54:00:20:31:${last}` }]);
    const netdevs = readdirSync(networkDir(name)).filter((f) => f.endsWith('.netdev'));
    assert.ok(netdevs.includes('10-slipway-bond0.netdev') && netdevs.includes('10-slipway-node0.netdev'), netdevs.join(' '));
    if (kernelHasBondAndVlan()) {
      await cp.ns.waitFor('bond0 and node0', () => /node0@bond0/.test(cp.ns.ip('link', 'show')), 20_000);
      const bond = cp.ns.ip('-d', 'link', 'show', 'bond0');
      assert.match(bond, new RegExp(`bond mode ${mode}`));
      assert.match(bond, /miimon 100 /);
      if (lacp) assert.match(bond, new RegExp(`lacp_rate ${lacp}`));
      assert.match(cp.ns.ip('-d', 'link', 'show', 'node0'), /vlan protocol 802\.1Q id 100/);
    } else {
      await cp.ns.waitFor('networkd to ask the kernel for bond0', () => /bond0: netdev could not be created: Operation not supported/.test(cp.log()), 10_000);
      t.diagnostic('this kernel has no bonding/802.1Q: networkd parsed the netdevs and requested bond0; the VLANs on it wait for it (the VM test proves both)');
    }
    assert.deepEqual(parseComplaints(cp.log()), []);
    // veths have no permanent MAC, so the members' PermanentMACAddress= files match no veth here: the VM test (virtio NICs) proves them
    for (const f of readdirSync(networkDir(name)).filter((x) => x.startsWith('15-slipway-bond0-member')))
      assert.match(readFileSync(join(networkDir(name), f), 'utf8'), /^PermanentMACAddress=52:54:00:2[01]:3[01]:1\d\nType=ether$/m);
  });
}
