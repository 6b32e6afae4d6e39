// Slipway's node OS installer (scripts/os-image/init in the image's initrd.img), proved on
// BLANK disks: QEMU machines network-boot (firmware → the NIC's iPXE ROM → DHCP → an iPXE
// script) into the installer with `slipway.install=<install.env URL>` on the command line,
// and it streams the image (disk.img.zst) onto the disk, checks its sha256, grows the root
// partition and file system to the disk, runs the real Ignition onto it and reports each
// step. The provisioner is the test's own small one (test/helpers/os-install-server.ts:
// udhcpd for DHCP, node for HTTP and the report API), so the installer is proved apart
// from serve; the host then reads the disk with sfdisk, blkid, dumpe2fs and debugfs.
//
//   B  OVMF (UEFI), e1000e NIC, NVMe disk named by its /dev/disk/by-id name, the disk first
//      in the boot order (as docs/os-image.md recommends for a rack): blank, so the firmware
//      goes on to the network; installs; boots from its disk without asking the provisioner,
//      as a rack machine would: a login prompt on its console, no root shell
//      With a cluster file's additions as Slipway renders them (issue 20): a spec.files
//      script (0750 root:adm), a spec.units oneshot that runs it, and spec.kernelArgs,
//      which the installer appends to both SYSLINUX configs of the boot partition (BIOS
//      and UEFI, read back with mtools); on the disk's boot the unit prints the script's
//      mode and owner and /proc/cmdline (the UEFI loader's line) on the console
//   C  the disk fails mid-write (I/O errors): failed naming them, the disk has no partition table
//      (a corrupt image is proved through the real serve in vm-image.qemu)
//   G  a disk smaller than the image: failed, nothing written
//   D  two disks and none named: failed with both listed; nothing written
//
// SeaBIOS, AHCI (SATA) and virtio disks and a hardware clock in 2015 install through the
// real serve in the VM rehearsal (test/rehearse.test.ts: cp1, cp2, cp3, each booted from
// its disk after), so this file's one success case is the UEFI one the rehearsal cannot
// name by id.
//
// Every wait is bounded; QEMU, udhcpd and the server are killed by PID, the lab namespace
// is deleted, also on failure.
import { rehearsalSmbios } from '../src/catalog/os.ts';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, closeSync, writeFileSync, statSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from './helpers/serve.ts';
import { qemuClusterFile, missingForQemu, OVMF_VARS } from './helpers/qemu.ts';
import { ovmfArgs } from '../src/rehearse/vm/hardware.ts';
import { heavyTestTurn } from './helpers/vm-lock.ts';
import { addTap, delTap, QEMU } from '../src/rehearse/vm/qemu.ts';
import { startRouterAdverts } from '../src/rehearse/lab/router-adverts.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import { OS_KERNEL_CMDLINE } from '../src/spec/additions.ts';
import { previewSecrets } from '../src/secrets/store.ts';
import { buildPlan } from '../src/plan/plan.ts';
import { ignitionConfig } from '../src/render/ignition.ts';
import type { File } from '../src/plan/types.ts';
import { checkFacts } from '../src/serve/enlist.ts';

const BUILD = fileURLToPath(new URL('../scripts/build-os-image.sh', import.meta.url));
const SERVER = fileURLToPath(new URL('./helpers/os-install-server.ts', import.meta.url));
const PROVISIONER = '10.20.30.2';
const PORT = 8090;
const BASE = `http://${PROVISIONER}:${PORT}`;
const TOKEN = 'install-test-token-0123456789';
/** one TCG install (boot, write ~0.8 GB, grow, Ignition) is bounded by this */
const INSTALL_MS = 600_000;
const GiB = 1024 ** 3;

function missing(): string[] {
  const out = missingForQemu();
  const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { timeout: 5_000 }).status === 0;
  if (process.getuid?.() !== 0) out.push('root (debootstrap, chroot, network namespaces)');
  for (const [cmd, pkg] of [['sfdisk', 'fdisk'], ['blkid', 'util-linux'], ['debugfs', 'e2fsprogs'], ['zstd', 'zstd'], ['mtype', 'mtools']]) if (!has(cmd!)) out.push(pkg!);
  if (!existsSync('/usr/lib/ipxe/qemu/efi-e1000e.rom')) out.push('ipxe-qemu (efi-e1000e.rom)');
  return out;
}
const MISSING = missing();
const skip = MISSING.length ? `missing ${MISSING.join(', ')}` : false;

interface Image {
  dir: string;
  os: { disk: { sha256: string; rawSize: number; file: string }; version: string; kernelCmdline: string; buildSeconds: Record<string, number> };
  runMs: number;
}
let image: Image;
let lab: Lab | undefined;
let udhcpd: ChildProcess | undefined;
let radvd: ChildProcess | undefined;
const timings: string[] = [];
let release: (() => void) | undefined;
let taps = 0;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function buildImage(): Image {
  const t0 = performance.now();
  const r = spawnSync('bash', [BUILD], { encoding: 'utf8', timeout: 1_800_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`build-os-image.sh exited ${r.status ?? r.signal}:\n${r.stderr.slice(-4000)}`);
  const dir = r.stdout.trim().split('\n').at(-1)!;
  for (const f of ['vmlinuz', 'initrd.img', 'disk.img.zst', 'os.json', 'MANIFEST', 'root/etc/os-release']) assert.ok(existsSync(join(dir, f)), `${dir} has no ${f}`);
  return { dir, os: JSON.parse(readFileSync(join(dir, 'os.json'), 'utf8')), runMs: performance.now() - t0 };
}

/** The test's own files: one, a link to it, the hostname. */
const OWN_FILES: File[] = [
  { path: '/etc/slipway-install-test', mode: 0o644, contents: 'written by Ignition in the installer\n' },
  { path: '/etc/hostname', mode: 0o644, contents: 'installtest\n' },
  { path: '/etc/slipway-install-test.link', mode: 0o777, contents: '', link: '/etc/slipway-install-test' },
];
/** spec.kernelArgs of the additions below: panic= is the kernel's own (read back from /proc/sys) */
const KERNEL_ARGS = 'panic=30 sitetag.rack=r42';
/** issue 20's additions, in the cluster file (the lab example plus these) */
const ADDITIONS = `  files:
    - path: /usr/local/sbin/site-check
      mode: "0750"
      owner: root:adm
      contents: |
        #!/bin/sh
        # spec.files[0]: run by spec.units[0] on the installed system
        echo "site-check: $(stat -c '%a %U:%G' "$0") panic=$(cat /proc/sys/kernel/panic) cmdline: $(cat /proc/cmdline)" | tee /var/lib/site-check.out
  units:
    - name: site-check.service
      contents: |
        [Unit]
        Description=The install test's site unit (spec.units[0])
        [Service]
        Type=oneshot
        ExecStart=/usr/local/sbin/site-check
        StandardOutput=journal+console
        [Install]
        WantedBy=multi-user.target
  kernelArgs:
    - {args: [${KERNEL_ARGS.split(' ').join(', ')}]}
`;
/**
 * The Ignition config every machine gets, encoded by Slipway's own writer: the test's
 * files and the additions exactly as Slipway renders them for a machine of that cluster
 * file (the files with an origin: the script, the unit, its enable link, kernel-args).
 */
async function ignitionWithAdditions(): Promise<string> {
  const text = qemuClusterFile().replace('\n  machines:\n', `\n${ADDITIONS}  machines:\n`);
  const { spec, problems } = parseClusterFile(text, join(dir, 'cluster.yaml'));
  assert.ok(spec, `the cluster file with additions: ${JSON.stringify(problems)}`);
  const plan = buildPlan(spec, await previewSecrets(join(dir, 'no-state'), spec));
  const added = plan.machines[0]!.files.filter((f) => f.origin);
  assert.deepEqual(added.map((f) => f.path).sort(), ['/etc/slipway/kernel-args', '/etc/systemd/system/multi-user.target.wants/site-check.service', '/etc/systemd/system/site-check.service', '/usr/local/sbin/site-check']);
  return ignitionConfig([...OWN_FILES, ...added]);
}
let IGNITION = '';

interface Report {
  at: number;
  auth: string;
  body: { machine: string; state: string; seq: number; reason: string; detail: Record<string, unknown> };
}

interface ProvisionerOptions {
  /** the disk.img.zst it serves */
  diskFile: string;
  /** SLIPWAY_DISK */
  disk?: string;
  /** stop sending the image after this many bytes (and keep the connection open) */
  stallAfter?: number;
  /** more kernel arguments */
  args?: string[];
}

/** The test's provisioner for one machine (its install.env, its image file). */
class Provisioner {
  readonly reportsFile: string;
  readonly machine: string;
  readonly o: ProvisionerOptions;
  private child?: ChildProcess;
  out = '';

  constructor(dir: string, machine: string, o: ProvisionerOptions) {
    this.machine = machine;
    this.o = o;
    this.reportsFile = join(dir, `${machine}.reports.jsonl`);
    writeFileSync(this.reportsFile, '');
  }

  async start(): Promise<void> {
    const installEnv = [
      `# slipway install.env for ${this.machine} (the install test's own)`,
      `SLIPWAY_MACHINE=${this.machine}`,
      'SLIPWAY_OS=debian-12',
      `SLIPWAY_IMAGE_URL=${BASE}/os/disk.img.zst`,
      `SLIPWAY_IMAGE_SHA256=${image.os.disk.sha256}`,
      `SLIPWAY_IMAGE_SIZE=${image.os.disk.rawSize}`,
      `SLIPWAY_DISK=${this.o.disk ?? ''}`,
      `SLIPWAY_REPORT_URL=${BASE}/report`,
      `SLIPWAY_TOKEN=${TOKEN}`,
    ].join('\n') + '\n';
    const cmdline = ['ignition.firstboot', 'ignition.platform.id=metal', `ignition.config.url=${BASE}/ignition.json`, `slipway.install=${BASE}/install.env`, ...(this.o.args ?? []), 'console=tty0', 'console=ttyS0,115200n8'].join(' ');
    this.child = lab!.hub.spawn(process.execPath, [SERVER], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PORT: String(PORT), IMAGE_DIR: image.dir, DISK_FILE: this.o.diskFile, REPORTS: this.reportsFile, INSTALL_ENV: installEnv, IGNITION, CMDLINE: cmdline, ...(this.o.stallAfter ? { STALL_AFTER: String(this.o.stallAfter) } : {}) },
    });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    await lab!.hub.waitFor('install server', () => {
      if (this.child!.exitCode !== null) throw new Error(`install server exited:\n${this.out}`);
      return this.out.includes('READY');
    }, 20_000, 100);
  }

  reports(): Report[] {
    return readFileSync(this.reportsFile, 'utf8').split('\n').filter(Boolean).map((l) => {
      const r = JSON.parse(l) as { at: number; auth: string; body: string };
      return { at: r.at, auth: r.auth, body: JSON.parse(r.body) };
    });
  }

  async stop(): Promise<void> {
    if (this.child) await lab!.hub.kill(this.child);
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }
}

interface MachineOptions {
  name: string;
  mac: string;
  firmware: 'bios' | 'uefi';
  nic: 'virtio' | 'e1000e';
  /** werror: 'report': a write the host cannot do (ENOSPC) reaches the guest as an I/O error instead of pausing QEMU */
  disks: { file: string; bus: 'virtio' | 'ahci' | 'nvme'; serial?: string; werror?: 'report' }[];
  rtc2015?: boolean;
  /** not a rehearsal VM (no SMBIOS product slipway-rehearsal): its console must give no root shell */
  rackMachine?: boolean;
  /** the boot order docs/os-image.md recommends for a rack: the disk first (blank: the firmware goes on to the NIC) */
  diskFirst?: boolean;
}

/** One QEMU machine under TCG in the hub, its serial console a file. */
class Machine {
  readonly log: string;
  readonly o: MachineOptions;
  readonly startedAt = performance.now();
  readonly wallStart = Date.now();
  private readonly tap = `itap${taps++}`;
  private readonly child: ChildProcess;
  stderr = '';

  constructor(dir: string, o: MachineOptions, run: number) {
    this.o = o;
    this.log = join(dir, `${o.name}.${run}.serial.log`);
    writeFileSync(this.log, '');
    addTap(lab!.hub, this.tap);
    const args = ['-accel', 'tcg', '-machine', 'q35', '-m', '1024', '-smp', '2', '-name', o.name, '-nographic', '-monitor', 'none',
      '-serial', `file:${this.log}`, '-no-reboot',
      '-netdev', `tap,id=n0,ifname=${this.tap},script=no,downscript=no`,
      '-device', `${o.nic === 'virtio' ? 'virtio-net-pci' : 'e1000e'},netdev=n0,mac=${o.mac},bootindex=${o.diskFirst ? o.disks.length + 1 : 1}`];
    o.disks.forEach((d, i) => {
      args.push('-drive', `file=${d.file},if=none,id=d${i},format=raw,cache=unsafe${d.werror ? `,werror=${d.werror}` : ''}`);
      const boot = `bootindex=${o.diskFirst ? i + 1 : i + 2}`;
      if (d.bus === 'virtio') args.push('-device', `virtio-blk-pci,drive=d${i},${boot}${d.serial ? `,serial=${d.serial}` : ''}`);
      else if (d.bus === 'ahci') args.push('-device', `ide-hd,drive=d${i},bus=ide.${i},${boot}${d.serial ? `,serial=${d.serial}` : ''}`);
      else args.push('-device', `nvme,drive=d${i},serial=${d.serial ?? `SLIPWAYNVME${i}`},${boot}`);
    });
    if (o.firmware === 'uefi') {
      const vars = join(dir, `${o.name}.OVMF_VARS.fd`);
      if (!existsSync(vars)) copyFileSync(OVMF_VARS, vars);
      args.push(...ovmfArgs(vars));
    }
    if (o.rtc2015) args.push('-rtc', 'base=2015-01-01T00:00:00');
    if (!o.rackMachine) args.push(...rehearsalSmbios());
    this.child = lab!.hub.spawn('setpriv', ['--pdeathsig', 'KILL', QEMU, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-5000)));
  }

  serial(): string {
    return readFileSync(this.log, 'latin1').replace(/\r/g, '').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  elapsed(): number {
    return performance.now() - this.startedAt;
  }

  tail(n = 40): string {
    return `--- ${this.o.name} serial (last ${n} lines; ${this.log}) ---\n${this.serial().split('\n').slice(-n).join('\n')}\n${this.stderr}`;
  }

  /** Wait for `re` on the console; ms since power on. Throws on timeout or when QEMU exits first. */
  async waitFor(re: RegExp, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (re.test(this.serial())) return this.elapsed();
      if (this.exited) {
        await new Promise((r) => setTimeout(r, 200));
        if (re.test(this.serial())) return this.elapsed();
        throw new Error(`${this.o.name}: QEMU exited before ${re}\n${this.tail()}`);
      }
      if (performance.now() > deadline) throw new Error(`${this.o.name}: no ${re} after ${timeoutMs} ms\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Wait for QEMU to end by itself (the guest rebooted, with -no-reboot, or powered off). */
  async waitExit(timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    while (!this.exited) {
      if (performance.now() > deadline) throw new Error(`${this.o.name}: still running after ${timeoutMs} ms\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    return this.elapsed();
  }

  async stop(): Promise<void> {
    if (!this.exited) await lab!.hub.kill(this.child, 1_000);
    delTap(lab!.hub, this.tap);
  }
}

/** A blank (all zeros, sparse) raw disk. */
function blankDisk(file: string, bytes: number): string {
  writeFileSync(file, '');
  spawnSync('truncate', ['-s', String(bytes), file]);
  return file;
}

/** Is the file all zeros? (sparse files: read in 1 MiB pieces, bounded by the size) */
function allZero(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    const zeros = Buffer.alloc(1 << 20);
    const size = fstatSync(fd).size;
    for (let pos = 0; pos < size; pos += buf.length) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (!buf.subarray(0, n).equals(zeros.subarray(0, n))) return false;
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

function run(cmd: string, args: string[]): { code: number; out: string; stdout: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

/** sfdisk --json of a disk file: the partitions' start and size in sectors. */
function partitions(file: string): { start: number; size: number; type: string; bootable?: boolean }[] {
  const r = spawnSync('sfdisk', ['--json', file], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`sfdisk --json ${file}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { partitiontable: { partitions: { start: number; size: number; type: string; bootable?: boolean }[] } }).partitiontable.partitions;
}

/** The reports' states with step and percent: "installing:disk", "installing:write:10", ... */
const steps = (reports: Report[]) => reports.map((r) => [r.body.state, r.body.detail?.step, r.body.detail?.percent].filter((x) => x !== undefined).join(':'));

let dir: string;

before(async () => {
  if (skip) return;
  release = await heavyTestTurn('os-image.install', undefined, { cores: 1 });
  image = buildImage();
  lab = Lab.create(qemuClusterFile());
  dir = join(lab.dir, 'install');
  mkdirSync(dir, { recursive: true });
  IGNITION = await ignitionWithAdditions();
  radvd = startRouterAdverts(lab.hub, 'br0', lab.dir);
  const conf = join(dir, 'udhcpd.conf');
  writeFileSync(join(dir, 'udhcpd.leases'), '');
  writeFileSync(conf, [
    'start 10.20.30.100', 'end 10.20.30.199', 'interface br0', `lease_file ${join(dir, 'udhcpd.leases')}`,
    'option subnet 255.255.255.0', 'option lease 3600', `siaddr ${PROVISIONER}`, `boot_file ${BASE}/boot.ipxe`,
  ].join('\n') + '\n');
  udhcpd = lab.hub.spawn('busybox', ['udhcpd', '-f', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
});

after(async () => {
  if (udhcpd) await lab?.hub.kill(udhcpd);
  if (radvd) await lab?.hub.kill(radvd);
  await lab?.close();
  release?.();
  if (timings.length) console.log(`\nos-image install timings (TCG, 2 vCPUs, 1 GiB):\n${timings.map((t) => `  ${t}`).join('\n')}`);
});

/**
 * Install `o` from blank: the reports in order, the disk's layout and contents; then, with
 * `bootFromDisk`, power it on again: the provisioner says "exit", the firmware boots the
 * disk, and the installed system reaches its autologin shell with Ignition's hostname.
 */
async function installCase(o: MachineOptions, bootFromDisk: boolean, diskName?: string): Promise<void> {
  const disk = o.disks[0]!.file;
  const prov = new Provisioner(dir, o.name, { diskFile: join(image.dir, 'disk.img.zst'), disk: diskName });
  await prov.start();
  const vm = new Machine(dir, o, 1);
  try {
    const started = await vm.waitFor(/slipway-initrd: \S+ started .*install: the OS image goes onto a disk/, INSTALL_MS);
    const writing = await vm.waitFor(/slipway-initrd: \S+ install: writing http/, INSTALL_MS);
    const written = await vm.waitFor(/slipway-initrd: \S+ install: image written to/, INSTALL_MS);
    await vm.waitFor(/slipway-initrd: \S+ install: done in \d+ s: rebooting/, INSTALL_MS);
    const rebooted = await vm.waitExit(60_000);
    const serial = vm.serial();
    assert.match(serial, /slipway-initrd: \S+ ignition fetch stage done/);
    for (const stage of ['disks', 'mount', 'files', 'umount']) assert.match(serial, new RegExp(`slipway-initrd: \\S+ ignition ${stage} stage done`));
    const reports = prov.reports();
    const got = steps(reports);
    assert.equal(got[0], 'installing:disk', got.join(' '));
    assert.deepEqual(got.slice(-4), ['installing:write:100', 'installing:grow', 'installing:ignition', 'installed:reboot'], got.join(' '));
    const percents = reports.filter((r) => r.body.detail?.step === 'write').map((r) => r.body.detail.percent as number);
    assert.ok(percents.length >= 5, `progress reports: ${percents.join(' ')}`);
    assert.deepEqual(percents, [...percents].sort((a, b) => a - b), 'progress only grows');
    assert.deepEqual(reports.map((r) => r.body.seq), reports.map((_, i) => i + 1), 'seq 1, 2, 3, ... with no gap');
    assert.ok(reports.every((r) => r.auth === `Bearer ${TOKEN}` && r.body.machine === o.name));
    assert.equal(reports.at(-1)!.body.reason, `image written to ${reports.at(-1)!.body.detail.disk}, Ignition applied: rebooting from disk`);
    // issue 18: the installed report carries the machine's facts, in the shape serve accepts (checkFacts)
    const facts = checkFacts(reports.at(-1)!.body.detail.facts);
    assert.ok('facts' in facts, `the installed report's facts: ${'error' in facts ? facts.error : ''}`);
    assert.equal(facts.facts.bootMac, o.mac);
    assert.ok(facts.facts.disks.some((d) => d.path === reports.at(-1)!.body.detail.disk && d.size === statSync(disk).size && d.serial.trim() === (o.disks[0]!.serial ?? d.serial.trim())), JSON.stringify(facts.facts.disks));

    // --- the disk, as the host reads it ----------------------------------------------------
    const size = statSync(disk).size;
    const parts = partitions(disk);
    assert.equal(parts.length, 2, JSON.stringify(parts));
    const [p1, p2] = parts as [typeof parts[0], typeof parts[0]];
    assert.equal(p1.start, 2048);
    assert.equal(p1.bootable, true, 'p1 (BOOT) is the active partition');
    assert.equal(p2.start + p2.size, size / 512, `p2 ends at the disk's end: ${JSON.stringify(parts)}, ${size / 512} sectors`);
    const offset = p2.start * 512;
    const blkid = run('blkid', ['-p', '-O', String(offset), '-o', 'export', disk]).out;
    assert.match(blkid, /LABEL=ROOT/);
    assert.match(blkid, /TYPE=ext4/);
    const boot = run('blkid', ['-p', '-O', String(p1.start * 512), '-o', 'export', disk]).out;
    assert.match(boot, /LABEL=BOOT/);
    const fs = run('dumpe2fs', ['-h', `${disk}?offset=${offset}`]).out;
    const blocks = Number(/Block count:\s+(\d+)/.exec(fs)?.[1]);
    const bsize = Number(/Block size:\s+(\d+)/.exec(fs)?.[1]);
    assert.ok(blocks * bsize > p2.size * 512 - 4 * 1024 * 1024, `the file system fills p2: ${blocks} x ${bsize} vs ${p2.size * 512}`);
    assert.ok(blocks * bsize > image.os.disk.rawSize, 'the file system grew past the image');
    // debugfs prints its banner on stderr: the file is stdout
    const cat = (path: string) => run('debugfs', ['-R', `cat ${path}`, `${disk}?offset=${offset}`]).stdout;
    assert.equal(cat('/etc/slipway-install-test'), 'written by Ignition in the installer\n');
    assert.equal(cat('/etc/hostname'), 'installtest\n');
    assert.match(run('debugfs', ['-R', 'stat /etc/slipway-install-test.link', `${disk}?offset=${offset}`]).out, /Type: symlink/);
    assert.equal(cat('/var/lib/slipway/report-seq').trim(), String(reports.at(-1)!.body.seq), 'the installed system continues from the last seq');
    // issue 20's additions: the script with its mode and owner (adm is gid 4 in Debian), the unit enabled
    const st = run('debugfs', ['-R', 'stat /usr/local/sbin/site-check', `${disk}?offset=${offset}`]).out;
    assert.match(st, /Mode:\s+0750/, st);
    assert.match(st, /User:\s+0\s+Group:\s+4\b/, st);
    assert.match(run('debugfs', ['-R', 'stat /etc/systemd/system/multi-user.target.wants/site-check.service', `${disk}?offset=${offset}`]).out, /Type: symlink/);
    // the kernel arguments, appended by the installer to both loaders' line (BIOS and UEFI)
    assert.equal(image.os.kernelCmdline, OS_KERNEL_CMDLINE, 'the image boots with the command line validate knows');
    assert.match(serial, new RegExp(`install: kernel arguments for the installed system: ${KERNEL_ARGS}`));
    for (const cfg of ['::/syslinux.cfg', '::/EFI/BOOT/syslinux.cfg']) {
      const r = run('mtype', ['-i', `${disk}@@${p1.start * 512}`, cfg]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.stdout.replace(/\r/g, ''), new RegExp(`^\\s*APPEND ${OS_KERNEL_CMDLINE} ${KERNEL_ARGS}$`, 'm'), `${cfg}:\n${r.stdout}`);
    }
    const fsck = run('e2fsck', ['-fn', `${disk}?offset=${offset}`]);
    assert.equal(fsck.code, 0, fsck.out);
    timings.push(`${o.name} (${o.firmware}, ${o.nic}, ${o.disks[0]!.bus}, ${(size / GiB).toFixed(0)} GiB): installer started ${secs(started)}, writing ${secs(writing)}, written ${secs(written)} (${((image.os.disk.rawSize / 1e6) / ((written - writing) / 1000)).toFixed(0)} MB/s raw), rebooted ${secs(rebooted)}; ${reports.length} reports`);

    if (!bootFromDisk) return;
    const asked = prov.out.length;
    const vm2 = new Machine(dir, o, 2);
    try {
      // disk first: the firmware boots the installed disk without asking the provisioner
      const told = o.diskFirst ? undefined : await vm2.waitFor(/install-test: installed: booting from local disk/, 180_000);
      await vm2.waitFor(/slipway-initrd: \S+ started .*not a first boot/, 240_000);
      if (o.diskFirst) assert.doesNotMatch(prov.out.slice(asked), /REQ /, 'a disk-first machine boots its disk without asking the provisioner');
      const sysd = await vm2.waitFor(/slipway-initrd: \S+ switch_root to \/lib\/systemd\/systemd/, 120_000);
      // the cluster file's unit ran its file: mode and owner as the file said, and the
      // kernel took the loader's line with the arguments (SYSLINUX adds BOOT_IMAGE= and initrd=)
      const ran = await vm2.waitFor(/site-check: \d+ \S+ panic=\S+ cmdline: [^\n]*/, 300_000);
      const line = /site-check: \d+ \S+ panic=\S+ cmdline: [^\n]*/.exec(vm2.serial())![0];
      assert.match(line, /^site-check: 750 root:adm panic=30 cmdline: /, line);
      assert.ok(line.includes(` ${OS_KERNEL_CMDLINE} ${KERNEL_ARGS}`), `the installed boot's /proc/cmdline: ${line}`);
      timings.push(`${o.name} disk boot: the cluster file's unit ran at ${secs(ran)}: ${line}`);
      if (o.rackMachine) {
        // a machine of a rack: a login prompt on its serial console, root locked, no shell
        const prompt = await vm2.waitFor(/installtest login: /, 300_000);
        await new Promise((r) => setTimeout(r, 3000));
        assert.doesNotMatch(readFileSync(vm2.log, 'utf8'), /root@installtest/, 'no root shell on a rack machine\'s console');
        timings.push(`${o.name} disk boot: ${told === undefined ? 'disk first in the boot order' : `told to boot locally ${secs(told)}`}, systemd ${secs(sysd)}, login prompt (no autologin) ${secs(prompt)}`);
        return;
      }
      const shell = await vm2.waitFor(/root@installtest:~# /, 300_000);
      timings.push(`${o.name} disk boot: ${told === undefined ? 'disk first in the boot order' : `told to boot locally ${secs(told)}`}, systemd ${secs(sysd)}, root shell ${secs(shell)}`);
    } finally {
      await vm2.stop();
    }
  } finally {
    await vm.stop();
    await prov.stop();
  }
}

test('B: OVMF, e1000e NIC, NVMe disk named by its /dev/disk/by-id name, the disk first in the boot order: blank, the firmware goes on to the network and the machine installs; then it boots the disk under UEFI without asking the provisioner; as a rack machine (not a rehearsal VM) its console asks for a login', { skip, timeout: 2 * INSTALL_MS }, async () => {
  const disk = blankDisk(join(dir, 'b.raw'), 4 * GiB);
  // udev's name for QEMU's NVMe controller: nvme-<model>_<serial>
  await installCase({ name: 'b', mac: '52:54:00:20:30:62', firmware: 'uefi', nic: 'e1000e', disks: [{ file: disk, bus: 'nvme', serial: 'SLIPWAY0B' }], rackMachine: true, diskFirst: true }, true, '/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_SLIPWAY0B');
});

// A disk that fails under the write: its backing file lives on a 256 MiB tmpfs, so once
// ~256 MB are written the host's writes fail (ENOSPC) and QEMU, with werror=report, hands
// the guest a real I/O error on each further write, as a dying disk would.
test('C: the disk fails mid-write (I/O errors): the machine fails naming them, and its disk is left with no partition table', { skip, timeout: INSTALL_MS + 60_000 }, async () => {
  const fsDir = join(dir, 'c-fs');
  mkdirSync(fsDir, { recursive: true });
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256m,mode=0700', 'slipway-io-test', fsDir], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(m.status, 0, m.stderr);
  let prov: Provisioner | undefined;
  let vm: Machine | undefined;
  try {
    const disk = blankDisk(join(fsDir, 'c.raw'), 2 * GiB);
    prov = new Provisioner(dir, 'c', { diskFile: join(image.dir, 'disk.img.zst') });
    await prov.start();
    vm = new Machine(dir, { name: 'c', mac: '52:54:00:20:30:63', firmware: 'bios', nic: 'virtio', disks: [{ file: disk, bus: 'virtio', werror: 'report' }] }, 1);
    const failed = await vm.waitFor(/slipway-initrd: \S+ FAILED install: /, INSTALL_MS);
    await vm.waitExit(60_000);
    assert.match(vm.serial(), /wiped the partition table of \/dev\/vda/);
    const reports = prov.reports();
    const got = steps(reports);
    assert.equal(got.at(-1), 'failed:write', got.join(' '));
    assert.ok(!got.some((s) => s.startsWith('installed')), `never installed: ${got.join(' ')}`);
    assert.match(reports.at(-1)!.body.reason, /^dd failed \(exit \d+\): .*(I\/O|Input\/output) error/i);
    assert.deepEqual(reports.map((r) => r.body.seq), reports.map((_, i) => i + 1));
    assertWiped(disk);
    timings.push(`c (I/O errors after ~256 MB): failed at ${secs(failed)}: ${reports.at(-1)!.body.reason.slice(0, 160)}`);
  } finally {
    await vm?.stop();
    await prov?.stop();
    spawnSync('umount', [fsDir], { timeout: 30_000 });
  }
});

test('G: a disk smaller than the image: failed with both sizes, nothing written', { skip, timeout: INSTALL_MS }, async () => {
  const small = blankDisk(join(dir, 'g.raw'), 512 * 1024 * 1024);
  const prov = new Provisioner(dir, 'g', { diskFile: join(image.dir, 'disk.img.zst') });
  await prov.start();
  const vm = new Machine(dir, { name: 'g', mac: '52:54:00:20:30:67', firmware: 'bios', nic: 'virtio', disks: [{ file: small, bus: 'virtio', serial: 'G1' }] }, 1);
  try {
    const failed = await vm.waitFor(/slipway-initrd: \S+ FAILED install: disk too small/, INSTALL_MS);
    await vm.waitExit(60_000);
    const reports = prov.reports();
    assert.deepEqual(steps(reports).at(-1), 'failed:disk');
    assert.match(reports.at(-1)!.body.reason, new RegExp(`disk too small: /dev/vda has ${512 * 1024 * 1024} bytes, the image needs ${image.os.disk.rawSize}`));
    assert.ok(!reports.some((r) => r.body.state === 'installed'), 'never installed');
    assert.ok(allZero(small), 'nothing was written');
    timings.push(`g (disk too small): failed at ${secs(failed)}`);
  } finally {
    await vm.stop();
    await prov.stop();
  }
});

test('D: two disks and none named: failed with both disks listed, nothing written', { skip, timeout: INSTALL_MS }, async () => {
  const d1 = blankDisk(join(dir, 'd1.raw'), 2 * GiB);
  const d2 = blankDisk(join(dir, 'd2.raw'), 3 * GiB);
  const prov = new Provisioner(dir, 'd', { diskFile: join(image.dir, 'disk.img.zst') });
  await prov.start();
  const vm = new Machine(dir, { name: 'd', mac: '52:54:00:20:30:64', firmware: 'bios', nic: 'virtio', disks: [{ file: d1, bus: 'virtio', serial: 'D1' }, { file: d2, bus: 'virtio', serial: 'D2' }] }, 1);
  try {
    const failed = await vm.waitFor(/slipway-initrd: \S+ FAILED install: several disks/, INSTALL_MS);
    await vm.waitExit(60_000);
    const reports = prov.reports();
    assert.deepEqual(steps(reports), ['failed:disk']);
    const r = reports[0]!.body;
    assert.match(r.reason, /several disks and none named/);
    const disks = r.detail.disks as { path: string; size: number; ids: string[] }[];
    assert.deepEqual(disks.map((d) => [d.path, d.size]), [['/dev/vda', 2 * GiB], ['/dev/vdb', 3 * GiB]]);
    assert.ok(disks[0]!.ids.includes('/dev/disk/by-id/virtio-D1'), JSON.stringify(disks));
    assert.ok(disks[1]!.ids.some((i) => /^\/dev\/disk\/by-path\/pci-0000:00:[0-9a-f]{2}\.0$/.test(i)), JSON.stringify(disks));
    assert.ok(allZero(d1) && allZero(d2), 'nothing was written to either disk');
    assert.ok(!prov.out.includes('GET /os/disk.img.zst'), 'the image was not even fetched');
    timings.push(`d (two disks): failed at ${secs(failed)}`);
  } finally {
    await vm.stop();
    await prov.stop();
  }
});

/** A failed write, as the host sees the disk: no partition table, nothing blkid knows, a zero first MiB. */
function assertWiped(disk: string): void {
  const sf = run('sfdisk', ['--dump', disk]);
  assert.notEqual(sf.code, 0, `sfdisk still finds a partition table:\n${sf.out}`);
  assert.equal(run('blkid', ['-p', disk]).out.trim(), '', 'blkid finds nothing on the disk');
  const head = Buffer.alloc(1 << 20);
  const fd = openSync(disk, 'r');
  readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  assert.ok(head.every((x) => x === 0), 'the first MiB is zeros');
}

test('E: the provisioner gone mid-stream: the install fails, the disk is wiped, nothing says installed', { skip, timeout: INSTALL_MS }, async () => {
  const disk = blankDisk(join(dir, 'e.raw'), 2 * GiB);
  const prov = new Provisioner(dir, 'e', { diskFile: join(image.dir, 'disk.img.zst') });
  await prov.start();
  const vm = new Machine(dir, { name: 'e', mac: '52:54:00:20:30:65', firmware: 'bios', nic: 'virtio', disks: [{ file: disk, bus: 'virtio' }] }, 1);
  try {
    await vm.waitFor(/slipway-initrd: \S+ install: writing image [2-9]\d%/, INSTALL_MS);
    await prov.stop();
    const failed = await vm.waitFor(/slipway-initrd: \S+ FAILED install: /, 120_000);
    await vm.waitExit(120_000);
    const serial = vm.serial();
    assert.match(serial, /install: write: (zstd|wget|dd) failed/);
    assert.match(serial, /wiped the partition table of \/dev\/vda/);
    assert.ok(!steps(prov.reports()).some((x) => x.startsWith('installed')));
    assertWiped(disk);
    timings.push(`e (provisioner gone): failed at ${secs(failed)}: ${/install: write: [^\n]*/.exec(serial)?.[0].slice(0, 160)}`);
  } finally {
    await vm.stop();
    await prov.stop();
  }
});

test('F: the provisioner stops sending mid-stream (connection open): cut after slipway.stall=20 s, failed, disk wiped', { skip, timeout: INSTALL_MS }, async () => {
  const disk = blankDisk(join(dir, 'f.raw'), 2 * GiB);
  const stallAfter = Math.floor(statSync(join(image.dir, 'disk.img.zst')).size / 3);
  const prov = new Provisioner(dir, 'f', { diskFile: join(image.dir, 'disk.img.zst'), stallAfter, args: ['slipway.stall=20'] });
  await prov.start();
  const vm = new Machine(dir, { name: 'f', mac: '52:54:00:20:30:66', firmware: 'bios', nic: 'virtio', disks: [{ file: disk, bus: 'virtio' }] }, 1);
  try {
    await vm.waitFor(/slipway-initrd: \S+ install: no data for 20 s: stopping the download/, INSTALL_MS);
    const failed = await vm.waitFor(/slipway-initrd: \S+ FAILED install: /, 120_000);
    await vm.waitExit(120_000);
    const reports = prov.reports();
    const got = steps(reports);
    assert.equal(got.at(-1), 'failed:write', got.join(' '));
    assert.match(reports.at(-1)!.body.reason, /no data for 20 s: the provisioner stopped sending/);
    assert.ok(!got.some((x) => x.startsWith('installed')));
    assertWiped(disk);
    timings.push(`f (stalled stream): failed at ${secs(failed)}: ${reports.at(-1)!.body.reason.slice(0, 160)}`);
  } finally {
    await vm.stop();
    await prov.stop();
  }
});
