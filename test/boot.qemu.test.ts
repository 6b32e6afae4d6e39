// The end-to-end proof: real VMs network-boot from `slipway serve` alone.
//
// Each VM (qemu, TCG) has an inventory MAC and a virtio NIC on the lab bridge, and boots
// through the NIC's iPXE option ROM: Slipway's DHCP → /boot.ipxe → /ipxe/mac/<mac>.ipxe
// → /ipxe/<name>.ipxe → kernel + initrd over HTTP (or, guide 01's way, PXELINUX and
// everything over Slipway's TFTP; or, last, by OVMF's own UEFI HTTP boot, no ROM, which
// fetches ipxe.efi over HTTP). The kernel is Debian's; the initramfs
// (test/helpers/initramfs.ts, test/fixtures/initramfs/init) runs the real Ignition:
// `-platform metal -stage fetch` fetches the ignition.config.url Slipway put on the
// command line, `ignition-apply` writes it into a scratch root, and the machine reports
// a digest of that root with its own token. The digest must equal the digest of the
// machine's rendered root: it got exactly its own files.
//
// Every wait is bounded; every VM is killed by PID and every namespace deleted, also on
// failure. Timings (seconds from power on, by the server's event times) are printed as
// test diagnostics and at the end; bench/boot.bench.ts measures more.
import { test, describe, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { QemuLab, Vm, formatTimeline, missingForQemu, type BootTimeline } from './helpers/qemu.ts';
import { heavyTestTurn } from './helpers/vm-lock.ts';

const MISSING = missingForQemu();
const skip = MISSING.length ? `missing ${MISSING.join(', ')}` : false;

const CP1 = { name: 'cp1', mac: '52:54:00:20:30:11' };
const UNKNOWN_MAC = '52:54:00:99:99:99';
/** How long one TCG boot may take here before the test gives up (a normal one: ~30 s). */
const BOOT_MS = 150_000;
/**
 * The initramfs prints this last, after the server accepted the report. Both patterns
 * end at the line's end: the serial text arrives in chunks, and a chunk can end inside
 * a line (CI saw `state=i` of `state=installed`).
 */
const REPORTED = /SLIPWAY-E2E: \S+ reported machine=(\S+) state=(\S+)\r?\n/;
const DIGEST = /SLIPWAY-E2E: \S+ digest ([0-9a-f]{64}) files (\d+)\r?\n/;

let q: QemuLab;
const vms: Vm[] = [];
const timelines: { what: string; t: BootTimeline }[] = [];

/** A VM that is killed when the test `t` ends, whatever happened (and at the end, as a last resort). */
async function startVm(t: TestContext, name: string, mac: string, opts: { firmware?: 'bios' | 'uefi'; httpBoot?: boolean } = {}): Promise<Vm> {
  const vm = await Vm.start(q.lab.hub, { name: `${name}-${vms.length}`, mac, dir: join(q.lab.dir, 'vms'), ...opts });
  vms.push(vm);
  t.after(() => vm.stop());
  return vm;
}

/** The files serve's TFTP server logged as completely sent to `client`. */
function tftpSentTo(client: string): Set<string> {
  const files = new Set<string>();
  for (const line of q.lab.log.split('\n')) {
    if (!line.includes('"tftp sent"')) continue;
    try {
      const r = JSON.parse(line) as { file?: string; client?: string };
      if (r.client === client && r.file) files.add(r.file);
    } catch {
      // the kept log's first line may be cut
    }
  }
  return files;
}

/** serve's log lines about TFTP from `client` since `sinceMs` (Date.now() time): requests, transfers, refusals. */
function tftpLinesFrom(client: string, sinceMs: number): string[] {
  return q.lab.log.split('\n').filter((line) => {
    if (!line.includes('"tftp ')) return false;
    try {
      const r = JSON.parse(line) as { client?: string; time?: string | number };
      return r.client === client && (r.time === undefined || new Date(r.time).getTime() >= sinceMs);
    } catch {
      return false;
    }
  });
}

/** TFTP read/write requests serve received, all clients (slipway_tftp_requests_total, every op). */
const tftpRequests = (metrics: string) => [...metrics.matchAll(/^slipway_tftp_requests_total(?:\{[^}]*\})? (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);

/**
 * Wait for `vm` to install `machine` and power off; check the reported digest against
 * the rendered root, the machine's state and its events; return the server's timeline.
 */
async function installs(vm: Vm, machine: string, what: string): Promise<BootTimeline> {
  // On failure, the server's side of the story too: its log says what it got, and when.
  const report = await vm.waitFor(REPORTED, BOOT_MS).catch((e: Error) => {
    throw new Error(`${e.message}\n--- slipway serve log (last 60 lines) ---\n${q.lab.log.split('\n').slice(-60).join('\n')}`);
  });
  const [, digest, files] = vm.serial().match(DIGEST) ?? assert.fail(`${machine} printed no digest line\n${vm.tail()}`);
  const want = q.expected(machine);
  assert.equal(digest, want.digest, `${machine} applied other files than its rendered root (${files} vs ${want.files} entries)\n${vm.tail()}`);
  assert.equal(Number(files), want.files);
  // the server's answer, as the VM printed it: accepted, for this machine
  assert.deepEqual([report.match[1], report.match[2]], [machine, 'installed']);
  assert.ok(await vm.waitExit(20_000), `${machine} did not power off after reporting`);

  const m = await q.machine(machine);
  assert.equal(m.state, 'installed');
  const installed = m.events.filter((e) => e.to === 'installed').at(-1)!;
  assert.equal(installed.source, 'machine');
  assert.equal(installed.detail?.digest, want.digest, 'the API stores the digest the machine reported');
  assert.equal(installed.detail?.from, (await q.api<{ ip: string }>(`/api/v1/machines/${machine}`)).ip, 'reported from its own address');
  const t = await q.timeline(vm, machine);
  timelines.push({ what, t });
  return t;
}

let release: (() => void) | undefined;

before(async () => {
  if (skip) return;
  release = await heavyTestTurn('boot.qemu', undefined, { cores: 1 });
  q = await QemuLab.create();
  await q.serve();
});

after(async () => {
  for (const vm of vms) await vm.stop();
  await q?.close();
  release?.();
  if (timelines.length) {
    console.log('\nboot timings (seconds from power on, by the server event times; TCG):');
    for (const { what, t } of timelines) console.log(`  ${what.padEnd(28)} ${formatTimeline(t)}`);
  }
});

test('cp1 network-boots from Slipway alone; Ignition fetches and applies exactly its own files; it reports installed', { skip, timeout: BOOT_MS + 30_000 }, async (t) => {
  const vm = await startVm(t, CP1.name, CP1.mac);
  const tl = await installs(vm, CP1.name, 'cp1 (BIOS, iPXE, HTTP)');
  const serial = vm.serial();
  // the whole chain, as iPXE printed it
  for (const step of ['Filename: http://10.20.30.2:8080/boot.ipxe', 'http://10.20.30.2:8080/ipxe/mac/52-54-00-20-30-11.ipxe... ok', 'http://10.20.30.2:8080/ipxe/cp1.ipxe... ok', 'http://10.20.30.2:8080/assets/os/vmlinuz... ok', 'http://10.20.30.2:8080/assets/os/initrd.img... ok'])
    assert.ok(serial.includes(step), `iPXE did not print ${step}\n${vm.tail(80)}`);
  assert.match(serial, /parsed url from cmdline: "http:\/\/10\.20\.30\.2:8080\/machines\/cp1\/ignition\.json"/, 'Ignition took the URL from the kernel command line');
  assert.match(serial, /lease 10\.20\.30\.11\/24 from 10\.20\.30\.2/, 'the initramfs got cp1\'s address from Slipway');
  const m = await q.machine('cp1');
  assert.deepEqual(m.events.map((e) => `${e.source}:${e.to}`), ['dhcp:dhcp', 'http:booting', 'http:config-fetched', 'machine:installed']);
  t.diagnostic(formatTimeline(tl));
});

describe('machines that must not install', { skip, concurrency: true }, () => {
  test('a second boot of installed cp1 is told to boot from its local disk and downloads no kernel', { timeout: BOOT_MS }, async (t) => {
    const before = await q.metrics();
    const assetsServed = (m: string) => Number(/slipway_http_requests_total\{class="assets",status="200"\} (\d+)/.exec(m)?.[1] ?? 0);
    const vm = await startVm(t, CP1.name, CP1.mac);
    const told = await vm.waitFor(/Slipway: cp1 is installed: booting from local disk/, BOOT_MS);
    // iPXE ran "exit": the firmware goes on to its next boot device (the VM has no disk)
    await vm.waitFor(/Booting from Hard Disk|No bootable device/, 120_000);
    await vm.stop();
    const serial = vm.serial();
    assert.ok(!serial.includes('vmlinuz'), 'no kernel was fetched');
    assert.ok(!serial.includes('Linux version'), 'no kernel ran');
    assert.equal(assetsServed(await q.metrics()), assetsServed(before), 'no asset was served');
    assert.equal((await q.machine('cp1')).state, 'installed');
    t.diagnostic(`told to boot locally ${(told.ms / 1000).toFixed(1)} s after power on`);
  });

  test('an unknown MAC gets an address but no boot file (default --unknown ignore) and is listed as discovered', { timeout: BOOT_MS }, async (t) => {
    const vm = await startVm(t, 'unknown', UNKNOWN_MAC);
    // iPXE got a lease from the pool, but no filename: nothing to boot from the network
    await vm.waitFor(/net0: 10\.20\.30\.1\d\d\/255\.255\.255\.0/, BOOT_MS);
    await vm.waitFor(/Booting from Hard Disk|No bootable device/, 60_000);
    await vm.stop();
    const serial = vm.serial();
    assert.ok(!/Filename:|boot\.ipxe|tftp:\/\//.test(serial), `an ignored MAC was handed a boot file\n${vm.tail()}`);
    const list = await q.api<{ machines: { name: string; state: string }[]; discovered: { mac: string; via: string; detail?: { userClass?: string } }[] }>('/api/v1/machines');
    const seen = list.discovered.find((d) => d.mac === UNKNOWN_MAC);
    assert.ok(seen, `${UNKNOWN_MAC} is not in discovered: ${JSON.stringify(list.discovered)}`);
    assert.equal(seen.via, 'dhcp');
    assert.equal(seen.detail?.userClass, 'iPXE');
  });
});

test('three machines booting at once each get and report their own files', { skip, timeout: BOOT_MS + 60_000 }, async (t) => {
  const machines = [
    { name: 'cp2', mac: '52:54:00:20:30:12' },
    { name: 'cp3', mac: '52:54:00:20:30:13' },
    { name: 'w1', mac: '52:54:00:20:30:21' },
  ];
  const t0 = performance.now();
  const started = await Promise.all(machines.map((m) => startVm(t, m.name, m.mac)));
  const tls = await Promise.all(started.map((vm, i) => installs(vm, machines[i]!.name, `${machines[i]!.name} (3 at once)`)));
  // three different roots: a mix-up would have failed one of the digests above
  assert.equal(new Set(machines.map((m) => q.expected(m.name).digest)).size, 3);
  for (const tl of tls) t.diagnostic(formatTimeline(tl));
  t.diagnostic(`all three reported ${((performance.now() - t0) / 1000).toFixed(1)} s after power on`);
});

// Three VMs at once again, each its own case: the serve flags change what BIOS PXE
// clients and unknown MACs get, and UEFI firmware must keep getting iPXE.
describe('serve --unknown local --loader pxelinux', { skip, concurrency: true }, () => {
  before(async () => {
    await q.serve(['--unknown', 'local', '--loader', 'pxelinux']);
  });

  test('UEFI (OVMF): w2 boots through the ROM\'s iPXE EFI driver over HTTP (PXELINUX is for BIOS only)', { timeout: BOOT_MS + 30_000 }, async (t) => {
    const vm = await startVm(t, 'w2', '52:54:00:20:30:22', { firmware: 'uefi' });
    const tl = await installs(vm, 'w2', 'w2 (UEFI, iPXE, HTTP)');
    const serial = vm.serial();
    assert.match(serial, /Features: [^\n]*\bEFI\b/, 'the EFI build of iPXE ran');
    assert.match(serial, /EFI stub: /, 'the kernel started through its EFI stub');
    t.diagnostic(formatTimeline(tl));
  });

  test('the unknown MAC is now told to boot from its local disk', { timeout: BOOT_MS }, async (t) => {
    const vm = await startVm(t, 'unknown', UNKNOWN_MAC);
    // iPXE identifies itself, so even in PXELINUX mode it gets the iPXE script
    await vm.waitFor(/Slipway: unknown machine 52:54:00:99:99:99: booting from local disk/, BOOT_MS);
    await vm.waitFor(/Booting from Hard Disk|No bootable device/, 120_000);
    await vm.stop();
    assert.ok(!vm.serial().includes('vmlinuz'));
  });

  test('PXELINUX over TFTP (guide 01): a BIOS PXE client gets pxelinux.0, its pxelinux.cfg/01-<mac>, kernel and initrd from Slipway', { timeout: BOOT_MS + 30_000 }, async (t) => {
    // cp1 installs again: the operator reprovisions it
    await q.reprovision('cp1');
    const vm = await startVm(t, CP1.name, CP1.mac);
    // QEMU's only PXE ROMs are iPXE, which Slipway (rightly) hands its script. A plain
    // BIOS PXE ROM sends no "iPXE" user class: make this one ask like that, from its own
    // shell, then boot as the ROM would (autoboot: DHCP, then the file it was given).
    await vm.pressCtrlB(30_000);
    await vm.ipxe('set user-class BIOS-PXE');
    await vm.ipxe('autoboot');
    await vm.waitFor(/Filename: pxelinux\.0/, BOOT_MS);
    const tl = await installs(vm, 'cp1', 'cp1 again (PXELINUX, TFTP)');
    const serial = vm.serial();
    assert.match(serial, /tftp:\/\/10\.20\.30\.2\/pxelinux\.0\.\.\. ok/);
    // What PXELINUX prints ("PXELINUX 6.04", "Loading os/vmlinuz... ok") reaches the
    // serial console only as SeaBIOS's mirror of the VGA screen, cursor moves and all,
    // which cut it up on a busy host ("P\rXELINUX"): the proof is the kernel's own line,
    // with the BOOT_IMAGE= and initrd= PXELINUX put on it, and serve's record of every
    // file it sent cp1 by TFTP. The kernel prints that line twice ("Command line:" early,
    // "Kernel command line:" later); either will do, since on a loaded host its early
    // console can drop a byte when the UART's reader lags (CI: "initrd=os/initrdimg").
    assert.match(serial, /[Cc]ommand line: BOOT_IMAGE=os\/vmlinuz initrd=os\/initrd\.img ignition\.firstboot [^\n]*ignition\.config\.url=http:\/\/10\.20\.30\.2:8080\/machines\/cp1\/ignition\.json/);
    const sent = tftpSentTo('10.20.30.11');
    for (const file of ['pxelinux.0', 'ldlinux.c32', 'pxelinux.cfg/01-52-54-00-20-30-11', 'os/vmlinuz', 'os/initrd.img'])
      assert.ok(sent.has(file), `serve's log has no "tftp sent" of ${file} to cp1\n${q.lab.log.split('\n').filter((l) => l.includes('tftp')).slice(-20).join('\n')}`);
    assert.ok(!serial.includes('http://10.20.30.2:8080/assets/'), 'nothing came over HTTP but the config');
    const booting = (await q.machine('cp1')).events.filter((e) => e.to === 'booting').at(-1)!;
    assert.equal(booting.source, 'tftp');
    assert.equal(booting.detail?.path, 'pxelinux.cfg/01-52-54-00-20-30-11');
    t.diagnostic(formatTimeline(tl));
  });
});

// The firmware's own UEFI HTTP boot, no iPXE ROM and no TFTP: OVMF's HttpBootDxe asks
// DHCP as "HTTPClient" (arch 16), is given http://…/assets/ipxe/ipxe.efi (Debian ships
// it as a symlink to /boot/ipxe.efi, which serve must stage as the real file: issue 14),
// and that iPXE goes on as every other. Last, alone: the TFTP request count must be its.
test('UEFI HTTP boot (OVMF, no option ROM, no PXE): w2 again fetches ipxe.efi over HTTP and installs, and no TFTP is used', { skip, timeout: BOOT_MS + 30_000 }, async (t) => {
  await q.reprovision('w2');
  const tftpBefore = tftpRequests(await q.metrics());
  const vm = await startVm(t, 'w2', '52:54:00:20:30:22', { firmware: 'uefi', httpBoot: true });
  // Fail at once when the firmware cannot load ipxe.efi (it would go on to its shell).
  const loaded = await vm.waitFor(/iPXE initialising devices|BdsDxe: failed to load Boot0001[^\n]*\n/, BOOT_MS);
  assert.ok(loaded.match[0].startsWith('iPXE'), `OVMF's HTTP boot did not start ipxe.efi\n${vm.tail(30)}`);
  const tl = await installs(vm, 'w2', 'w2 (UEFI HTTP boot)');
  const serial = vm.serial();
  for (const step of ['Start HTTP Boot over IPv4', 'Station IP address is 10.20.30.22', 'URI: http://10.20.30.2:8080/assets/ipxe/ipxe.efi', 'Downloading...100%', 'starting Boot0001 "UEFI HTTPv4', 'http://10.20.30.2:8080/ipxe/mac/52-54-00-20-30-22.ipxe... ok', 'http://10.20.30.2:8080/ipxe/w2.ipxe... ok'])
    assert.ok(serial.includes(step), `the boot did not print ${step}\n${vm.tail(80)}`);
  assert.ok(!/PXE over IPv|tftp:\/\//.test(serial), `the firmware tried PXE or TFTP\n${vm.tail(80)}`);
  assert.match(serial, /Features: [^\n]*\bEFI\b/, 'the EFI build of iPXE ran');
  const dhcp = (await q.machine('w2')).events.find((e) => e.to === 'dhcp' && Date.parse(e.at) >= vm.wallStart);
  assert.equal(dhcp?.detail?.arch, 16, `the first DHCP of this boot was UEFI HTTP boot's: ${JSON.stringify(dhcp)}`);
  assert.match(String(dhcp?.detail?.vendorClass), /^HTTPClient/);
  assert.deepEqual(tftpLinesFrom('10.20.30.22', vm.wallStart), [], 'serve logged TFTP from w2');
  assert.equal(tftpRequests(await q.metrics()), tftpBefore, 'serve received TFTP requests during the HTTP boot');
  t.diagnostic(formatTimeline(tl));
});
