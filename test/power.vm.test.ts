// A QEMU VM powered by its BMC: ipmi_sim (the BMC) on the lab bridge, its chassis script
// starting and stopping the VM's QEMU, the VM wired to that same ipmi_sim as its BMC
// (ipmi-bmc-extern + isa-ipmi-kcs over ipmi_sim's "VM" serial codec), and a NIC on the
// lab bridge whose iPXE ROM network-boots against the real `slipway serve`.
// `slipway provision` sets the next boot to the network (the chassis script starts QEMU
// with -boot once=n only then), marks the machine in serve and powers it; serve sees the
// VM's DHCP request and iPXE fetch. `slipway power off` ends QEMU; ipmitool agrees.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

test('a VM powered through its BMC (ipmi_sim + ipmi-bmc-extern/isa-ipmi-kcs): provision network-boots it against serve; power off ends it; ipmitool agrees', { skip, timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-power-vm-'));
  const { yaml, passwords: { cp1: pw } } = clusterWithBmcs(readFileSync(EXAMPLE_HA, 'utf8'), dir, { cp1: '10.20.30.201' });
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
    const qemu = [
      QEMU, '-accel', 'tcg', '-machine', 'q35', '-m', '256', '-name', 'cp1', '-display', 'none', '-monitor', 'none',
      '-serial', `file:${join(dir, 'cp1-serial.log')}`,
      '-chardev', `socket,id=ipmi0,host=127.0.0.1,port=${kcsPort},reconnect=2`,
      '-device', 'ipmi-bmc-extern,id=bmc0,chardev=ipmi0', '-device', 'isa-ipmi-kcs,bmc=bmc0',
      '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`, '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:20:30:11',
    ].map(shq).join(' ');
    const machine = `case "$(cat ${vmDir}/boot 2>/dev/null)" in pxe) B=once=n;; *) B=order=c;; esac; exec ${qemu} -boot $B`;
    bmc = new SimBmc(lab.hub, { name: 'bmc-cp1', listen: [['10.20.30.201', 623]], username: 'admin', password: pw, machine, dir, vmSerial: ['127.0.0.1', kcsPort] });
    await bmc.start();
    assert.equal(await bmc.peerPower(), 'off');

    const t0 = performance.now();
    const wall0 = Date.now();
    const r = await lab.hub.exec(process.execPath, [BIN, 'provision', '-f', lab.file, '--state', lab.state, 'cp1', '--timeout', '60'], { timeoutMs: 120_000 });
    const seconds = (performance.now() - t0) / 1000;
    const out = r.out;
    assert.ok(!out.includes(pw));
    assert.match(out, /^cp1\s+10\.20\.30\.201:623\s+network boot\s/m, out);
    assert.match(out, /Z cp1 dhcp\b/, `serve saw the VM's DHCP request:\n${out}\n${bmc.chassisLog()}\n${readFileSync(join(dir, 'cp1-serial.log'), 'latin1').slice(-3000)}`);
    assert.match(out, /Z cp1 booting\b/, `serve saw the VM fetch its iPXE script:\n${out}`);
    const at = (state: string) => ((Date.parse(new RegExp(`^(\\S+Z) cp1 ${state}\\b`, 'm').exec(out)?.[1] ?? '') - wall0) / 1000).toFixed(1);
    console.log(`# provision: cp1's DHCP request ${at('dhcp')} s and iPXE script ${at('booting')} s after the command started`);
    console.log(`# provision of one TCG VM through its BMC to its iPXE script, then followed to the 60 s limit: ${seconds.toFixed(1)} s`);
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
  } finally {
    await bmc?.close();
    delTap(lab.hub, tap);
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
