// Issue 20's bond and VLAN on the node OS's own kernel (6.1, with bonding and 8021q; this
// host's kernel has neither): a QEMU VM with two virtio NICs boots Slipway's OS disk image,
// into whose root file system cp1's rendered networkd files of the rack fixture were
// written (debugfs, no mount): bond0 (active-backup) of both NICs by MAC, VLAN 100 (node0)
// on it with the node address 10.20.30.11/24 and MTU 9000, VLAN 200 (storage0).
//
//   - systemd-networkd in the VM builds them: /proc/net/bonding/bond0 names both members,
//     the first (the PXE NIC, untagged on the provisioning network) the primary and
//     active one; node0 is VLAN 100 on bond0 with the node address; networkctl says
//     configured;
//   - traffic across VLAN 100: the hub holds the provisioner's address 10.20.30.2 on
//     VLAN 100 through the lab's VLAN endpoint (src/rehearse/lab/vlan.ts: eBPF on tc, as
//     this host's kernel has neither 8021q nor bridge VLAN filtering); the hub pings node0
//     and node0 pings the hub, every echo answered, and the active member's
//     tap carries both directions tagged VLAN 100 (tcpdump -e);
//   - bond-failover, by the VM rehearsal's own check (src/rehearse/vm/bond.ts): QEMU's
//     monitor cuts the active member's link (set_link ... off); the bond makes the second
//     member active, node0 keeps its address, every link stays configured, and the pings
//     both ways are answered again, now tagged on the second member's tap; the check puts
//     the wire back.
//
// Everything runs in a namespace this test creates (bridge br0, two taps, the VLAN
// endpoint's veth); QEMU is killed by its pid. It takes the heavy tests' turn
// (test/helpers/vm-lock.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slipway, ROOT } from './helpers/cli.ts';
import { Netns } from './helpers/netns.ts';
import { heavyTestTurn } from './helpers/vm-lock.ts';
import { addTap, kvmWorks, partitions, Qemu } from '../src/rehearse/vm/qemu.ts';
import { BRIDGE } from '../src/rehearse/lab/lab.ts';
import { bondFailover } from '../src/rehearse/vm/bond.ts';
import { addVlanEndpoint, vlanToolsMissing } from '../src/rehearse/lab/vlan.ts';
import { parseClusterFile } from '../src/spec/parse.ts';

const OS_TREES = '/var/cache/slipway/os-image';
const RACK = join(ROOT, 'test/fixtures/rack/cluster.yaml');
const MEMBER1 = '52:54:00:20:30:11';
const MEMBER2 = '52:54:00:20:31:11';

const work = mkdtempSync(join(tmpdir(), 'slipway-bond-vm-'));
after(() => rmSync(work, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(cmd: string, args: string[], timeout = 300_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The newest node OS image (scripts/build-os-image.sh's output) with its disk and kernel. */
function osImage(): string | undefined {
  if (!existsSync(OS_TREES)) return undefined;
  return readdirSync(OS_TREES)
    .map((d) => join(OS_TREES, d))
    .filter((d) => existsSync(join(d, 'disk.img.zst')) && existsSync(join(d, 'vmlinuz')))
    .sort((a, b) => statSync(join(b, 'disk.img.zst')).mtimeMs - statSync(join(a, 'disk.img.zst')).mtimeMs)[0];
}

/** cp1's rendered networkd files, written into the disk's root file system by debugfs. */
function plantNetworkFiles(disk: string, rendered: string): string[] {
  const t = partitions(disk);
  const root = t.parts.find((p) => p.type === '83');
  assert.ok(root, `no Linux partition on ${disk}`);
  const fs = `${disk}?offset=${root.start * t.sectorSize}`;
  const dir = join(rendered, 'machines/cp1/root/etc/systemd/network');
  const files = readdirSync(dir);
  const cmds = ['cd /etc/systemd/network', ...files.map((f) => `write ${join(dir, f)} ${f}`), ...files.map((f) => `sif ${f} mode 0100644`)];
  writeFileSync(join(work, 'debugfs.cmds'), cmds.join('\n') + '\n');
  run('debugfs', ['-w', '-f', join(work, 'debugfs.cmds'), fs]);
  const listed = run('debugfs', ['-R', 'ls /etc/systemd/network', fs]);
  for (const f of files) assert.ok(listed.includes(f), `${f} on the disk: ${listed}`);
  return files;
}

test('bond-failover: an active-backup bond carrying the node VLAN, on the node OS kernel, keeps its address and its VLAN traffic when a member\'s link is cut', { timeout: 40 * 60_000 }, async (t) => {
  const image = osImage();
  if (!image) return t.skip(`no node OS image under ${OS_TREES}: build it with scripts/rehearsal-deps.sh`);
  const vlanMissing = vlanToolsMissing();
  if (vlanMissing) return t.skip(`the lab's VLAN endpoint needs ${vlanMissing}`);
  const release = await heavyTestTurn('network.qemu', undefined, { cores: 1 });
  t.after(release);

  const rendered = join(work, 'out');
  const r = slipway(['render', '-f', RACK, '-o', rendered, '--state', join(work, 'state')]);
  assert.equal(r.code, 0, r.stderr);
  const disk = join(work, 'disk.raw');
  run('zstd', ['-q', '-d', '-o', disk, join(image, 'disk.img.zst')]);
  const planted = plantNetworkFiles(disk, rendered);
  assert.ok(planted.includes('10-slipway-bond0.netdev') && planted.includes('15-slipway-bond0-member1.network'), planted.join(' '));

  const hub = Netns.create('slipway-bond');
  t.after(() => hub.close());
  hub.addBridge(BRIDGE);
  addTap(hub, 'tapm1');
  addTap(hub, 'tapm2');
  // the provisioner's address on VLAN 100, where cp1's node0 is
  addVlanEndpoint(hub, { name: 'vlan100', port: 'vlan100p', vid: 100, bridge: BRIDGE, address: '10.20.30.2/24' });

  const accel = kvmWorks(join(image, 'vmlinuz')) ? 'kvm' : 'tcg';
  const qemu = await Qemu.start({
    hub, name: 'cp1', mac: MEMBER1, tap: 'tapm1', memoryMiB: 1024, cpus: 1, accel,
    serialSocket: join(work, 'serial.sock'), serialLog: join(work, 'serial.log'), monitor: join(work, 'monitor.sock'),
    nicOptions: ',romfile=', // no PXE ROM: this VM boots its disk
    diskArgs: ['-drive', `file=${disk},if=none,id=d0,format=raw`, '-device', 'virtio-blk-pci,drive=d0,bootindex=2'],
    extraArgs: ['-netdev', 'tap,id=n1,ifname=tapm2,script=no,downscript=no', '-device', `virtio-net-pci,netdev=n1,mac=${MEMBER2},romfile=`],
  });
  t.after(() => qemu.kill());

  /** a command on the serial console's root shell, its output between markers */
  const sh = async (command: string, timeoutMs = 60_000): Promise<string> => {
    const id = Math.random().toString(36).slice(2, 8);
    qemu.write(`dmesg -n 1; echo "@@B""${id}@@"; ( ${command} ) 2>&1; echo "@@E""${id}@@"\n`);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const text = qemu.console();
      const b = text.lastIndexOf(`@@B${id}@@`);
      const e = text.lastIndexOf(`@@E${id}@@`);
      if (b >= 0 && e > b) return text.slice(b + `@@B${id}@@`.length, e).replace(/\r\n/g, '\n').trim();
      await sleep(250);
    }
    throw new Error(`no answer to ${command} in ${timeoutMs} ms:\n${qemu.tail(20)}`);
  };
  await qemu.waitFor(/root@\S+:~#/, 15 * 60_000);
  t.diagnostic(`booted (${accel})`);

  // networkd built the bond and the VLANs from the rendered files
  const deadline = Date.now() + 120_000;
  let links = '';
  while (Date.now() < deadline) {
    links = await sh('networkctl list --no-legend --no-pager');
    if (/node0\s+vlan\s+routable\s+configured/.test(links) && /bond0\s+bond\s+\S+\s+configured/.test(links)) break;
    await sleep(2_000);
  }
  assert.match(links, /node0\s+vlan\s+routable\s+configured/, links);
  assert.match(links, /storage0\s+vlan\s+routable\s+configured/, links);
  // which kernel NIC is which member: the bond lists each with its permanent MAC
  const bonding = await sh('cat /proc/net/bonding/bond0');
  const byMac = new Map([...bonding.matchAll(/Slave Interface: (\S+)\n[\s\S]*?Permanent HW addr: (\S+)/g)].map((m) => [m[2]!, m[1]!]));
  const [nic1, nic2] = [byMac.get(MEMBER1), byMac.get(MEMBER2)];
  assert.ok(nic1 && nic2 && nic1 !== nic2, `both NICs are members of bond0:\n${bonding}`);
  assert.match(bonding, /Bonding Mode: fault-tolerance \(active-backup\)/);
  assert.match(bonding, new RegExp(`Primary Slave: ${nic1} `));
  assert.match(bonding, new RegExp(`Currently Active Slave: ${nic1}\\n`));
  assert.match(bonding, /MII Polling Interval \(ms\): 100/);
  for (const n of [nic1, nic2]) assert.match(bonding, new RegExp(`Slave Interface: ${n}\\nMII Status: up`));
  const node0 = await sh('ip -d addr show dev node0');
  assert.match(node0, /mtu 9000 /);
  assert.match(node0, /vlan protocol 802\.1Q id 100/);
  assert.match(node0, /inet 10\.20\.30\.11\/24 /);
  assert.match(await sh('ip -d link show dev storage0'), /vlan protocol 802\.1Q id 200/);
  assert.match(await sh('ip -4 addr show dev storage0'), /inet 10\.40\.0\.11\/24 /);

  /**
   * Traffic across VLAN 100, both ways: the hub pings node0 and node0 pings the hub's
   * VLAN address, every echo answered; the member's tap carries requests and replies
   * tagged 100.
   */
  const acrossVlan = async (tap: string): Promise<string> => {
    const cap = hub.spawn('tcpdump', ['-i', tap, '-e', '-n', '-l', '-U', 'vlan 100 and icmp']);
    let frames = '';
    let err = '';
    cap.stdout!.setEncoding('utf8').on('data', (d: string) => (frames += d));
    cap.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    try {
      await hub.waitFor(`tcpdump on ${tap}`, () => err.includes('listening on'), 10_000, 50);
      // the hub first: after the cut, only the bond's own announcement (a gratuitous ARP
      // on node0) has told the bridge where the VM went
      const back = await hub.exec('/bin/busybox', ['ping', '-c', '3', '-W', '2', '10.20.30.11'], { timeoutMs: 20_000 });
      assert.match(back.out, /3 packets received/, `10.20.30.2 -> node0 on VLAN 100: ${back.out}`);
      const out = await sh('ping -c 3 -W 2 -I node0 10.20.30.2 | tail -n 2', 30_000);
      assert.match(out, /3 packets transmitted, 3 received/, `node0 -> 10.20.30.2 on VLAN 100: ${out}`);
      await sleep(300);
    } finally {
      await hub.kill(cap);
    }
    for (const [from, to] of [['10.20.30.11', '10.20.30.2'], ['10.20.30.2', '10.20.30.11']]) {
      for (const kind of ['request', 'reply']) {
        const [src, dst] = kind === 'request' ? [from, to] : [to, from];
        assert.match(frames, new RegExp(`vlan 100, .*${src!.replaceAll('.', '\\.')} > ${dst!.replaceAll('.', '\\.')}: ICMP echo ${kind}`), `echo ${kind} ${src} > ${dst} tagged on ${tap}:\n${frames}`);
      }
    }
    return `VLAN 100 pings node0 <-> 10.20.30.2 answered, tagged on ${tap}`;
  };
  // bond-failover: the rehearsal's check (src/rehearse/vm/bond.ts) cuts the active
  // member's wire and reads the bond, the node link and networkd; the wire hook watches
  // node0's tagged frames leave on the active member's tap before and after
  const spec = parseClusterFile(readFileSync(RACK, 'utf8'), RACK).spec!;
  const cp1 = spec.machines.find((m) => m.name === 'cp1')!;
  const tapOf = new Map([[MEMBER1, 'tapm1'], [MEMBER2, 'tapm2']]);
  const outcome = await bondFailover({ sh, monitor: (c) => qemu.monitor(c), netdevOf: (mac) => ({ [MEMBER1]: 'n0', [MEMBER2]: 'n1' })[mac] }, cp1, {
    wire: (mac) => acrossVlan(tapOf.get(mac)!),
  });
  assert.equal(outcome.result, 'ok', outcome.detail);
  assert.match(outcome.detail, new RegExp(`${nic2} \\(${MEMBER2}\\) active within [\\d.]+ s, node0 kept 10\\.20\\.30\\.11/24, bond0, node0, storage0 still configured`), outcome.detail);
  // the check put the wire back: both members up again
  const back = Date.now() + 30_000;
  let restored = '';
  while (Date.now() < back) {
    restored = await sh('cat /proc/net/bonding/bond0');
    if (new RegExp(`Slave Interface: ${nic1}\\nMII Status: up`).test(restored)) break;
    await sleep(1_000);
  }
  assert.match(restored, new RegExp(`Slave Interface: ${nic1}\\nMII Status: up`), restored);
  t.diagnostic(`bond-failover: ${outcome.detail}`);
});
