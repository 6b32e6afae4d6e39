// Run the real `slipway serve` inside a lab namespace (the provisioner at 10.20.30.2 on
// a bridge) and add "machines": namespaces with a machine's MAC and IP on that bridge.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Netns } from './netns.ts';
import { BIN, EXAMPLE_HA } from './cli.ts';

export class Lab {
  readonly hub: Netns;
  readonly dir: string;
  readonly file: string;
  readonly state: string;
  serve?: ChildProcess;
  log = '';
  private readonly hosts: Netns[] = [];
  private vethCount = 0;

  private constructor(hub: Netns, dir: string, file: string) {
    this.hub = hub;
    this.dir = dir;
    this.file = file;
    this.state = join(dir, 'state');
  }

  /** A lab for `clusterYaml` (default: the bundled HA example). */
  static create(clusterYaml = readFileSync(EXAMPLE_HA, 'utf8')): Lab {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-lab-'));
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, clusterYaml);
    const hub = Netns.create('slipway-lab');
    hub.addBridge('br0');
    hub.addAddress('br0', '10.20.30.2/24');
    hub.up('br0');
    return new Lab(hub, dir, file);
  }

  /** Start `slipway serve` in the hub; resolves when /readyz says DHCP, TFTP and HTTP all serve. */
  async start(args: string[] = []): Promise<void> {
    const child = this.hub.spawn(process.execPath, [BIN, 'serve', '-f', this.file, '--state', this.state, ...args]);
    this.serve = child;
    const add = (d: Buffer) => (this.log = (this.log + d.toString()).slice(-2_000_000));
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
    await this.hub.waitFor('slipway serve /readyz', async () => {
      if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}:\n${this.log}`);
      return (await this.hub.exec('curl', ['-fsS', '-m', '2', 'http://10.20.30.2:8080/readyz'], { timeoutMs: 5_000 })).code === 0;
    }, 30_000, 250);
  }

  async stop(): Promise<void> {
    if (this.serve) await this.hub.kill(this.serve);
    this.serve = undefined;
  }

  /** A machine on the lab bridge: its own namespace, NIC eth0 with this MAC and IP. */
  host(mac: string, ip: string): Netns {
    const ns = Netns.create('slipway-host');
    const v = `h${this.vethCount++}`;
    this.hub.addVeth(v, 'eth0', ns);
    this.hub.setMaster(v, 'br0');
    ns.ip('link', 'set', 'eth0', 'down');
    ns.ip('link', 'set', 'eth0', 'address', mac);
    ns.up('eth0');
    ns.addAddress('eth0', `${ip}/24`);
    this.hosts.push(ns);
    return ns;
  }

  async removeHost(ns: Netns): Promise<void> {
    await ns.close();
    // the provisioner forgets the old neighbour, as it would after a real machine left
    await this.hub.exec('ip', ['neigh', 'flush', 'dev', 'br0']);
  }

  apiToken(): string {
    return readFileSync(join(this.state, 'api-token'), 'utf8').trim();
  }

  async close(): Promise<void> {
    await this.stop();
    for (const h of this.hosts) await h.close();
    await this.hub.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
