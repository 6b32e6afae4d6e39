// QEMU VMs on the lab bridge, and one machine of the VM rehearsal.
//
// `Qemu` is one qemu-system-x86_64 process (KVM when /dev/kvm works, else TCG) in the
// lab's hub namespace, with a NIC (virtio by default; its MAC, a tap that is a port of
// the lab bridge: addTap) that network-boots through its iPXE ROM exactly as the rack
// machine would, an optional disk after it, a serial console on a unix socket that we read from
// power-on and type into, and optionally a monitor on another (power off: `quit`, press
// reset: `system_reset`). The boot tests' VMs (test/helpers/qemu.ts) are this too.
//
// `VmMachine` is a rehearsal machine made of it: a blank disk (a sparse raw file, nothing
// in it: the installer writes the OS image onto it) on the controller its hardware row
// names, its firmware (SeaBIOS, or OVMF with a variable store of its own), the tap, the
// QEMU process, the root shell on its serial console the checks look inside with.
import { rehearsalSmbios } from '../../catalog/os.ts';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, readSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Machine } from '../../spec/types.ts';
import type { Netns } from '../lab/netns.ts';
import type { FailedUnit, RehearsalMachine } from '../engine.ts';
import { BRIDGE } from '../lab/lab.ts';
import { plainConsole as plain } from './console-text.ts';
import { DISK_BYTES, OVMF_VARS, describeHardware, diskArgs, firmwareArgs, nicDevice, type Hardware } from './hardware.ts';
import { nodeBond } from './bond.ts';
import { nodeVlan } from './vlan.ts';
import { attachVlan } from '../lab/vlan.ts';

export const QEMU = 'qemu-system-x86_64';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let kvmProbe: boolean | undefined;

/**
 * Does KVM really run a guest here? /dev/kvm can exist and open and still not run one
 * (nested virtualisation off): boot `kernel` for at most 20 s under KVM and look for its
 * first console line. Asked once per process.
 */
export function kvmWorks(kernel: string): boolean {
  if (kvmProbe !== undefined) return kvmProbe;
  kvmProbe = false;
  if (!existsSync('/dev/kvm') || process.env.SLIPWAY_QEMU_ACCEL === 'tcg') return false;
  // No vmx/svm flag: the CPU offers no virtualisation to this kernel (the probe below
  // would only hang for its whole timeout).
  if (!/\b(vmx|svm)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))) return false;
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
  } catch {
    return false;
  }
  const r = spawnSync(QEMU, ['-accel', 'kvm', '-M', 'q35', '-m', '256', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1', '-no-reboot'], { encoding: 'latin1', timeout: 20_000, killSignal: 'SIGKILL' });
  kvmProbe = /Linux version/.test(r.stdout ?? '');
  return kvmProbe;
}

/** A tap named `tap` in the hub, a port of the lab bridge, up: a VM's wire. */
export function addTap(hub: Netns, tap: string): void {
  hub.ip('tuntap', 'add', tap, 'mode', 'tap');
  try {
    hub.setMaster(tap, BRIDGE);
    hub.up(tap);
  } catch (e) {
    delTap(hub, tap);
    throw e;
  }
}

export function delTap(hub: Netns, tap: string): void {
  try {
    hub.ip('link', 'del', tap);
  } catch {
    // the namespace, and the tap with it, may be gone
  }
}

export interface QemuOptions {
  /** the lab's hub namespace, where the bridge and the tap are */
  hub: Netns;
  /** qemu's -name */
  name: string;
  mac: string;
  /** the NIC's tap (addTap) */
  tap: string;
  memoryMiB: number;
  /** virtual CPUs (default 1; under TCG each is a host thread, MTTCG) */
  cpus?: number;
  accel: 'kvm' | 'tcg';
  /** the serial console's unix socket */
  serialSocket: string;
  /** the serial console's log file, for people (and for a kept VM after we are gone) */
  serialLog: string;
  /** the monitor's unix socket (no monitor without one) */
  monitor?: string;
  /** a qcow2 disk that boots after the NIC, on virtio-blk */
  disk?: string;
  /** the disk's arguments instead (another controller, a raw file: hardware.ts's diskArgs) */
  diskArgs?: string[];
  /** the NIC's QEMU device (default virtio-net-pci) */
  nicDevice?: string;
  /** more options of the NIC's device (",romfile=": no iPXE ROM) */
  nicOptions?: string;
  /** more QEMU arguments (firmware, -no-reboot, ...) */
  extraArgs?: string[];
  /** outlive this process (`rehearse --keep`); else the kernel kills QEMU when we die */
  outlive?: boolean;
}

/** One QEMU process, from power on. */
export class Qemu {
  readonly name: string;
  readonly child: ChildProcess;
  /** QEMU's own complaints (the end of its stderr), for error messages */
  stderr = '';
  private readonly monitorSocket?: string;
  private readonly exited: Promise<void>;
  private conn?: Socket;
  /** set when QEMU could not be started at all (setpriv missing, say) */
  private spawnError?: Error;
  /** everything the serial console sent since power on, exactly once (see start) */
  private raw = '';
  private plainCache = { length: -1, text: '' };

  private constructor(name: string, child: ChildProcess, monitorSocket?: string) {
    this.name = name;
    this.child = child;
    this.monitorSocket = monitorSocket;
    this.exited = new Promise((r) => {
      child.once('exit', () => r());
      child.once('error', (e) => {
        this.spawnError = e;
        r();
      });
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-20_000)));
  }

  /**
   * Power on. Resolves once we are connected to its serial console, before the guest
   * runs (wait=on: the guest runs only once we are connected, so we read all of it).
   */
  static async start(o: QemuOptions): Promise<Qemu> {
    const args = [
      '-accel', o.accel, '-machine', 'q35', '-m', String(o.memoryMiB), '-smp', String(o.cpus ?? 1), '-name', o.name,
      // a rehearsal VM: the node OS gives root a shell on its serial console, which the checks type into
      ...rehearsalSmbios(),
      // -nographic: SeaBIOS (and so iPXE) print to the serial console too.
      '-nographic',
      // What we parse is what the socket delivered, not QEMU's logfile: when the reader is
      // slow (EAGAIN) QEMU logs the character and the UART sends it again, so the log can
      // show it twice ("slippway").
      // logappend: a machine powered on again keeps its earlier boots' log
      '-chardev', `socket,id=ser0,path=${o.serialSocket},server=on,wait=on,logfile=${o.serialLog},logappend=on`, '-serial', 'chardev:ser0',
      '-monitor', o.monitor ? `unix:${o.monitor},server=on,wait=off` : 'none',
      '-netdev', `tap,id=n0,ifname=${o.tap},script=no,downscript=no`,
      '-device', `${o.nicDevice ?? 'virtio-net-pci'},netdev=n0,mac=${o.mac},bootindex=1${o.nicOptions ?? ''}`,
      ...(o.diskArgs ?? (o.disk ? ['-drive', `file=${o.disk},if=none,id=d0,format=qcow2`, '-device', 'virtio-blk-pci,drive=d0,bootindex=2'] : [])),
      ...(o.extraArgs ?? []),
    ];
    // setpriv execs qemu (so the PID is qemu's) and has the kernel kill it if we die.
    const child = o.hub.spawn('setpriv', [...(o.outlive ? [] : ['--pdeathsig', 'KILL']), QEMU, ...args], { stdio: ['ignore', 'ignore', o.outlive ? 'ignore' : 'pipe'] });
    const q = new Qemu(o.name, child, o.monitor);
    try {
      await q.connect(o.serialSocket);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    return q;
  }

  /** Connect to the serial console socket (QEMU makes it as it starts: bounded retries). */
  private async connect(path: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (let attempt = 0; ; attempt++) {
      try {
        this.conn = await new Promise<Socket>((resolve, reject) => {
          const sock = connect(path);
          sock.once('connect', () => resolve(sock));
          sock.once('error', reject);
        });
        break;
      } catch (e) {
        if (!this.running || Date.now() > deadline || attempt > 200) throw new Error(`${this.name}: cannot connect to the serial console ${path}: ${(this.spawnError ?? e as Error).message}${this.stderr ? `\n${this.stderr}` : ''}`);
        await sleep(100);
      }
    }
    this.conn.setEncoding('latin1').on('data', (d: string) => (this.raw += d));
    this.conn.on('error', () => {});
  }

  get running(): boolean {
    return !this.spawnError && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** qemu's PID, while it runs */
  get pid(): number | undefined {
    return this.running ? this.child.pid : undefined;
  }

  /** The serial console since power on, as sent (escape sequences and all). */
  get rawConsole(): string {
    return this.raw;
  }

  /** The serial console since power on, as a terminal shows it (escape sequences gone, backspaces applied). */
  console(): string {
    if (this.plainCache.length !== this.raw.length) this.plainCache = { length: this.raw.length, text: plain(this.raw) };
    return this.plainCache.text;
  }

  tail(lines = 30): string {
    return this.console().split('\n').slice(-lines).join('\n');
  }

  /** Type on the serial console. */
  write(text: string): void {
    if (!this.conn || this.conn.destroyed) throw new Error(`${this.name}: not connected to its serial console`);
    this.conn.write(text);
  }

  /** Wait until the serial console (from character `from` on) matches `re`. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (re.test(this.console().slice(from))) return;
      if (!this.running) throw new Error(`${this.name} powered off before ${re}`);
      await sleep(500);
    }
    throw new Error(`${this.name}: no ${re} on the console after ${timeoutMs / 1000}s:\n${this.tail(15)}`);
  }

  /** Wait at most `timeoutMs` for QEMU to exit; did it? */
  async waitExit(timeoutMs: number): Promise<boolean> {
    if (!this.running) return true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    return !this.running;
  }

  /** One command to QEMU's monitor. */
  async monitor(cmd: string): Promise<void> {
    const path = this.monitorSocket;
    if (!path) throw new Error(`${this.name} has no monitor`);
    await new Promise<void>((resolve, reject) => {
      const sock = connect(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`${this.name}: monitor did not answer`));
      }, 10_000);
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.once('data', () => {
        sock.write(`${cmd}\n`);
        setTimeout(() => {
          clearTimeout(timer);
          sock.end();
          resolve();
        }, 300);
      });
    });
  }

  /** Leave it running after this process exits (started with `outlive`). */
  detach(): void {
    this.conn?.destroy();
    this.child.unref();
  }

  /** Kill it (by its PID) and let go of its console. */
  async kill(): Promise<void> {
    this.conn?.destroy();
    if (this.running) {
      this.child.kill('SIGKILL');
      await this.waitExit(5_000);
    }
  }
}

export interface VmOptions {
  machine: Machine;
  hub: Netns;
  /** this machine's scratch directory */
  dir: string;
  /** its firmware, NIC and disk controller (hardware.ts) */
  hardware: Hardware;
  memoryMiB: number;
  tap: string;
  /**
   * A fault: once the installer has written the disk and rebooted (QEMU runs with
   * -no-reboot until then, so the reboot ends it), a stray regular file is planted at this
   * path of the disk's root file system, then the machine powers on again and boots its
   * disk: the fault `failing-unit`.
   */
  strayFileAt?: string;
  /** KVM or software emulation (see kvmWorks) */
  accel: 'kvm' | 'tcg';
  /** it outlives this process (`rehearse --keep`: the VMs stay up for the operator to look into) */
  outlive?: boolean;
}

/** What a disk held before power on, as create() found it. */
export interface BlankDisk {
  blank: boolean;
  detail: string;
}

export class VmMachine implements RehearsalMachine {
  readonly m: Machine;
  readonly serialLog: string;
  readonly hardware: string;
  /** the disk file (raw, sparse) */
  readonly disk: string;
  /** the disk as found before power on (create) */
  before?: BlankDisk;
  private readonly o: VmOptions;
  private qemu?: Qemu;
  private readonly vars: string;
  private readonly monitor: string;
  private readonly serialSock: string;
  /** the fault's plant-and-power-on-again, while it is pending */
  private fault?: Promise<void>;
  /** what the fault did, or why it could not */
  faultNote?: string;
  private destroyed = false;
  /** set when a check powered it off */
  stopped = false;
  /**
   * The machine's other bond members (issue 20): a NIC each with that MAC, on a tap of its
   * own on the lab bridge, without a boot ROM (the machine network-boots from its first
   * NIC, as the file's mac says), so the bond has its members and bond-failover can cut one.
   */
  private readonly members: { mac: string; tap: string; netdev: string }[];

  constructor(o: VmOptions) {
    this.o = o;
    this.m = o.machine;
    this.hardware = describeHardware(o.hardware);
    this.serialLog = join(o.dir, 'serial.log');
    this.disk = join(o.dir, 'disk.raw');
    this.vars = join(o.dir, 'OVMF_VARS.fd');
    this.members = (nodeBond(o.machine)?.members ?? [])
      .filter((x) => /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(x) && x !== o.machine.mac.toLowerCase())
      .map((mac, k) => ({ mac, tap: `${o.tap}b${k + 1}`, netdev: `n${k + 1}` }));
    this.monitor = join(o.dir, 'monitor.sock');
    this.serialSock = join(o.dir, 'serial.sock');
  }

  /** The blank disk, the firmware's variable store and the tap; nothing runs yet. */
  create(): void {
    // A new machine's disk: nothing on it. A sparse file of the full size, every byte zero.
    closeSync(openSync(this.disk, 'wx', 0o600));
    truncateSync(this.disk, DISK_BYTES);
    this.before = blankDisk(this.disk);
    if (this.o.hardware.firmware === 'uefi') copyFileSync(OVMF_VARS, this.vars);
    addTap(this.o.hub, this.o.tap);
    for (const x of this.members) addTap(this.o.hub, x.tap);
    // a node link on VLAN N: each of its taps is a switch port joining VLAN N to the lab
    // segment (untagged while it boots from the network, tagged once installed: vm/vlan.ts)
    const vid = nodeVlan(this.m);
    if (vid) for (const tap of [this.o.tap, ...this.members.map((x) => x.tap)]) attachVlan(this.o.hub, tap, vid, 'port');
  }

  /** Nothing before power on: the VM installs itself by network boot (DHCP → iPXE → installer → Ignition). */
  async install(): Promise<void> {}

  /** Power on; resolves once we are connected to its serial console, before the guest runs. */
  async powerOn(): Promise<void> {
    await this.start(!!this.o.strayFileAt && !this.fault);
    if (this.o.strayFileAt && !this.fault) this.fault = this.plantAfterInstall(this.o.strayFileAt);
  }

  private async start(noReboot: boolean): Promise<void> {
    const { hub, tap, memoryMiB, accel, outlive, hardware } = this.o;
    this.qemu = await Qemu.start({
      hub, name: this.m.name, mac: this.m.mac, tap, memoryMiB, accel, serialSocket: this.serialSock, serialLog: this.serialLog, monitor: this.monitor, outlive,
      nicDevice: nicDevice(hardware),
      diskArgs: diskArgs(hardware, this.disk, `slipway-${this.m.name}`),
      extraArgs: [...firmwareArgs(hardware, this.vars), ...(hardware.rtc ? ['-rtc', `base=${hardware.rtc}`] : []), ...(noReboot ? ['-no-reboot'] : []),
        ...this.members.flatMap((x) => ['-netdev', `tap,id=${x.netdev},ifname=${x.tap},script=no,downscript=no`, '-device', `${nicDevice(hardware)},netdev=${x.netdev},mac=${x.mac},romfile=`])],
    });
  }

  /**
   * The fault failing-unit: wait for the installer's reboot (QEMU exits: -no-reboot), plant
   * the stray file on the installed root file system, power on again. Ends quietly when the
   * machine is powered off or destroyed first.
   */
  private async plantAfterInstall(path: string): Promise<void> {
    const qemu = this.qemu!;
    while (!(await qemu.waitExit(5_000))) if (this.destroyed || this.stopped) return;
    if (this.destroyed || this.stopped) return;
    try {
      plantStrayFile(this.disk, path, this.o.dir);
      this.faultNote = `after the installer's reboot, a stray file planted at ${path} on its installed root file system`;
    } catch (e) {
      this.faultNote = `could not plant the stray file: ${(e as Error).message}`;
      return;
    }
    if (this.destroyed || this.stopped) return;
    await this.start(false).catch((e) => (this.faultNote += `; it could not be powered on again: ${(e as Error).message}`));
  }

  /** Leave it running after this process exits (`rehearse --keep`). */
  keep(): void {
    this.qemu?.detach();
  }

  /** qemu's PID, while it runs */
  get pid(): number | undefined {
    return this.qemu?.pid;
  }

  get running(): boolean {
    return !!this.qemu?.running || (!!this.fault && !this.faultNote && !this.stopped && !this.destroyed);
  }

  /** The serial console since (the last) power on, escape sequences removed. */
  console(): string {
    return this.qemu?.console() ?? '';
  }

  /** Wait until the serial console (from character `from` on) matches `re`. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<void> {
    if (!this.qemu) throw new Error(`${this.m.name} was never powered on`);
    await this.qemu.waitFor(re, timeoutMs, from);
  }

  /** Power off at once, as pulling the plug does: the monitor's `quit`. */
  async powerOff(): Promise<void> {
    this.stopped = true;
    const qemu = this.qemu;
    if (!qemu?.running) return;
    await qemu.monitor('quit').catch(() => qemu.child.kill('SIGKILL'));
    if (!(await qemu.waitExit(15_000))) qemu.child.kill('SIGKILL');
  }

  /** Press reset: the machine boots again through its firmware (network first). */
  async reset(): Promise<void> {
    if (!this.qemu) throw new Error(`${this.m.name} was never powered on`);
    await this.qemu.monitor('system_reset');
  }

  /** One command to QEMU's monitor (bond-failover cuts a NIC's wire with set_link). */
  async monitorCommand(cmd: string): Promise<void> {
    if (!this.qemu) throw new Error(`${this.m.name} was never powered on`);
    await this.qemu.monitor(cmd);
  }

  /** The netdev id of the VM's NIC with this MAC: n0 with its machine's MAC, n1... its other bond members. */
  netdevOf(mac: string): string | undefined {
    return mac.toLowerCase() === this.m.mac.toLowerCase() ? 'n0' : this.members.find((x) => x.mac === mac.toLowerCase())?.netdev;
  }

  /** The lab-side tap of the VM's NIC with this MAC (its machine's, or another bond member's). */
  tapOf(mac: string): string | undefined {
    return mac.toLowerCase() === this.m.mac.toLowerCase() ? this.o.tap : this.members.find((x) => x.mac === mac.toLowerCase())?.tap;
  }

  /**
   * Run a shell command on the serial console (the image logs root in there) and return
   * its output, framed by markers so the console's other chatter is left out.
   */
  async sh(command: string, timeoutMs = 60_000): Promise<string> {
    const qemu = this.qemu;
    if (!qemu) throw new Error(`${this.m.name} was never powered on`);
    const id = Math.random().toString(36).slice(2, 8);
    const begin = `@@B${id}@@`;
    const end = `@@E${id}@@`;
    // The markers are split in the typed line so the echo of the command never matches.
    // Kernel messages (dmesg -n 1) and systemd's status lines (SIGRTMIN+21 to PID 1) on
    // the console would land inside the output.
    qemu.write(`dmesg -n 1; kill -s RTMIN+21 1; echo "@@B""${id}@@"; ( ${command} ) 2>&1; echo "@@E""${id}@@"\n`);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const text = qemu.console();
      const b = text.lastIndexOf(begin);
      const e = text.lastIndexOf(end);
      if (b >= 0 && e > b) return text.slice(b + begin.length, e).replace(/\r\n/g, '\n').replace(/^\n/, '').trimEnd();
      if (!qemu.running) throw new Error(`${this.m.name} is off`);
      await sleep(250);
    }
    throw new Error(`${this.m.name}: no answer on the serial console to ${command.slice(0, 60)} in ${timeoutMs} ms`);
  }

  /** Failed services, each with its last log lines, read through the serial console. */
  async failedUnits(): Promise<FailedUnit[]> {
    try {
      const list = await this.sh('systemctl list-units --failed --plain --no-legend --no-pager | cut -d" " -f1', 60_000);
      const out = [];
      for (const unit of list.split('\n').map((l) => l.trim()).filter((u) => u.endsWith('.service'))) {
        out.push({ unit, logs: await this.sh(`journalctl -u ${unit} -n 12 --no-pager -o cat`, 60_000) });
      }
      return out;
    } catch {
      return [];
    }
  }

  /** Nothing to do on the way out: QEMU dies with this process (setpriv --pdeathsig), its tap with the lab's namespace. */
  destroyNow(): void {
    this.destroyed = true;
  }

  /** Kill qemu (by its PID) and remove its tap. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await this.fault;
    await this.qemu?.kill();
    delTap(this.o.hub, this.o.tap);
    for (const x of this.members) delTap(this.o.hub, x.tap);
  }
}

/**
 * Is the disk file blank: nothing allocated in it (a sparse file never written) and its
 * first MiB — where a partition table (MBR, or GPT's header) would be — all zeros?
 */
export function blankDisk(file: string): BlankDisk {
  const st = statSync(file);
  const head = Buffer.alloc(1024 * 1024);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const zeros = head.every((b) => b === 0);
  const allocated = st.blocks * 512;
  return {
    blank: zeros && allocated === 0,
    detail: `${st.size} bytes, ${allocated} allocated, first MiB ${zeros ? 'all zeros (no partition table)' : 'not zeros'}`,
  };
}

/** The partitions of a disk file, as sfdisk reads them (none: an empty list). */
export function partitions(file: string): { sectorSize: number; sectors: number; parts: { start: number; size: number; type: string; bootable?: boolean }[] } {
  const r = spawnSync('sfdisk', ['-J', file], { encoding: 'utf8', timeout: 30_000 });
  const sectors = Math.floor(statSync(file).size / 512);
  if (r.status !== 0) return { sectorSize: 512, sectors, parts: [] };
  const t = (JSON.parse(r.stdout) as { partitiontable: { sectorsize?: number; partitions?: { start: number; size: number; type: string; bootable?: boolean }[] } }).partitiontable;
  return { sectorSize: t.sectorsize ?? 512, sectors, parts: t.partitions ?? [] };
}

/**
 * A stray regular file at `path` of the root file system (the partition of type 83) in a
 * raw disk file, by debugfs (no mounting): what the directory held there goes first.
 */
function plantStrayFile(disk: string, path: string, dir: string): void {
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  const t = partitions(disk);
  const root = t.parts.find((p) => p.type === '83');
  if (!root) throw new Error(`no Linux partition on ${disk}`);
  const fs = `${disk}?offset=${root.start * t.sectorSize}`;
  const stray = join(dir, 'stray');
  writeFileSync(stray, 'planted by slipway rehearse --fault failing-unit\n');
  // what the image has there (the CNI plugins' directory holds Debian's symlinks) goes first
  const entries = run('debugfs', ['-R', `ls -p ${path}`, fs]).split('\n').map((l) => l.split('/')).filter((f) => f.length >= 6 && f[5] !== '.' && f[5] !== '..');
  if (entries.some((f) => f[2]!.startsWith('04'))) throw new Error(`${path} on the disk holds directories`);
  const cmds = [...entries.map((f) => `rm ${path}/${f[5]}`), `rmdir ${path}`, `write ${stray} ${path}`];
  writeFileSync(join(dir, 'debugfs.cmds'), cmds.join('\n') + '\n');
  run('debugfs', ['-w', '-f', join(dir, 'debugfs.cmds'), fs]);
  if (!/^\s*\d+\s+100644/m.test(run('debugfs', ['-R', `ls -l ${dirname(path)}`, fs]).split('\n').filter((l) => l.trim().endsWith(` ${basename(path)}`)).join('\n'))) {
    throw new Error(`could not plant a stray file at ${path}`);
  }
}
