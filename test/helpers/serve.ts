// Run the real `slipway serve` inside a lab namespace (the provisioner at 10.20.30.2 on
// a bridge) and add "machines": namespaces with a machine's MAC and IP on that bridge.
// The lab is the rehearsal's own (src/rehearse/lab/lab.ts), under namespace names of the
// tests' own (rehearse.test.ts's leftovers checks look for the rehearsal's).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Netns } from './netns.ts';
import { EXAMPLE_HA } from './cli.ts';
import { Lab as RehearsalLab } from '../../src/rehearse/lab/lab.ts';
import { parseClusterFile } from '../../src/spec/parse.ts';

export class Lab {
  /** the rehearsal lab underneath: the hub, its bridge, serve, the machines' wires */
  readonly net: RehearsalLab;
  readonly dir: string;
  readonly file: string;
  readonly state: string;
  /** serve's output (the last 2 MB) */
  log = '';
  private hosts = 0;

  private constructor(net: RehearsalLab, dir: string, file: string) {
    this.net = net;
    this.dir = dir;
    this.file = file;
    this.state = join(dir, 'state');
  }

  /** A lab for `clusterYaml` (default: the bundled HA example); its files (serve's state included) under `parent`. */
  static create(clusterYaml = readFileSync(EXAMPLE_HA, 'utf8'), parent = tmpdir()): Lab {
    const dir = mkdtempSync(join(parent, 'slipway-lab-'));
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, clusterYaml);
    const { spec, problems } = parseClusterFile(clusterYaml, file);
    if (!spec) throw new Error(`the lab's cluster file is invalid: ${JSON.stringify(problems)}`);
    return new Lab(RehearsalLab.create(spec, 'slipway-lab', 'slipway-host'), dir, file);
  }

  get hub(): Netns {
    return this.net.hub;
  }

  /** serve, while it runs (a test that starts serve its own way sets it: stop() and close() then end it) */
  get serve(): ChildProcess | undefined {
    return this.net.serve;
  }

  set serve(child: ChildProcess | undefined) {
    this.net.serve = child;
  }

  /** Start `slipway serve` in the hub; resolves when /readyz says DHCP, TFTP and HTTP all serve. */
  async start(args: string[] = []): Promise<void> {
    await this.net.startServe({ file: this.file, state: this.state, args, rivalCheck: true, timeoutMs: 30_000, output: (d) => (this.log = (this.log + d).slice(-2_000_000)) });
  }

  async stop(): Promise<void> {
    await this.net.stopServe();
  }

  /** A machine on the lab bridge: its own namespace, NIC eth0 with this MAC and IP. */
  host(mac: string, ip: string): Netns {
    const ns = this.net.attach(`h${this.hosts++}`, mac);
    ns.addAddress('eth0', `${ip}/24`);
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
    await this.net.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
