// The rehearsal lab every engine shares: a private network namespace (the "hub") with a
// bridge carrying the cluster file's provisioning subnet, the provisioner's address on
// it, the real `slipway serve` running there, and one wire per machine. Engines differ
// only in what sits at the machine end of the wire (a system container, a VM's tap).
//
// Nothing touches the host's own namespace: every link and address is created inside
// namespaces made here, and close() deletes them (processes first, by PID).
//
// The tests' lab (test/helpers/serve.ts) is this one, with namespaces of its own names.
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { provisionerURL, type Spec } from '../../spec/types.ts';
import { Netns } from './netns.ts';
import { startRouterAdverts } from './router-adverts.ts';

export const BRIDGE = 'br0';
const SLIPWAY_BIN = fileURLToPath(new URL('../../../bin/slipway.js', import.meta.url));

export interface ServeOptions {
  file: string;
  state: string;
  assets?: string;
  /** extra `slipway serve` arguments */
  args?: string[];
  /** where serve's log goes (a file, so serve outlives this process under --keep) */
  logFile?: string;
  /** instead of a file: serve's output, as it comes (serve then cannot outlive this process) */
  output?: (text: string) => void;
  /** serve's start-up check for another DHCP server (off: nothing else is on a lab's network) */
  rivalCheck?: boolean;
  timeoutMs?: number;
}

/** Something that lives and dies with the lab (the web console's forwarder). */
export interface LabPart {
  close(): Promise<void>;
  /** `rehearse --keep`: this process is about to end; stop what cannot outlive it, synchronously. */
  closeNow?(): void;
}

export class Lab {
  readonly hub: Netns;
  readonly spec: Spec;
  serve?: ChildProcess;
  private serveLogFile?: string;
  /** the end of serve's output, when it goes to `output` rather than a file */
  private serveOutput = '';
  private readonly machines = new Map<string, Netns>();
  private readonly parts: LabPart[] = [];
  private wires = 0;
  private readonly machinePrefix: string;

  private constructor(hub: Netns, spec: Spec, machinePrefix: string) {
    this.hub = hub;
    this.spec = spec;
    this.machinePrefix = machinePrefix;
  }

  /**
   * The hub namespace, its bridge, the provisioner's (and the router's) address on it.
   * `nsPrefix` names the namespace, `machinePrefix` the machines' (tests pick their own,
   * apart from real rehearsals').
   */
  static create(spec: Spec, nsPrefix = 'slipway-rh-lab', machinePrefix = 'slipway-rh'): Lab {
    const hub = Netns.create(nsPrefix);
    try {
      hub.addBridge(BRIDGE);
      const prefix = spec.provisioner.dhcp.subnet.prefix;
      hub.addAddress(BRIDGE, `${spec.provisioner.address}/${prefix}`);
      // The machines' rendered networks name a gateway: the lab plays that router (it
      // forwards nowhere), so their default route has a live next hop.
      const router = spec.provisioner.dhcp.router;
      if (router && router !== spec.provisioner.address) hub.addAddress(BRIDGE, `${router}/${prefix}`);
      return new Lab(hub, spec, machinePrefix);
    } catch (e) {
      void hub.close();
      throw e;
    }
  }

  get provisionerURL(): string {
    return provisionerURL(this.spec);
  }

  /** Start `slipway serve` in the hub; resolves once its /readyz answers. */
  async startServe(o: ServeOptions): Promise<void> {
    const args = [SLIPWAY_BIN, 'serve', '-f', o.file, '--state', o.state, ...(o.rivalCheck ? [] : ['--no-rival-check']), ...(o.assets ? ['--assets', o.assets] : []), ...(o.args ?? [])];
    let child: ChildProcess;
    if (o.output) {
      child = this.hub.spawn(process.execPath, args);
      const output = o.output;
      const add = (d: Buffer) => {
        output(d.toString());
        this.serveOutput = (this.serveOutput + d.toString()).slice(-4000);
      };
      child.stdout?.on('data', add);
      child.stderr?.on('data', add);
    } else {
      if (!o.logFile) throw new Error('startServe: a logFile or an output function');
      const fd = openSync(o.logFile, 'a', 0o600);
      child = this.hub.spawn(process.execPath, args, { stdio: ['ignore', fd, fd] });
      closeSync(fd);
    }
    this.serve = child;
    this.serveLogFile = o.logFile;
    await this.hub.waitFor('slipway serve /readyz', async () => {
      if (child.exitCode !== null) throw new Error(`slipway serve exited ${child.exitCode}:\n${this.serveLogTail()}`);
      return (await this.hub.exec('curl', ['-fsS', '-m', '2', `${this.provisionerURL}/readyz`], { timeoutMs: 5_000 })).code === 0;
    }, o.timeoutMs ?? 60_000, 250);
  }

  /** The end of serve's log, for error messages. */
  serveLogTail(bytes = 4000): string {
    try {
      return this.serveLogFile ? readFileSync(this.serveLogFile, 'utf8').slice(-bytes) : this.serveOutput.slice(-bytes);
    } catch {
      return '';
    }
  }

  async stopServe(): Promise<void> {
    if (this.serve) await this.hub.kill(this.serve);
    this.serve = undefined;
  }

  /**
   * A machine's own namespace wired to the lab bridge: a veth whose machine end is named
   * `ifname` and carries the machine's MAC. No address: the machine gets it the way it
   * would on the rack (DHCP while installing, its rendered network file afterwards).
   */
  attach(name: string, mac: string, ifname = 'eth0'): Netns {
    const ns = Netns.create(`${this.machinePrefix}-${name}`.slice(0, 26));
    try {
      const hubEnd = `lab${this.wires++}`;
      this.hub.addVeth(hubEnd, ifname, ns);
      this.hub.setMaster(hubEnd, BRIDGE);
      ns.ip('link', 'set', ifname, 'down');
      ns.ip('link', 'set', ifname, 'address', mac);
      ns.up(ifname);
      this.machines.set(name, ns);
      return ns;
    } catch (e) {
      void ns.close();
      throw e;
    }
  }

  /** Close `part` with the lab (first, before serve stops). */
  own(part: LabPart): void {
    this.parts.push(part);
  }

  /** Run a command in the hub (the provisioner's side of the lab). */
  exec(cmd: string, args: string[], timeoutMs = 30_000) {
    return this.hub.exec(cmd, args, { timeoutMs });
  }

  /** GET a provisioner API path with the operator token; undefined when it does not answer. */
  async api<T>(path: string, token: string): Promise<T | undefined> {
    const r = await this.hub.exec('curl', ['-fsS', '-m', '5', '-H', `Authorization: Bearer ${token}`, `${this.provisionerURL}${path}`], { timeoutMs: 8_000 });
    if (r.code !== 0) return undefined;
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      return undefined;
    }
  }

  /**
   * IPv6 router advertisements on the bridge, as a segment with a router has them
   * (router-adverts.ts): iPXE then starts at once instead of waiting ~16 s for IPv6 to
   * give up. False when radvd is not installed. Under --keep it stops with this process.
   */
  advertiseRouter(dir: string): boolean {
    const radvd = startRouterAdverts(this.hub, BRIDGE, dir);
    if (!radvd) return false;
    this.own({ close: () => this.hub.kill(radvd), closeNow: () => void radvd.kill('SIGKILL') });
    return true;
  }

  /** Leave the lab running after this process exits. */
  keep(): void {
    for (const p of this.parts.splice(0)) p.closeNow?.();
    for (const ns of this.machines.values()) ns.keep();
    this.hub.keep();
    this.serve?.unref();
  }

  async close(): Promise<void> {
    for (const p of this.parts.splice(0).reverse()) await p.close().catch(() => {});
    await this.stopServe();
    for (const ns of this.machines.values()) await ns.close();
    this.machines.clear();
    await this.hub.close();
  }
}
