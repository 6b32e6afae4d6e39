// `node bench/boot.bench.ts`: how fast real VMs network-boot from `slipway serve` alone.
// Same lab, boot image and checks as test/boot.qemu.test.ts (qemu under TCG, the NIC's
// iPXE ROM, Debian's kernel, the initramfs running the real Ignition, a report with the
// digest of what it applied); every boot's digest is checked before its times count.
// Times are ms from power on (qemu spawned) to what the server saw, from its event times:
//   DHCP      first DHCP request of the boot
//   script    the boot script (/ipxe/mac/<mac>.ipxe over HTTP; pxelinux.cfg over TFTP)
//   config    the machine's Ignition config fetched
//   reported  its "installed" report accepted
//
// The issue's reference, measured with dnsmasq as the server: a TCG VM fetches its iPXE
// script 2.5 s after start once iPXE is told not to wait (an IPv6 router advertisement
// on the LAN, and option 175.176 = 1), 18.6 s without; a full boot to report 10–12 s;
// three VMs at once about 14 s. iPXE configures IPv4 and IPv6 together and fetches its
// script only when both are done, so without a router advertisement it waits for IPv6 to
// time out. Slipway sends 175.176 but no router advertisements (a Node process has no
// raw ICMPv6 socket), so the "+RA" rows add them from radvd, as the VM rehearsal's lab
// and the boot tests do (no prefix, not a default router: the router a LAN usually
// has), to show what that wait costs.
//
// Env: RUNS=n repeats each scenario (default 1); ONLY=bios1,bios3,uefi1,ra,pxelinux picks.
// Needs root (namespaces, taps) and the packages test/helpers/qemu.ts missingForQemu() names.
import { join } from 'node:path';
import { QemuLab, Vm, missingForQemu, type BootTimeline } from '../test/helpers/qemu.ts';

const RUNS = Number(process.env.RUNS ?? 1);
const ONLY = process.env.ONLY?.split(',');
const want = (s: string) => !ONLY || ONLY.includes(s);
const BOOT_MS = 180_000;
const MACHINES = {
  cp1: '52:54:00:20:30:11',
  cp2: '52:54:00:20:30:12',
  cp3: '52:54:00:20:30:13',
  w1: '52:54:00:20:30:21',
  w2: '52:54:00:20:30:22',
} as const;
type Name = keyof typeof MACHINES;

const missing = missingForQemu();
if (missing.length) {
  console.error(`boot bench: missing ${missing.join(', ')}`);
  process.exit(1);
}

// no router advertisements but in the +RA rows: the others measure the wait without
const q = await QemuLab.create(undefined, { routerAdverts: false });
const vms: Vm[] = [];
const rows: string[] = [];
const s = (ms?: number) => (ms === undefined ? '-' : (ms / 1000).toFixed(1));
const row = (scenario: string, t: BootTimeline, note = '') =>
  rows.push(`| ${scenario.padEnd(26)} | ${t.machine.padEnd(4)} | ${s(t.dhcp).padStart(5)} | ${s(t.script).padStart(6)} | ${s(t.config).padStart(6)} | ${s(t.reported).padStart(8)} | ${note}`);

/** Boot `names` at once (each reprovisioned first, so each installs); their timelines. */
async function boot(scenario: string, names: Name[], opts: { firmware?: 'bios' | 'uefi'; pxelinux?: boolean } = {}): Promise<void> {
  // reprovision rotates the machine's report token: q.reprovision renders again, so the digest compared below is the new one
  for (const n of names) await q.reprovision(n);
  const t0 = performance.now();
  const started = await Promise.all(names.map((n) => Vm.start(q.lab.hub, { name: `${n}-${vms.length}`, mac: MACHINES[n], dir: join(q.lab.dir, 'vms'), ...(opts.firmware ? { firmware: opts.firmware } : {}) })));
  vms.push(...started);
  try {
    const tls = await Promise.all(started.map(async (vm, i) => {
      const name = names[i]!;
      if (opts.pxelinux) {
        // as in the test: make QEMU's iPXE ROM ask like a plain BIOS PXE ROM
        await vm.pressCtrlB(30_000);
        await vm.ipxe('set user-class BIOS-PXE');
        await vm.ipxe('autoboot');
      }
      await vm.waitFor(/SLIPWAY-E2E: \S+ reported/, BOOT_MS);
      const got = /SLIPWAY-E2E: \S+ digest ([0-9a-f]{64})/.exec(vm.serial())?.[1];
      if (got !== q.expected(name).digest) throw new Error(`${name}: reported digest ${got} is not its rendered root's`);
      await vm.waitExit(20_000);
      return q.timeline(vm, name);
    }));
    const all = performance.now() - t0;
    for (const t of tls) row(scenario, t, names.length > 1 ? `all ${names.length} reported at ${s(all)} s` : '');
  } finally {
    await Promise.all(started.map((vm) => vm.stop()));
  }
}

try {
  console.log(`boot image: kernel ${q.image.release}, key ${q.image.key}, ${q.image.built ? `built in ${q.image.buildMs} ms (cold cache)` : `from the cache in ${q.image.buildMs} ms`}`);
  await q.serve();
  for (let run = 0; run < RUNS; run++) {
    if (want('bios1')) await boot('BIOS iPXE HTTP', ['cp1']);
    if (want('bios3')) await boot('BIOS iPXE HTTP, 3 at once', ['cp2', 'cp3', 'w1']);
    if (want('uefi1')) await boot('UEFI iPXE HTTP', ['w2'], { firmware: 'uefi' });
    if (want('ra')) {
      q.advertiseRouter();
      try {
        await boot('+RA BIOS iPXE HTTP', ['cp1']);
        await boot('+RA BIOS, 3 at once', ['cp2', 'cp3', 'w1']);
        await boot('+RA UEFI iPXE HTTP', ['w2'], { firmware: 'uefi' });
      } finally {
        await q.stopAdvertisingRouter();
      }
    }
  }
  if (want('pxelinux')) {
    await q.serve(['--loader', 'pxelinux']);
    for (let run = 0; run < RUNS; run++) await boot('BIOS PXELINUX TFTP', ['cp1'], { pxelinux: true });
  }
} finally {
  for (const vm of vms) await vm.stop();
  await q.stopAdvertisingRouter();
  await q.close();
}

console.log('\nseconds from power on (TCG, server event times):\n');
console.log('| scenario                   | VM   | DHCP  | script | config | reported |');
console.log('|----------------------------|------|-------|--------|--------|----------|');
for (const r of rows) console.log(r);
