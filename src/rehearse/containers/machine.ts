// One machine of the containers rehearsal: a systemd-nspawn system container booting
// systemd from the OS image's root directory — the same build of Slipway's node OS the
// disk image real machines install holds (scripts/build-os-image.sh's root/) — read-only,
// under an overlay of its own, in its own network namespace wired to the lab bridge. It installs the way a rack machine does:
// DHCP from `slipway serve`, its own ignition.json fetched from serve (which checks the
// requester's IP and MAC), applied by the real Ignition; then it boots and its rendered
// units fetch the binaries, start, and report progress to serve.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from '../../spec/types.ts';
import type { Netns, ExecResult } from '../lab/netns.ts';
import type { RehearsalMachine } from '../engine.ts';
import { adjustRoot, nspawnCommand, type AdjustmentContext } from './adjustments.ts';

export const IGNITION_BIN = '/usr/lib/dracut/modules.d/30ignition/ignition';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// busybox udhcpc calls this with the lease in its environment; only `bound` matters here.
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew) ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
esac
`;

export interface MachineOptions {
  machine: Machine;
  ns: Netns;
  /** the OS image's root/ (lower, read-only) */
  tree: string;
  /** this machine's scratch directory */
  dir: string;
  provisionerURL: string;
  adjust: AdjustmentContext;
}

export class ContainerMachine implements RehearsalMachine {
  readonly m: Machine;
  readonly ns: Netns;
  readonly root: string;
  private readonly o: MachineOptions;
  private mounted = false;
  private nspawn?: ChildProcess;
  private leader?: number;
  private nspawnExit?: Promise<void>;
  private cgroup?: string;
  /** true after stop(): the machine was powered off on purpose */
  stopped = false;

  constructor(o: MachineOptions) {
    this.o = o;
    this.m = o.machine;
    this.ns = o.ns;
    this.root = join(o.dir, 'root');
  }

  /** the OS image's root it is an overlay on */
  get tree(): string {
    return this.o.tree;
  }

  get ifname(): string {
    return this.m.interface ?? 'eth0';
  }

  /** The machine's root: the OS image's root below, this machine's writes in an upper directory. */
  create(): void {
    const { dir, tree } = this.o;
    for (const d of ['upper', 'work', 'root', 'containerd']) mkdirSync(join(dir, d), { recursive: true });
    run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${tree},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`, this.root]);
    this.mounted = true;
  }

  /** DHCP, then the machine's ignition.json from serve, applied by the real Ignition (the provisioner times each step). */
  async install(): Promise<void> {
    const script = join(this.o.dir, 'udhcpc.script');
    writeFileSync(script, UDHCPC_SCRIPT, { mode: 0o755 });
    const dhcp = await this.ns.exec('/bin/busybox', ['udhcpc', '-i', this.ifname, '-f', '-q', '-n', '-t', '10', '-T', '2', '-s', script], { timeoutMs: 40_000 });
    if (dhcp.code !== 0) throw new Error(`${this.m.name}: no DHCP lease from the provisioner: ${tail(dhcp)}`);
    const config = join(this.o.dir, 'ignition.json');
    const fetch = await this.ns.exec('curl', ['-fsS', '--retry', '3', '--retry-connrefused', '-m', '20', '-o', config, `${this.o.provisionerURL}/machines/${this.m.name}/ignition.json`], { timeoutMs: 60_000 });
    if (fetch.code !== 0) throw new Error(`${this.m.name}: serve refused or failed its ignition.json: ${tail(fetch)}`);
    // The binary picks its mode from its name: ignition-apply writes a config into a root.
    const apply = join(this.o.dir, 'ignition-apply');
    if (!existsSync(apply)) run('ln', ['-s', IGNITION_BIN, apply]);
    const a = await this.ns.exec(apply, ['--ignore-unsupported', '--root', this.root, config], { timeoutMs: 120_000 });
    if (a.code !== 0) throw new Error(`${this.m.name}: Ignition failed: ${tail(a)}`);
    rmSync(config, { force: true }); // it holds the machine's keys; the machine has them now
    // The installer's address goes away: the machine's own network file configures it.
    this.ns.ip('-4', 'addr', 'flush', 'dev', this.ifname); // IPv4 only: networkd waits for the IPv6 link-local address
    adjustRoot(this.root, this.o.adjust);
  }

  /**
   * Power on: start systemd in the container; resolves once its PID 1 exists. `cgroup`:
   * the one it had before (a kept machine powered on again), else a new one.
   */
  async powerOn(cgroup?: string): Promise<void> {
    // Its own cgroup, joined before nspawn starts (see adjustment nspawn-own-cgroup).
    this.cgroup = cgroup ?? ownCgroup(this.m.name);
    const { argv, env } = nspawnCommand({ root: this.root, machine: this.m, netnsPath: `/run/netns/${this.ns.name}`, containerdDir: join(this.o.dir, 'containerd'), cgroup: this.cgroup });
    // The console goes to a file: the container must outlive this process under --keep.
    const fd = openSync(this.consoleLog, 'a', 0o600);
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.nspawn = child;
    this.nspawnExit = new Promise((r) => child.once('exit', () => r()));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${this.m.name}: systemd-nspawn exited ${child.exitCode} (console: ${this.consoleLog})`);
      this.leader = findLeader(child.pid!);
      if (this.leader) return;
      await sleep(200);
    }
    throw new Error(`${this.m.name}: no systemd inside the container after 60 s`);
  }

  /** Let the container outlive this process (`rehearse --keep`). */
  keep(): void {
    this.nspawn?.unref();
  }

  /** systemd-nspawn's PID, while it runs */
  get pid(): number | undefined {
    return this.running ? this.nspawn!.pid : undefined;
  }

  /** Its cgroup2 directory (and, on a hybrid host, systemd's v1 mirror of it) */
  get cgroupDirs(): string[] {
    if (!this.cgroup) return [];
    return this.cgroup.startsWith('/sys/fs/cgroup/unified/') ? [this.cgroup, `/sys/fs/cgroup/systemd/${this.cgroup.slice('/sys/fs/cgroup/unified/'.length)}`] : [this.cgroup];
  }

  /** The container's PID 1 (its systemd) as seen from the host, while it runs */
  get leaderPid(): number | undefined {
    return this.running ? (this.leader ?? findLeader(this.nspawn!.pid!)) : undefined;
  }

  get running(): boolean {
    return !!this.nspawn && this.nspawn.exitCode === null && this.nspawn.signalCode === null;
  }

  /** Run a command inside the container (all its namespaces). */
  inside(cmd: string, args: string[], timeoutMs = 30_000): Promise<ExecResult> {
    if (!this.leader || !this.running) return Promise.resolve({ code: null, signal: null, stdout: '', stderr: `${this.m.name} is not running`, out: `${this.m.name} is not running` });
    return execFile('nsenter', ['--target', String(this.leader), '--all', '--', cmd, ...args], timeoutMs);
  }

  /** A shell command line inside the container; its output. */
  async sh(command: string, timeoutMs = 30_000): Promise<string> {
    if (!this.running) throw new Error(`${this.m.name} is not running`);
    return (await this.inside('sh', ['-c', command], timeoutMs)).out.trimEnd();
  }

  /** What systemd-nspawn printed: the container's console. */
  console(): string {
    try {
      return readFileSync(this.consoleLog, 'latin1');
    } catch {
      return '';
    }
  }

  private get consoleLog(): string {
    return join(this.o.dir, 'console.log');
  }

  /** Failed units, each with its last log lines. */
  async failedUnits(lines = 15): Promise<{ unit: string; logs: string }[]> {
    const r = await this.inside('systemctl', ['list-units', '--failed', '--plain', '--no-legend', '--no-pager'], 10_000);
    const units = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((u) => u && u !== '●');
    const out = [];
    for (const unit of units) {
      const j = await this.inside('journalctl', ['-u', unit, '-n', String(lines), '--no-pager', '-o', 'cat'], 10_000);
      out.push({ unit, logs: j.stdout.trim() });
    }
    return out;
  }

  /**
   * Power off abruptly: kill the container's PID 1 (the kernel then kills everything in
   * its PID namespace) and pull its cable, as a machine losing power would.
   */
  async powerOff(): Promise<void> {
    this.stopped = true;
    if (this.leader) tryKill(this.leader, 'SIGKILL');
    try {
      this.ns.ip('link', 'set', this.ifname, 'down');
    } catch {
      // already gone
    }
    await this.waitExit(15_000);
    if (this.running) this.nspawn!.kill('SIGKILL');
    await this.waitExit(5_000);
  }

  /**
   * Throw the machine away: its PID 1 is killed (the kernel ends everything in its PID
   * namespace; nothing in a throwaway container needs an orderly shutdown), nspawn
   * exits, then its cgroup and root go.
   */
  async destroy(): Promise<void> {
    if (this.running) {
      if (this.leader) tryKill(this.leader, 'SIGKILL');
      await this.waitExit(10_000);
      if (this.running) this.nspawn!.kill('SIGKILL');
      await this.waitExit(5_000);
    }
    if (this.cgroup && !this.running) {
      removeCgroup(this.cgroupDirs);
      this.cgroup = undefined;
    }
    if (this.mounted) {
      const r = spawnSync('umount', [this.root], { timeout: 20_000 });
      if (r.status !== 0) spawnSync('umount', ['-l', this.root], { timeout: 20_000 });
      this.mounted = false;
    }
  }

  /**
   * destroy(), synchronously, for the exit hook (a second Ctrl-C exits at once): kill,
   * give the kernel a moment to empty the cgroup, unmount (lazily), remove the cgroup.
   */
  destroyNow(): void {
    if (this.running) {
      // the container's PID 1 first: killing nspawn alone would leave it running
      const leader = this.leaderPid;
      if (leader) tryKill(leader, 'SIGKILL');
      this.nspawn!.kill('SIGKILL');
    }
    if (this.mounted) {
      spawnSync('umount', ['-l', this.root], { timeout: 10_000 });
      this.mounted = false;
    }
    for (let i = 0; this.cgroup && i < 20; i++) {
      if (removeCgroup(this.cgroupDirs)) this.cgroup = undefined;
      else spawnSync('sleep', ['0.1']);
    }
  }

  private async waitExit(ms: number): Promise<void> {
    if (!this.nspawnExit || !this.running) return;
    await Promise.race([this.nspawnExit, sleep(ms)]);
  }
}

/**
 * A fresh cgroup2 directory below this process's own. `nspawn --keep-unit` runs the
 * container in the cgroup of whoever started it: without this, every machine's systemd
 * would build its slices in one shared directory and remove each other's unit cgroups
 * ("Failed to attach to cgroup ...: No such file or directory", status 219/CGROUP).
 */
function ownCgroup(name: string): string {
  const root = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
  if (!existsSync(join(root, 'cgroup.controllers'))) throw new Error('no cgroup2 hierarchy on this host (systemd-nspawn needs one for a unified hierarchy inside)');
  const self = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1] ?? '/';
  const dir = join(root, self, `slipway-rehearsal-${process.pid}-${name}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Remove a machine's cgroup: its cgroup2 tree and, on a hybrid host, the tree systemd
 * mirrors it to in the v1 name=systemd hierarchy (same path below /sys/fs/cgroup/systemd).
 */
function removeCgroup(dirs: string[]): boolean {
  return dirs.map(removeTree).every(Boolean);
}

/** A cgroup tree, deepest first (only empty cgroups can go; what still holds a process stays). */
function removeTree(dir: string): boolean {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeTree(join(dir, e.name));
    rmdirSync(dir);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT'; // else busy: still holds a process
  }
}

/** The container's PID 1 as seen from here: nspawn's child whose command is systemd. */
function findLeader(nspawnPid: number): number | undefined {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === nspawnPid && comm === 'systemd') return Number(pid);
    } catch {
      // raced with an exiting process
    }
  }
  return undefined;
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? ''}${r.stderr}`);
}

export function execFile(cmd: string, args: string[], timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n${cmd} killed after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: String(e), out: String(e) });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, out: stdout + stderr });
    });
  });
}

const tail = (r: ExecResult) => r.out.trim().split('\n').slice(-6).join('\n');
