// A containers rehearsal kept with `slipway rehearse --keep`, reopened by a later process
// from the README it left (engine.ts's keptReadme: the operator's list of everything to
// remove). Day 2 on the kept cluster needs its machines to come and go as a rack's do:
//
//   powerOff(m)          pull the plug (its PID 1 killed, its wire down)
//   powerOn(spec, m)     boot it again from its root as it is
//   addMachine(spec, m)  one more machine of the cluster file: a namespace wired to the
//                        lab bridge, an overlay on the same OS image root, installed
//                        through the lab's own serve (DHCP, its ignition.json applied by
//                        the real Ignition) and booted, as the rehearsal did the others
//   reloadServe(spec, …) SIGHUP: serve re-reads the file, and knows the new machines
//
// Every change is written back to the README at once (atomically), so removing the lab
// by it still removes everything, a machine added or powered off here included. Processes
// are ended by their PIDs from the README, each checked to be what the README says first.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { provisionerURL, type Machine, type Spec } from '../../spec/types.ts';
import { Netns } from '../lab/netns.ts';
import { BRIDGE } from '../lab/lab.ts';
import { ContainerMachine } from './machine.ts';
import { keptReadme } from './engine.ts';

export class KeptRunError extends Error {}

/** One machine as the README lists it. */
export interface KeptEntry {
  name: string;
  /** its network namespace */
  ns: string;
  root: string;
  /** systemd-nspawn's PID while it runs */
  pid?: number;
  /** the container's PID 1 (its systemd) as seen from the host */
  leaderPid?: number;
  cgroupDirs: string[];
}

export interface KeptState {
  run: string;
  /** the lab's hub namespace, where serve runs */
  hub: string;
  servePid: number;
  /** the OS image root the machines are overlays on (absent in READMEs of older runs) */
  image?: string;
  machines: KeptEntry[];
}

/** What a kept containers rehearsal's README says (the inverse of keptReadme). */
export function parseKeptReadme(text: string): KeptState {
  const run = /^Rehearsal kept at (\S+)$/m.exec(text)?.[1];
  const lab = /^lab namespace: (\S+) \(slipway serve, pid (\d+)\)$/m.exec(text);
  if (!run || !lab) throw new KeptRunError('not the README of a kept rehearsal with a lab (no "Rehearsal kept at" or "lab namespace" line)');
  const cgroups = /^cgroups: (.*)$/m.exec(text)?.[1]?.split(' ').filter(Boolean) ?? [];
  const machines = [...text.matchAll(/^ {2}(\S+): namespace (\S+), root (\S+), systemd-nspawn (?:pid (\d+), its PID 1 pid (\d+|\?)|not running\b.*)$/gm)].map((m) => ({
    name: m[1]!,
    ns: m[2]!,
    root: m[3]!,
    pid: m[4] ? Number(m[4]) : undefined,
    leaderPid: m[5] && m[5] !== '?' ? Number(m[5]) : undefined,
    // engine's ownCgroup: slipway-rehearsal-<pid>-<machine>, in cgroup2 (and systemd's v1 mirror)
    cgroupDirs: cgroups.filter((c) => basename(c).replace(/^slipway-rehearsal-\d+-/, '') === m[1]),
  }));
  return { run, hub: lab[1]!, servePid: Number(lab[2]), image: /^OS image root: (\S+)$/m.exec(text)?.[1], machines };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A process's command name and state ('Z': exited, not reaped), or undefined when it is gone. */
function proc(pid: number): { comm: string; state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const [state, ppid] = stat.slice(close + 2).split(' ');
    return { comm: stat.slice(stat.indexOf('(') + 1, close), state: state!, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

const isNspawn = (pid: number | undefined): boolean => {
  const p = pid ? proc(pid) : undefined;
  return !!p && p.state !== 'Z' && p.comm === 'systemd-nspawn';
};

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

export class KeptRun {
  readonly dir: string;
  private readonly s: KeptState;

  private constructor(dir: string, s: KeptState) {
    this.dir = dir;
    this.s = s;
  }

  static open(dir: string): KeptRun {
    const file = join(dir, 'README');
    if (!existsSync(file)) throw new KeptRunError(`${dir}: no README: not a kept rehearsal`);
    try {
      return new KeptRun(dir, parseKeptReadme(readFileSync(file, 'utf8')));
    } catch (e) {
      throw new KeptRunError(`${file}: ${(e as Error).message}`);
    }
  }

  get hub(): string {
    return this.s.hub;
  }

  get machines(): readonly KeptEntry[] {
    return this.s.machines;
  }

  /** Is its container running (the README's systemd-nspawn PID is still one)? */
  running(name: string): boolean {
    return isNspawn(this.entry(name).pid);
  }

  /** The cluster file the lab's serve reads (its -f): what a reload re-reads. */
  get clusterFile(): string {
    const argv = this.serveArgv();
    return argv[argv.indexOf('-f') + 1]!;
  }

  /** serve's command line; throws unless the README's serve PID is this run's serve. */
  private serveArgv(): string[] {
    let argv: string[] = [];
    try {
      argv = readFileSync(`/proc/${this.s.servePid}/cmdline`, 'utf8').split('\0');
    } catch {
      // gone
    }
    const ok = argv.includes('serve') && argv.indexOf('-f') > 0 && argv[argv.indexOf('--state') + 1] === join(this.dir, 'state');
    if (!ok) throw new KeptRunError(`slipway serve of ${this.dir} (pid ${this.s.servePid}) is not running`);
    return argv;
  }

  /**
   * serve re-reads its cluster file (SIGHUP); resolves once its API knows every machine of
   * `names` (a file it refuses changes nothing: then this times out, with serve's log).
   */
  async reloadServe(spec: Spec, names: string[], timeoutMs = 30_000): Promise<void> {
    this.serveArgv();
    process.kill(this.s.servePid, 'SIGHUP');
    const hub = Netns.adopt(this.s.hub);
    const token = readFileSync(join(this.dir, 'state/api-token'), 'utf8').trim();
    const t0 = Date.now();
    const left = new Set(names);
    for (let i = 0; i < 300 && left.size && Date.now() - t0 < timeoutMs; i++) {
      for (const n of [...left]) {
        // the token on curl's stdin (a config line), not its command line
        const r = await hub.exec('curl', ['-fsS', '-m', '2', '-o', '/dev/null', '-K', '-', `${provisionerURL(spec)}/api/v1/machines/${n}`], { input: `header = "Authorization: Bearer ${token}"\n`, timeoutMs: 5_000 });
        if (r.code === 0) left.delete(n);
      }
      if (left.size) await sleep(250);
    }
    if (left.size) {
      const log = existsSync(join(this.dir, 'serve.log')) ? readFileSync(join(this.dir, 'serve.log'), 'utf8').slice(-2000) : '';
      throw new KeptRunError(`serve did not take ${[...left].join(', ')} from ${this.clusterFile} within ${timeoutMs / 1000} s of SIGHUP; its log ends:\n${log}`);
    }
  }

  /**
   * One more machine of the file, in this lab: wired to the bridge, made, installed
   * through serve (reloaded with the machine first: reloadServe) and powered on; resolves
   * once its systemd runs. What it made is in the README as soon as it exists.
   */
  async addMachine(spec: Spec, m: Machine): Promise<void> {
    if (this.s.machines.some((x) => x.name === m.name)) throw new KeptRunError(`${m.name} is already a machine of ${this.dir}`);
    if (!this.s.image) throw new KeptRunError(`${this.dir}/README names no OS image root (kept by an older Slipway): no machine can be added`);
    const hub = Netns.adopt(this.s.hub);
    const ifname = m.interface ?? 'eth0';
    const ns = Netns.create(`slipway-rh-${m.name}`.slice(0, 26));
    let cm: ContainerMachine;
    try {
      // the wire, as Lab.attach makes it: the machine's end named as its NIC, with its MAC
      const hubEnd = this.freeHubEnd(hub);
      ns.ip('link', 'add', ifname, 'address', m.mac, 'type', 'veth', 'peer', 'name', hubEnd, 'netns', hub.name);
      hub.setMaster(hubEnd, BRIDGE);
      hub.up(hubEnd);
      ns.up(ifname);
      cm = this.container(spec, m, ns);
      cm.create();
    } catch (e) {
      await ns.close();
      throw e;
    }
    const entry: KeptEntry = { name: m.name, ns: ns.name, root: cm.root, cgroupDirs: [] };
    this.s.machines.push(entry);
    this.writeReadme();
    ns.keep();
    try {
      await cm.install();
      await cm.powerOn();
      cm.keep();
    } finally {
      Object.assign(entry, { pid: cm.pid, leaderPid: cm.leaderPid, cgroupDirs: cm.cgroupDirs });
      this.writeReadme();
    }
  }

  /** Boot a kept machine that is off again, from its root as it is, in the cgroup it had. */
  async powerOn(spec: Spec, m: Machine): Promise<void> {
    const e = this.entry(m.name);
    if (isNspawn(e.pid)) throw new KeptRunError(`${m.name} is running (systemd-nspawn pid ${e.pid})`);
    const ns = Netns.adopt(e.ns);
    ns.up(m.interface ?? 'eth0'); // powerOff took its wire down
    const cm = this.container(spec, m, ns);
    try {
      await cm.powerOn(e.cgroupDirs.find((c) => !c.startsWith('/sys/fs/cgroup/systemd/')));
      cm.keep();
    } finally {
      Object.assign(e, { pid: cm.pid, leaderPid: cm.leaderPid, cgroupDirs: cm.cgroupDirs.length ? cm.cgroupDirs : e.cgroupDirs });
      this.writeReadme();
    }
  }

  /**
   * Power off at once, as pulling the plug does: the container's PID 1 is killed (the
   * kernel ends everything in its PID namespace) and its wire goes down. Its root,
   * namespace and cgroup stay, for powerOn or the README's removal.
   */
  async powerOff(m: Pick<Machine, 'name' | 'interface'>): Promise<void> {
    const e = this.entry(m.name);
    if (isNspawn(e.pid)) {
      const leader = e.leaderPid ? proc(e.leaderPid) : undefined;
      if (leader && leader.ppid === e.pid && leader.comm === 'systemd') kill(e.leaderPid!);
      spawnSync('ip', ['-n', e.ns, 'link', 'set', m.interface ?? 'eth0', 'down'], { timeout: 10_000 });
      for (let i = 0; i < 150 && isNspawn(e.pid); i++) await sleep(100);
      if (isNspawn(e.pid)) kill(e.pid!);
      for (let i = 0; i < 50 && isNspawn(e.pid); i++) await sleep(100);
      if (isNspawn(e.pid)) throw new KeptRunError(`${m.name}: systemd-nspawn (pid ${e.pid}) did not exit`);
    }
    e.pid = undefined;
    e.leaderPid = undefined;
    this.writeReadme();
  }

  private entry(name: string): KeptEntry {
    const e = this.s.machines.find((x) => x.name === name);
    if (!e) throw new KeptRunError(`${name} is not a machine of ${this.dir} (its README lists ${this.s.machines.map((x) => x.name).join(', ')})`);
    return e;
  }

  private container(spec: Spec, m: Machine, ns: Netns): ContainerMachine {
    const adjust = { defaultGateway: spec.provisioner.dhcp.router ? undefined : spec.provisioner.address };
    return new ContainerMachine({ machine: m, ns, tree: this.s.image ?? '', dir: join(this.dir, 'machines', m.name), provisionerURL: provisionerURL(spec), adjust });
  }

  /** The hub's end of a new wire: Lab.attach named the first N lab0..lab<N-1>. */
  private freeHubEnd(hub: Netns): string {
    for (let i = this.s.machines.length; i < this.s.machines.length + 100; i++) {
      if (spawnSync('ip', ['-n', hub.name, 'link', 'show', `lab${i}`], { stdio: 'ignore', timeout: 10_000 }).status !== 0) return `lab${i}`;
    }
    throw new KeptRunError(`no free lab<N> link name in ${hub.name}`);
  }

  private writeReadme(): void {
    const machines = this.s.machines.map((e) => ({ m: { name: e.name }, ns: { name: e.ns }, root: e.root, pid: e.pid, leaderPid: e.leaderPid, cgroupDirs: e.cgroupDirs }));
    const file = join(this.dir, 'README');
    writeFileSync(`${file}.tmp`, keptReadme(this.s.run, { hub: { name: this.s.hub }, serve: { pid: this.s.servePid } }, machines, this.s.image));
    renameSync(`${file}.tmp`, file);
  }
}
