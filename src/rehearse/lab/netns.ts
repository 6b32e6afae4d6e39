// Throwaway network namespaces: the rehearsal lab and the tests that need real interfaces
// and real daemons
// (kea-dhcp4 checks that its interface exists; an etcd cluster wants three addresses).
// Nothing here touches the root namespace's links, addresses or routes: every link is
// created inside the namespace (or moved between two test namespaces), and close()
// deletes the namespace, which takes its links and addresses with it.
//
//   const ns = Netns.create();
//   try {
//     ns.addDummy('eth0'); ns.addAddress('eth0', '10.20.30.2/24');
//     const r = await ns.exec('kea-dhcp4', ['-t', file]);
//     const daemon = ns.spawn('etcd', [...]);   // killed by close()
//   } finally { await ns.close(); }
//
// or `await withNetns(async (ns) => { ... })`. Every wait is bounded.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { randomLocalMac } from '../../lib/mac.ts';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout + stderr, for assertion messages */
  out: string;
}

const IP = 'ip';
const DEFAULT_TIMEOUT_MS = 30_000;

/** Namespaces this process created and has not deleted (or kept) yet, for the exit hook. */
const live = new Map<string, Netns>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test crashes past its finally, or an operator's second Ctrl-C
  // exits at once: only synchronous work is possible here. What runs in a namespace
  // (serve, say) is killed by PID first: deleting a namespace's name does not end it.
  process.on('exit', () => {
    for (const [name, ns] of live) {
      ns.killAllNow();
      spawnSync(IP, ['netns', 'delete', name], { timeout: 5_000 });
    }
  });
}

/** Run a setup command synchronously; throws with its output on failure. */
function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Linux interface names are at most 15 bytes. */
function checkIfname(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new Error(`bad interface name ${JSON.stringify(name)}`);
}

export class Netns {
  readonly name: string;
  private readonly children = new Set<ChildProcess>();
  private closed = false;

  private constructor(name: string) {
    this.name = name;
  }

  /** A fresh namespace named <prefix>-<random>, with its loopback up (daemons bind 127.0.0.1). */
  static create(prefix = 'slipway-t'): Netns {
    const name = `${prefix}-${randomBytes(4).toString('hex')}`;
    installExitHook();
    must(IP, ['netns', 'add', name]);
    const ns = new Netns(name);
    live.set(name, ns);
    try {
      ns.ip('link', 'set', 'lo', 'up');
    } catch (e) {
      ns.closeSync();
      throw e;
    }
    return ns;
  }

  /**
   * A namespace an earlier process made and left (a kept rehearsal's machine): this
   * process runs commands in it but never deletes it, not even on exit.
   */
  static adopt(name: string): Netns {
    must(IP, ['-n', name, 'link', 'show', 'lo']);
    const ns = new Netns(name);
    ns.closed = true;
    return ns;
  }

  /** `ip -n <ns> ...`, synchronously; returns stdout. */
  ip(...args: string[]): string {
    return must(IP, ['-n', this.name, ...args]);
  }

  /**
   * A link named `name` in this namespace, up. A dummy link where the kernel has the
   * dummy driver, else one end of a veth pair whose other end (`<name>p`, also up, so the
   * first end has carrier) stays in the namespace too.
   */
  addDummy(name: string): void {
    checkIfname(name);
    const r = spawnSync(IP, ['-n', this.name, 'link', 'add', name, 'type', 'dummy'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) {
      this.up(name);
      return;
    }
    const peer = `${name.slice(0, 14)}p`;
    this.addVeth(name, peer);
  }

  /**
   * A veth pair: `name` here, `peer` here or in `peerNs` (another test namespace). Both
   * ends up. This is how two namespaces get a wire between them.
   */
  addVeth(name: string, peer: string, peerNs?: Netns): void {
    checkIfname(name);
    checkIfname(peer);
    const args = ['link', 'add', name, 'type', 'veth', 'peer', 'name', peer];
    if (peerNs) args.push('netns', peerNs.name);
    this.ip(...args);
    this.up(name);
    (peerNs ?? this).up(peer);
  }

  /**
   * A bridge in this namespace, up; attach links with setMaster(). Its MAC address is
   * set, not inherited: a bridge left to itself takes the lowest MAC of its ports and
   * changes it as ports come and go, so a VM's tap joining or leaving would move the
   * provisioner's address to a new MAC, and every machine holding the old one in its
   * ARP cache would lose the provisioner for the cache's lifetime (~30 s).
   */
  addBridge(name: string): void {
    checkIfname(name);
    this.ip('link', 'add', name, 'address', randomLocalMac(), 'type', 'bridge');
    this.up(name);
  }

  setMaster(dev: string, bridge: string): void {
    this.ip('link', 'set', dev, 'master', bridge);
  }

  up(dev: string): void {
    this.ip('link', 'set', dev, 'up');
  }

  /** Add an address like "10.20.30.2/24" to a link of this namespace. */
  addAddress(dev: string, cidr: string): void {
    this.ip('address', 'add', cidr, 'dev', dev);
  }

  /** argv that runs `cmd args` inside this namespace */
  argv(cmd: string, args: string[]): string[] {
    return ['netns', 'exec', this.name, cmd, ...args];
  }

  /** Run a command inside the namespace to completion (killed after timeoutMs). Never rejects for a non-zero exit. */
  exec(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const child = spawn(IP, this.argv(cmd, args), { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => {
        stderr += `\n[netns] ${cmd} killed after ${timeoutMs} ms`;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, out: stdout + stderr });
      });
      // a command that exits without reading its input must not crash the test with EPIPE
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input ?? '');
    });
  }

  /**
   * Start a long-running process inside the namespace. `ip netns exec` execs the command,
   * so the ChildProcess's pid is the daemon's own; close() kills it by that pid.
   * stdout and stderr are pipes unless opts.stdio says otherwise: read them, or a chatty
   * daemon blocks once the pipe buffer is full.
   */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    if (this.closed) throw new Error(`netns ${this.name} is closed`);
    const child = spawn(IP, this.argv(cmd, args), { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Stop one spawned process: SIGTERM, then SIGKILL after graceMs. Resolves when it has exited. */
  async kill(child: ChildProcess, graceMs = 3_000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    // SIGKILL cannot be ignored; the extra bound only guards against a lost exit event.
    await Promise.race([exited, new Promise<void>((r) => setTimeout(r, graceMs + 2_000))]);
    clearTimeout(timer);
  }

  /** Poll `check` until it returns true, at most timeoutMs; throws on timeout with `what`. */
  async waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = DEFAULT_TIMEOUT_MS, everyMs = 200): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await check()) return;
      if (Date.now() >= deadline) throw new Error(`netns ${this.name}: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  /** SIGKILL every process spawned here, now (the exit hook). */
  killAllNow(): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }

  /** Leave this namespace and its processes in place when this process exits (`rehearse --keep`). */
  keep(): void {
    live.delete(this.name);
    this.closed = true;
  }

  /** Kill every spawned process (by pid), then delete the namespace. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.children].map((c) => this.kill(c)));
    this.closeSync();
  }

  private closeSync(): void {
    this.closed = true;
    for (const c of this.children) c.kill('SIGKILL');
    spawnSync(IP, ['netns', 'delete', this.name], { timeout: 10_000 });
    live.delete(this.name);
  }
}

/** Run fn with a fresh namespace that is always deleted afterwards. */
export async function withNetns<T>(fn: (ns: Netns) => Promise<T> | T, prefix?: string): Promise<T> {
  const ns = Netns.create(prefix);
  try {
    return await fn(ns);
  } finally {
    await ns.close();
  }
}
