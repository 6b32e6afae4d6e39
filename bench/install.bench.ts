// `node bench/install.bench.ts`: a blank machine installed by `slipway serve` as a user
// starts it (the CLI, in a lab namespace), and the installer's write pipeline against dd.
//
// Product: one TCG VM (SeaBIOS, virtio NIC and disk, 768 MiB) with an EMPTY 8 GiB disk
// network-boots from serve (assets os/ = `scripts/build-os-image.sh`'s kernel, installer,
// disk.img.zst, os.json; etcd and CNI plugins from the image's root, no Kubernetes binaries). Times are seconds from power on to what
// serve recorded: DHCP, the installer's first report (disk chosen), the image written
// (grow step), `installed` from the installer (Ignition applied, rebooting); then the VM
// is powered on again (the test helper's QEMU ends at a reboot) and the disk boot is timed
// from that power on to `installed` from the installed system (told "boot local", booted
// from its disk, units up). RUNS=n installs n times (reprovisioned between).
//
// Component (labelled as such): the installer's pipeline on the host, in a lab namespace,
// fetching the image from the same serve: busybox wget | busybox tee (a fifo to busybox
// sha256sum) | zstd -d | busybox dd of=FILE conv=fsync — the same tools the initramfs
// carries (Debian's busybox-static and zstd) — against `dd` of the raw image (already
// decompressed, local) to a file on the same file system, the peer any imaging tool is
// measured against. Ratio = pipeline MB/s ÷ dd MB/s, raw bytes written, median of 3.
//
// Needs root and what test/helpers/qemu.ts missingForQemu() names.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QemuLab, Vm, missingForQemu, qemuClusterFile, BASE } from '../test/helpers/qemu.ts';
import { ROOT } from '../test/helpers/cli.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import { stageAssets } from '../src/rehearse/assets.ts';

const RUNS = Number(process.env.RUNS ?? 1);
const BUILD = fileURLToPath(new URL('../scripts/build-os-image.sh', import.meta.url));
const W1 = { name: 'w1', mac: '52:54:00:20:30:21' };
const OS_FILES = ['vmlinuz', 'initrd.img', 'disk.img.zst', 'os.json'];

const missing = missingForQemu();
if (missing.length) {
  console.error(`install bench: missing ${missing.join(', ')}`);
  process.exit(1);
}

const t0 = performance.now();
const built = spawnSync('bash', [BUILD], { encoding: 'utf8', timeout: 1_800_000, maxBuffer: 64 << 20 });
if (built.status !== 0) throw new Error(`build-os-image.sh: ${built.stderr.slice(-2000)}`);
const imageDir = built.stdout.trim().split('\n').at(-1)!;
const os = JSON.parse(readFileSync(join(imageDir, 'os.json'), 'utf8')) as { disk: { size: number; rawSize: number }; buildSeconds: Record<string, number> };
console.log(`image ${imageDir}: disk.img.zst ${(os.disk.size / 1e6).toFixed(0)} MB, raw ${(os.disk.rawSize / 1e6).toFixed(0)} MB; build ${os.buildSeconds.total} s (this run ${((performance.now() - t0) / 1000).toFixed(1)} s)`);

const q = await QemuLab.create(qemuClusterFile(`${ROOT}examples/rehearsal.yaml`));
const vms: Vm[] = [];
const s = (ms?: number) => (ms === undefined ? '-' : (ms / 1000).toFixed(1));
try {
  for (const f of OS_FILES) copyFileSync(join(imageDir, f), join(q.assets, 'os', f));
  // binaries as `slipway rehearse --no-kubernetes` stages them: etcd and the CNI plugins
  // from the image's own root, no Kubernetes (their units are skipped on the machine)
  const { spec } = parseClusterFile(readFileSync(q.lab.file, 'utf8'), q.lab.file);
  if (!spec) throw new Error(`${q.lab.file} is invalid`);
  stageAssets(spec, undefined, join(imageDir, 'root'), q.assets);
  await q.serve();

  // --- component: the installer's pipeline vs dd, on the host ---------------------------
  if (process.env.ONLY !== 'product') {
  const work = join(q.lab.dir, 'write');
  mkdirSync(work, { recursive: true });
  const raw = join(work, 'disk.raw');
  const unz = spawnSync('zstd', ['-d', '-q', '-f', '-o', raw, join(imageDir, 'disk.img.zst')], { encoding: 'utf8' });
  if (unz.status !== 0) throw new Error(`zstd -d: ${unz.stderr}`);
  const host = q.lab.host('52:54:00:20:30:99', '10.20.30.150');
  const target = join(work, 'target.img');
  const timed = async (script: string): Promise<number> => {
    rmSync(target, { force: true });
    spawnSync('sync');
    const t = performance.now();
    const r = await host.exec('sh', ['-c', script], { timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(`${script}: ${r.out}`);
    return (performance.now() - t) / 1000;
  };
  const pipeline = `cd ${work} && rm -f f && mkfifo f && (busybox sha256sum < f > sum &) && busybox wget -q -O - ${BASE}/assets/os/disk.img.zst | busybox tee f | zstd -d -c -q | busybox dd of=${target} bs=1M iflag=fullblock conv=fsync 2>/dev/null`;
  const dd = `busybox dd if=${raw} of=${target} bs=1M conv=fsync 2>/dev/null`;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const pipeS: number[] = [];
  const ddS: number[] = [];
  for (let i = 0; i < 3; i++) {
    pipeS.push(await timed(pipeline));
    ddS.push(await timed(dd));
  }
  const mb = os.disk.rawSize / 1e6;
  const p = mb / median(pipeS), d = mb / median(ddS);
  console.log(`\ncomponent, host (2 cores): the installer's pipeline from serve ${p.toFixed(0)} MB/s (${pipeS.map((x) => x.toFixed(1)).join(', ')} s), dd of the raw image ${d.toFixed(0)} MB/s (${ddS.map((x) => x.toFixed(1)).join(', ')} s): ratio ${(p / d).toFixed(2)}`);
  rmSync(work, { recursive: true, force: true });
  await q.lab.removeHost(host);
  }

  // --- product: a blank VM installed through serve -------------------------------------
  const rows = ['| run | DHCP | disk chosen | image written | installed (installer, rebooting) | disk boot: installed (from its second power on) |', '|---|---|---|---|---|---|'];
  for (let run = 1; run <= RUNS; run++) {
    if (run > 1) await q.reprovision(W1.name);
    const dir = join(q.lab.dir, `vm${run}`);
    mkdirSync(dir, { recursive: true });
    const disk = join(dir, 'w1.qcow2');
    const img = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '8G'], { encoding: 'utf8' });
    if (img.status !== 0) throw new Error(img.stderr);
    // the install boot: the test helper's QEMU ends at the guest's reboot (-no-reboot)
    const vm = await Vm.start(q.lab.hub, { name: `w1-${run}`, mac: W1.mac, dir, disk, memory: 768 });
    vms.push(vm);
    type Ev = { to: string; at: string; source: string; detail?: Record<string, unknown> };
    const waitFor = async (since: number, done: (evs: Ev[]) => boolean, what: string, v: Vm): Promise<Ev[]> => {
      const deadline = performance.now() + 600_000;
      for (;;) {
        const evs = (await q.machine(W1.name)).events.filter((e) => Date.parse(e.at) >= since) as Ev[];
        const failed = evs.find((e) => e.to === 'failed');
        if (failed) throw new Error(`w1 failed: ${JSON.stringify(failed)}\n${v.tail()}`);
        if (done(evs)) return evs;
        if (performance.now() > deadline) throw new Error(`w1: no ${what} after 600 s: ${JSON.stringify(evs.map((e) => e.to))}\n${v.tail()}`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    const installing = await waitFor(vm.wallStart, (evs) => evs.some((e) => e.to === 'installed'), 'installed from the installer', vm);
    const at = (evs: Ev[], from: number, pred: (e: Ev) => boolean) => {
      const e = evs.find(pred);
      return e ? Date.parse(e.at) - from : undefined;
    };
    const step = (name: string) => (e: Ev) => e.detail?.step === name;
    await vm.waitExit(60_000);
    // the disk boot: powered on again, told "boot local", the installed system reports
    const vm2 = await Vm.start(q.lab.hub, { name: `w1-${run}-disk`, mac: W1.mac, dir, disk, memory: 768 });
    vms.push(vm2);
    const booted = await waitFor(vm2.wallStart, (evs) => evs.some((e) => e.to === 'installed'), 'installed from the installed system', vm2);
    rows.push(`| ${run} | ${s(at(installing, vm.wallStart, (e) => e.to === 'dhcp'))} | ${s(at(installing, vm.wallStart, step('disk')))} | ${s(at(installing, vm.wallStart, step('grow')))} | ${s(at(installing, vm.wallStart, (e) => e.to === 'installed'))} | ${s(at(booted, vm2.wallStart, (e) => e.to === 'installed'))} |`);
    await vm2.stop();
  }
  console.log(`\nproduct: a blank disk installed by slipway serve (TCG, 1 vCPU, 768 MiB; seconds from power on)\n${rows.join('\n')}`);
} finally {
  for (const vm of vms) await vm.stop().catch(() => {});
  await q.close();
}
