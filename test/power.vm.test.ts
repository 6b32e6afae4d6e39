// A QEMU VM powered by its BMC: ipmi_sim (the BMC) on the lab bridge, its chassis script
// starting and stopping the VM's QEMU, the VM wired to that same ipmi_sim as its BMC
// (ipmi-bmc-extern + isa-ipmi-kcs over ipmi_sim's "VM" serial codec), and a NIC on the
// lab bridge whose iPXE ROM network-boots against the real `slipway serve`.
// `slipway provision` sets the next boot to the network (the chassis script starts QEMU
// with -boot once=n only then), marks the machine in serve and powers it; serve sees the
// VM's DHCP request and iPXE fetch. `slipway power off` ends QEMU; ipmitool agrees.
// Then enlistment (issue 18): serve restarted with the OS image's kernel and installer and
// `--unknown enlist`; the same VM with a NIC the file does not name, a blank disk and
// SMBIOS strings is powered on through the BMC (ipmitool), network-boots into the
// installer's inventory mode, reports its facts (its BMC's LAN address read over KCS)
// and, with `--enlist-then wait`, waits until the BMC powers it off; the facts match what
// QEMU and ipmi_sim gave it, the disk is still blank, and `slipway adopt` takes the disk's
// by-id name from them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, EXAMPLE_HA } from './helpers/cli.ts';
import { Lab } from './helpers/serve.ts';
import { clusterWithBmcs, haveIpmiSim, haveIpmitool, SimBmc } from './helpers/ipmi.ts';
import { heavyTestTurn } from './helpers/vm-lock.ts';
import { addTap, delTap, QEMU } from '../src/rehearse/vm/qemu.ts';

const isRoot = process.getuid?.() === 0;
const haveQemu = existsSync(`/usr/bin/${QEMU}`) && existsSync('/usr/lib/ipxe/qemu/efi-virtio.rom');
const skip = !isRoot ? 'needs root (network namespaces, taps)' : !haveIpmiSim ? 'missing ipmi_sim (Debian openipmi)' : !haveIpmitool ? 'missing ipmitool (Debian ipmitool)' : !haveQemu ? 'missing qemu-system-x86 / ipxe-qemu' : false;

let release: (() => void) | undefined;
before(async () => {
  if (!skip) release = await heavyTestTurn('power.vm', undefined, { cores: 1 });
});
after(() => release?.());

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const BUILD = fileURLToPath(new URL('../scripts/build-os-image.sh', import.meta.url));
const ENLIST_MAC = '52:54:00:20:30:99';
const BMC_LAN_MAC = '52:54:00:aa:bb:01';
const DISK_BYTES = 64 * 1024 * 1024;

/** true when every byte of the file is zero */
function allZero(file: string): boolean {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(1024 * 1024);
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) if (buf.subarray(0, n).some((b) => b !== 0)) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

test('a VM powered through its BMC (ipmi_sim + ipmi-bmc-extern/isa-ipmi-kcs): provision network-boots it against serve; power off ends it; ipmitool agrees', { skip, timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-power-vm-'));
  // a pool: the unknown machine's address when it enlists
  const withPool = readFileSync(EXAMPLE_HA, 'utf8').replace(/^(\s+)dns: \[10\.20\.30\.1\]\n/m, (l, i: string) => `${l}${i}pool: {start: 10.20.30.100, end: 10.20.30.150}\n`);
  assert.match(withPool, /pool: \{start/);
  const { yaml, passwords: { cp1: pw } } = clusterWithBmcs(withPool, dir, { cp1: '10.20.30.201' });
  const lab = Lab.create(yaml);
  const tap = 'tbmc1';
  let bmc: SimBmc | undefined;
  try {
    await lab.start();
    addTap(lab.hub, tap);
    lab.hub.addAddress('br0', '10.20.30.201/24');
    const vmDir = join(dir, 'bmc-cp1');
    const kcsPort = 9002;
    // the VM: its boot order from what the BMC was told (pxe: the network, this once), its
    // BMC on KCS through ipmi_sim's VM codec, its NIC on the lab bridge, TCG
    // a blank disk (enlistment must leave it so) and SMBIOS strings for its DMI facts
    const disk = join(dir, 'cp1-disk.img');
    writeFileSync(disk, '');
    truncateSync(disk, DISK_BYTES);
    const qemu = [
      QEMU, '-accel', 'tcg', '-machine', 'q35', '-m', '512', '-name', 'cp1', '-display', 'none', '-monitor', 'none',
      '-smbios', 'type=1,manufacturer=Slipway-Lab,product=enlist-vm,serial=VM-0001',
      '-drive', `file=${disk},if=none,id=d0,format=raw`, '-device', 'virtio-blk-pci,drive=d0,serial=ENLIST-0001',
      '-serial', `file:${join(dir, 'cp1-serial.log')}`,
      '-chardev', `socket,id=ipmi0,host=127.0.0.1,port=${kcsPort},reconnect=2`,
      '-device', 'ipmi-bmc-extern,id=bmc0,chardev=ipmi0', '-device', 'isa-ipmi-kcs,bmc=bmc0',
      '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`,
    ].map(shq).join(' ');
    // the NIC's MAC: cp1's, or the one in vmDir/mac (the enlistment's machine the file does not name)
    const machine = `case "$(cat ${vmDir}/boot 2>/dev/null)" in pxe) B=once=n;; *) B=order=c;; esac; M=$(cat ${vmDir}/mac 2>/dev/null || echo 52:54:00:20:30:11); exec ${qemu} -device virtio-net-pci,netdev=n0,mac=$M -boot $B`;
    bmc = new SimBmc(lab.hub, { name: 'bmc-cp1', listen: [['10.20.30.201', 623]], username: 'admin', password: pw, machine, dir, vmSerial: ['127.0.0.1', kcsPort] });
    await bmc.start();
    assert.equal(await bmc.peerPower(), 'off');

    const t0 = performance.now();
    const wall0 = Date.now();
    const r = await lab.hub.exec(process.execPath, [BIN, 'provision', '-f', lab.file, '--state', lab.state, 'cp1', '--timeout', '40'], { timeoutMs: 120_000 });
    const seconds = (performance.now() - t0) / 1000;
    const out = r.out;
    assert.ok(!out.includes(pw));
    assert.match(out, /^cp1\s+10\.20\.30\.201:623\s+network boot\s/m, out);
    assert.match(out, /Z cp1 dhcp\b/, `serve saw the VM's DHCP request:\n${out}\n${bmc.chassisLog()}\n${readFileSync(join(dir, 'cp1-serial.log'), 'latin1').slice(-3000)}`);
    assert.match(out, /Z cp1 booting\b/, `serve saw the VM fetch its iPXE script:\n${out}`);
    const at = (state: string) => ((Date.parse(new RegExp(`^(\\S+Z) cp1 ${state}\\b`, 'm').exec(out)?.[1] ?? '') - wall0) / 1000).toFixed(1);
    console.log(`# provision: cp1's DHCP request ${at('dhcp')} s and iPXE script ${at('booting')} s after the command started`);
    console.log(`# provision of one TCG VM through its BMC to its iPXE script, then followed to the 40 s limit: ${seconds.toFixed(1)} s`);
    assert.equal(bmc.bootDevice(), 'pxe');
    assert.equal(await bmc.peerPower(), 'on');
    const qemuPid = bmc.machinePid();
    assert.ok(qemuPid);
    assert.match(readFileSync(`/proc/${qemuPid}/cmdline`, 'latin1'), /-boot\0once=n/);
    // the VM's KCS BMC is connected to ipmi_sim: QEMU holds a TCP connection to its VM port
    const ss = await lab.hub.exec('ss', ['-tnpH', 'state', 'established', `( dport = :${kcsPort} )`]);
    assert.match(ss.stdout, new RegExp(`pid=${qemuPid}\\b`), ss.out);

    const off = await lab.hub.exec(process.execPath, [BIN, 'power', '-f', lab.file, 'off', 'cp1']);
    assert.equal(off.code, 0, off.out);
    assert.match(off.stdout, /^cp1\s+10\.20\.30\.201:623\s+powered off\s/m);
    for (let i = 0; i < 50 && existsSync(`/proc/${qemuPid}`); i++) await new Promise((res) => setTimeout(res, 200));
    assert.ok(!existsSync(`/proc/${qemuPid}`), `QEMU ${qemuPid} still runs after power off:\n${bmc.chassisLog()}`);
    assert.equal(await bmc.peerPower(), 'off');
    const st = await lab.hub.exec(process.execPath, [BIN, 'power', '-f', lab.file, 'status', 'cp1']);
    assert.match(st.stdout, /^cp1\s+10\.20\.30\.201:623\s+off\s/m, st.out);

    // --- enlistment: the same VM with a NIC the file does not name ----------------------
    const build = spawnSync('bash', [BUILD], { encoding: 'utf8', timeout: 1_800_000, maxBuffer: 64 * 1024 * 1024 });
    assert.equal(build.status, 0, `build-os-image.sh: ${build.stderr.slice(-3000)}`);
    const image = build.stdout.trim().split('\n').at(-1)!;
    const assets = join(dir, 'assets');
    mkdirSync(join(assets, 'os'), { recursive: true });
    for (const f of ['vmlinuz', 'initrd.img']) copyFileSync(join(image, f), join(assets, 'os', f));
    const e0 = performance.now();
    await lab.stop();
    await lab.start(['--assets', assets, '--unknown', 'enlist', '--enlist-then', 'wait']);
    // the BMC's LAN side, as an operator configures it (ipmi_sim starts with 0.0.0.0)
    for (const set of [['ipsrc', 'static'], ['ipaddr', '10.20.30.201'], ['netmask', '255.255.255.0'], ['macaddr', BMC_LAN_MAC]]) {
      const l = await bmc.ipmitool('10.20.30.201', 623, ['lan', 'set', '1', ...set]);
      assert.equal(l.code, 0, l.out);
    }
    writeFileSync(join(vmDir, 'mac'), ENLIST_MAC);
    for (const c of [['chassis', 'bootdev', 'pxe'], ['chassis', 'power', 'on']]) {
      const x = await bmc.ipmitool('10.20.30.201', 623, c);
      assert.equal(x.code, 0, x.out);
    }
    const enlistPid = bmc.machinePid();
    assert.ok(enlistPid);
    type Listed = { mac: string; facts?: { source: string; facts: import('../src/serve/enlist.ts').Facts } };
    let found: Listed | undefined;
    for (let i = 0; i < 120 && !found?.facts; i++) {
      await new Promise((res) => setTimeout(res, 1000));
      const m = await lab.hub.exec(process.execPath, [BIN, 'machines', '-f', lab.file, '--state', lab.state, '--discovered', '-o', 'json'], { timeoutMs: 30_000 });
      found = (JSON.parse(m.stdout || '{"discovered":[]}') as { discovered: Listed[] }).discovered.find((d) => d.mac === ENLIST_MAC);
    }
    const serial = () => readFileSync(join(dir, 'cp1-serial.log'), 'latin1').slice(-4000);
    assert.ok(found?.facts, `no facts from ${ENLIST_MAC} within 120 s:\n${serial()}\n${lab.log.slice(-3000)}`);
    const enlisted = (performance.now() - e0) / 1000;
    // --enlist-then wait: it says so and stays on (the default, poweroff, is the same script's
    // next line) until its BMC powers it off: QEMU ends, and the BMC says off
    for (let i = 0; i < 50 && !/enlist: done; waiting \(slipway\.enlist\.then=wait\)/.test(serial()); i++) await new Promise((res) => setTimeout(res, 200));
    assert.match(serial(), /enlist: done; waiting \(slipway\.enlist\.then=wait\)/);
    await new Promise((res) => setTimeout(res, 1000));
    assert.ok(existsSync(`/proc/${enlistPid}`), `the enlisted VM did not wait:\n${serial()}`);
    assert.equal(await bmc.peerPower(), 'on');
    const poff = await bmc.ipmitool('10.20.30.201', 623, ['chassis', 'power', 'off']);
    assert.equal(poff.code, 0, poff.out);
    for (let i = 0; i < 100 && existsSync(`/proc/${enlistPid}`); i++) await new Promise((res) => setTimeout(res, 200));
    assert.ok(!existsSync(`/proc/${enlistPid}`), `the enlisted VM did not power off:\n${serial()}`);
    assert.equal(await bmc.peerPower(), 'off');
    console.log(`# enlistment: serve restarted with the installer, the VM powered on through its BMC, its facts stored ${enlisted.toFixed(1)} s later, then it waited until its BMC powered it off (${((performance.now() - e0) / 1000).toFixed(1)} s in all)`);
    // where the time went, from the installer's own console lines (uptime-stamped)
    for (const l of readFileSync(join(dir, 'cp1-serial.log'), 'latin1').split('\n')) if (/slipway-initrd: t=/.test(l)) console.log(`#   ${l.trim()}`);
    const f = found.facts.facts;
    assert.equal(found.facts.source, 'enlist');
    assert.equal(f.bootMac, ENLIST_MAC);
    assert.deepEqual(f.nics, [{ name: 'eth0', mac: ENLIST_MAC, driver: 'virtio_net', link: true, speedMbps: f.nics[0]!.speedMbps }], JSON.stringify(f.nics));
    assert.equal(f.disks.length, 1, JSON.stringify(f.disks));
    assert.deepEqual({ ...f.disks[0]!, ids: f.disks[0]!.ids.filter((i) => i.includes('by-id')) },
      { path: '/dev/vda', ids: ['/dev/disk/by-id/virtio-ENLIST-0001'], model: 'virtio', serial: 'ENLIST-0001', size: DISK_BYTES, rotational: true, removable: false });
    assert.ok(f.disks[0]!.ids.some((i) => /^\/dev\/disk\/by-path\/pci-0000:00:[0-9a-f]{2}\.0$/.test(i)), JSON.stringify(f.disks[0]));
    assert.deepEqual(f.dmi, { vendor: 'Slipway-Lab', product: 'enlist-vm', serial: 'VM-0001' });
    assert.equal(f.cpu.count, 1);
    assert.ok(f.memoryBytes > 400 * 1024 * 1024 && f.memoryBytes <= 512 * 1024 * 1024, String(f.memoryBytes));
    // every LAN channel (ipmi_sim has one; channels 2-11 it refuses), read over KCS
    assert.deepEqual(f.bmc, { address: '10.20.30.201', mac: BMC_LAN_MAC, channels: [{ channel: 1, address: '10.20.30.201', mac: BMC_LAN_MAC }] }, 'the BMC read over KCS: ipmi_sim\'s LAN configuration');
    assert.ok(allZero(disk), 'enlistment wrote nothing to the disk');
    // adopt takes the install disk from the facts (the BMC is cp1's in this file: a comment only)
    const ad = await lab.hub.exec(process.execPath, [BIN, 'adopt', '-f', lab.file, '--state', lab.state, ENLIST_MAC, '--name', 'w9', '--roles', 'worker']);
    assert.equal(ad.code, 0, ad.out);
    assert.match(ad.stdout, /adopted 52:54:00:20:30:99 as w9 \(worker, 10\.20\.30\.\d+\/24, disk \/dev\/disk\/by-id\/virtio-ENLIST-0001\)/);
    assert.match(readFileSync(lab.file, 'utf8'), /disk: "\/dev\/disk\/by-id\/virtio-ENLIST-0001"\n\s+# its BMC \(enlisted\): 10\.20\.30\.201 \(52:54:00:aa:bb:01\)/);
  } finally {
    await bmc?.close();
    delTap(lab.hub, tap);
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
