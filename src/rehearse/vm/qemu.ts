// One machine of the VM rehearsal: qemu-system-x86_64 (KVM when /dev/kvm works, else
// TCG) with the machine's MAC on a virtio NIC whose tap is a port of the lab bridge, and
// a copy-on-write overlay of the rehearsal disk image. It network-boots through the
// NIC's iPXE ROM exactly as the rack machine would. Its serial console is a socket we
// read from power-on (and the root shell the checks look inside with); its monitor is a unix socket,
// so a check can power it off (`quit`) or press reset (`system_reset`).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Machine } from '../../spec/types.ts';
import type { Netns } from '../lab/netns.ts';
import type { FailedUnit, RehearsalMachine } from '../engine.ts';
import { BRIDGE } from '../lab/lab.ts';
import { plainConsole as plain } from './console-text.ts';

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
  const r = spawnSync('qemu-system-x86_64', ['-accel', 'kvm', '-M', 'q35', '-m', '256', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1', '-no-reboot'], { encoding: 'latin1', timeout: 20_000, killSignal: 'SIGKILL' });
  kvmProbe = /Linux version/.test(r.stdout ?? '');
  return kvmProbe;
}

export interface VmOptions {
  machine: Machine;
  hub: Netns;
  /** this machine's scratch directory */
  dir: string;
  /** the cached disk image (raw) the overlay is made over */
  baseDisk: string;
  memoryMiB: number;
  tap: string;
  /**
   * A fault: a stray regular file at this path of the disk's root filesystem (where the
   * image has an empty directory), as a disk left dirty by an earlier installation.
   */
  strayFileAt?: string;
  /** A blank disk of the same size instead of the image: a new machine nothing was installed on. */
  blankDisk?: boolean;
  /** KVM or software emulation (see kvmWorks) */
  accel: 'kvm' | 'tcg';
  /** it outlives this process (`rehearse --keep`: the VMs stay up for the operator to look into) */
  outlive?: boolean;
}

export class VmMachine implements RehearsalMachine {
  readonly m: Machine;
  readonly serialLog: string;
  private readonly o: VmOptions;
  private child?: ChildProcess;
  private exit?: Promise<void>;
  private readonly disk: string;
  private readonly monitor: string;
  private readonly serialSock: string;
  private serialConn?: Socket;
  /** everything the serial console sent since power on, exactly once (see powerOn) */
  private raw = '';
  private plainCache = { length: -1, text: '' };
  /** set when a check powered it off */
  stopped = false;
  startedAt = 0;

  constructor(o: VmOptions) {
    this.o = o;
    this.m = o.machine;
    this.serialLog = join(o.dir, 'serial.log');
    this.disk = join(o.dir, 'disk.qcow2');
    this.monitor = join(o.dir, 'monitor.sock');
    this.serialSock = join(o.dir, 'serial.sock');
  }

  /** The overlay disk and the tap; nothing runs yet. */
  create(): void {
    const base = this.o.strayFileAt ? this.dirtyCopy(this.o.strayFileAt) : this.o.baseDisk;
    const args = this.o.blankDisk ? [this.disk, String(statSync(this.o.baseDisk).size)] : ['-b', base, '-F', 'raw', this.disk];
    const r = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', ...args], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${this.m.name}: qemu-img create: ${r.stderr}`);
    const { hub, tap } = this.o;
    hub.ip('tuntap', 'add', tap, 'mode', 'tap');
    hub.setMaster(tap, BRIDGE);
    hub.up(tap);
  }

  /**
   * A sparse copy of the base disk with a stray file planted by debugfs on its root
   * filesystem (the partition labelled ROOT; no mounting): the fault `failing-unit`.
   */
  private dirtyCopy(path: string): string {
    const copy = join(this.o.dir, 'dirty-base.raw');
    const run = (cmd: string, args: string[]) => {
      const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
      if (r.status !== 0) throw new Error(`${this.m.name}: ${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
      return r.stdout;
    };
    run('cp', ['--sparse=always', this.o.baseDisk, copy]);
    const table = JSON.parse(run('sfdisk', ['-J', copy])) as { partitiontable: { sectorsize?: number; partitions: { start: number; type: string }[] } };
    const root = table.partitiontable.partitions.find((p) => p.type === '83');
    if (!root) throw new Error(`${this.m.name}: no Linux partition in ${this.o.baseDisk}`);
    const fs = `${copy}?offset=${root.start * (table.partitiontable.sectorsize ?? 512)}`;
    const stray = join(this.o.dir, 'stray');
    writeFileSync(stray, 'left on this disk by an earlier installation\n');
    // what the image has there (the CNI plugins' directory holds Debian's symlinks) goes first
    const entries = run('debugfs', ['-R', `ls -p ${path}`, fs]).split('\n').map((l) => l.split('/')).filter((f) => f.length >= 6 && f[5] !== '.' && f[5] !== '..');
    if (entries.some((f) => f[2]!.startsWith('04'))) throw new Error(`${this.m.name}: ${path} on the image holds directories`);
    const cmds = [...entries.map((f) => `rm ${path}/${f[5]}`), `rmdir ${path}`, `write ${stray} ${path}`];
    writeFileSync(join(this.o.dir, 'debugfs.cmds'), cmds.join('\n') + '\n');
    run('debugfs', ['-w', '-f', join(this.o.dir, 'debugfs.cmds'), fs]);
    if (!/^\s*\d+\s+100644/m.test(run('debugfs', ['-R', `ls -l ${dirname(path)}`, fs]).split('\n').filter((l) => l.trim().endsWith(` ${basename(path)}`)).join('\n'))) {
      throw new Error(`${this.m.name}: could not plant a stray file at ${path}`);
    }
    return copy;
  }

  /** Nothing before power on: the VM installs itself by network boot (DHCP → iPXE → Ignition). */
  async install(): Promise<void> {}

  /**
   * Power on, under the options' accel. The VM dies with this process unless `outlive`.
   * Resolves once we are connected to its serial console, before the guest runs.
   */
  async powerOn(): Promise<void> {
    const { accel, outlive } = this.o;
    const args = [
      ...(outlive ? [] : ['--pdeathsig', 'KILL']), 'qemu-system-x86_64',
      '-accel', accel, '-machine', 'q35', '-m', String(this.o.memoryMiB), '-smp', '1', '-name', this.m.name,
      // -nographic: SeaBIOS (and so iPXE) print to the serial console too.
      '-nographic',
      // The serial console: a socket we type into and read from. wait=on: the guest runs
      // only once we are connected, so we read all of it. What we parse is what the socket
      // delivered, not QEMU's logfile: when the reader is slow (EAGAIN) QEMU logs the
      // character and the UART sends it again, so the log can show it twice ("slippway").
      // The logfile stays for people, and for a kept VM after we are gone.
      '-chardev', `socket,id=ser0,path=${this.serialSock},server=on,wait=on,logfile=${this.serialLog}`, '-serial', 'chardev:ser0',
      '-monitor', `unix:${this.monitor},server=on,wait=off`,
      '-netdev', `tap,id=n0,ifname=${this.o.tap},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=n0,mac=${this.m.mac},bootindex=1`,
      '-drive', `file=${this.disk},if=none,id=d0,format=qcow2`, '-device', 'virtio-blk-pci,drive=d0,bootindex=2',
    ];
    // setpriv execs qemu (so the PID is qemu's) and has the kernel kill it if we die.
    const child = this.o.hub.spawn('setpriv', args, { stdio: ['ignore', 'ignore', outlive ? 'ignore' : 'pipe'] });
    this.child = child;
    this.exit = new Promise((r) => child.once('exit', () => r()));
    this.startedAt = Date.now();
    await this.connectConsole();
  }

  /** Connect to the serial console socket (QEMU makes it as it starts: bounded retries). */
  private async connectConsole(): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (let attempt = 0; ; attempt++) {
      try {
        this.serialConn = await new Promise<Socket>((resolve, reject) => {
          const sock = connect(this.serialSock);
          sock.once('connect', () => resolve(sock));
          sock.once('error', reject);
        });
        break;
      } catch (e) {
        if (!this.running || Date.now() > deadline || attempt > 200) throw new Error(`${this.m.name}: cannot connect to the serial console ${this.serialSock}: ${(e as Error).message}`);
        await sleep(100);
      }
    }
    this.serialConn.setEncoding('latin1').on('data', (d: string) => (this.raw += d));
    this.serialConn.on('error', () => {});
  }

  /** Leave it running after this process exits (`rehearse --keep`). */
  keep(): void {
    this.serialConn?.destroy();
    this.child?.unref();
  }

  /** qemu's PID, while it runs */
  get pid(): number | undefined {
    return this.running ? this.child!.pid : undefined;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The serial console since power on, escape sequences removed. */
  console(): string {
    if (this.plainCache.length !== this.raw.length) this.plainCache = { length: this.raw.length, text: plain(this.raw) };
    return this.plainCache.text;
  }

  /** Wait until the serial console (from character `from` on) matches `re`. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (re.test(this.console().slice(from))) return;
      if (!this.running) throw new Error(`${this.m.name} powered off before ${re}`);
      await sleep(500);
    }
    throw new Error(`${this.m.name}: no ${re} on the console after ${timeoutMs / 1000}s:\n${this.tail(15)}`);
  }

  tail(lines = 30): string {
    return this.console().split('\n').slice(-lines).join('\n');
  }

  /** One command to QEMU's monitor. */
  async monitorCommand(cmd: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const sock = connect(this.monitor);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`${this.m.name}: monitor did not answer`));
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

  /** Power off at once, as pulling the plug does: the monitor's `quit`. */
  async powerOff(): Promise<void> {
    this.stopped = true;
    if (!this.running) return;
    await this.monitorCommand('quit').catch(() => this.child?.kill('SIGKILL'));
    await Promise.race([this.exit, sleep(15_000)]);
    if (this.running) this.child!.kill('SIGKILL');
  }

  /** Press reset: the machine boots again through its firmware (network first). */
  async reset(): Promise<void> {
    await this.monitorCommand('system_reset');
  }

  /**
   * Run a shell command on the serial console (the image logs root in there) and return
   * its output, framed by markers so the console's other chatter is left out.
   */
  async sh(command: string, timeoutMs = 60_000): Promise<string> {
    const id = Math.random().toString(36).slice(2, 8);
    const begin = `@@B${id}@@`;
    const end = `@@E${id}@@`;
    // The markers are split in the typed line so the echo of the command never matches.
    // Kernel messages (dmesg -n 1) and systemd's status lines (SIGRTMIN+21 to PID 1) on
    // the console would land inside the output.
    const line = `dmesg -n 1; kill -s RTMIN+21 1; echo "@@B""${id}@@"; ( ${command} ) 2>&1; echo "@@E""${id}@@"\n`;
    this.consoleWrite(line);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const text = this.console();
      const b = text.lastIndexOf(begin);
      const e = text.lastIndexOf(end);
      if (b >= 0 && e > b) return text.slice(b + begin.length, e).replace(/\r\n/g, '\n').replace(/^\n/, '').trimEnd();
      if (!this.running) throw new Error(`${this.m.name} is off`);
      await sleep(250);
    }
    throw new Error(`${this.m.name}: no answer on the serial console to ${command.slice(0, 60)} in ${timeoutMs} ms`);
  }

  /** Type on the serial console. */
  private consoleWrite(text: string): void {
    if (!this.serialConn || this.serialConn.destroyed) throw new Error(`${this.m.name}: not connected to its serial console`);
    this.serialConn.write(text);
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
  destroyNow(): void {}

  /** Kill qemu (by its PID) and remove its tap. */
  async destroy(): Promise<void> {
    this.serialConn?.destroy();
    if (this.running) {
      this.child!.kill('SIGKILL');
      await Promise.race([this.exit, sleep(5_000)]);
    }
    try {
      this.o.hub.ip('link', 'del', this.o.tap);
    } catch {
      // the namespace, and the tap with it, may be gone
    }
  }
}
