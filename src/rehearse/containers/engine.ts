// `slipway rehearse --engine containers`: the whole cluster from the operator's file, as
// systemd-nspawn system containers on a private lab network, provisioned by the real
// `slipway serve`, then checked (see ../checks.ts). The frame (run directory, lab,
// report, keep and cleanup) is ../runner.ts; this is what containers add to it:
//
//   prepare: the images bundle → per machine: a namespace on the lab bridge and an
//   overlay root → install (DHCP, ignition.json, Ignition, adjustments) → boot →
//   wait for Ready → the cluster's checks
import { join } from 'node:path';
import { etcdMembers, type Machine } from '../../spec/types.ts';
import { versionProfile } from '../../catalog/versions.ts';
import { lostMachineChecks } from '../checks.ts';
import { preflight, RehearseError, type RehearseOptions } from '../preflight.ts';
import { writeRehearsalBundle } from '../bundle.ts';
import type { Lab } from '../lab/lab.ts';
import type { Engine, LabRun, MachinesRun, Preflight, Run, Step } from '../engine.ts';
import { ADJUSTMENTS } from './adjustments.ts';
import { ContainerMachine } from './machine.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ContainersEngine implements Engine<ContainerMachine> {
  readonly name = 'containers';
  readonly adjustments = ADJUSTMENTS;
  readonly keptMachines = 'machines';
  readonly saysKeptRun = true;

  preflight(o: RehearseOptions): Preflight {
    if (o.noKubernetes) throw new RehearseError('the containers engine rehearses Kubernetes itself: --no-kubernetes goes with --engine vm');
    return preflight({ spec: o.spec, binaries: o.binaries });
  }

  /** The images (pause, smoke test) as a bundle serve offers as the provisioner's registry. */
  async prepare(r: Run): Promise<string[]> {
    const { spec, notes, prepared: p } = r;
    notes.push(`binaries served to the machines from ${r.pre.binaries}${p.fromTree.length ? `; from the Debian tree: ${p.fromTree.join(', ')}` : ''}`);
    const bundle = join(r.dir, 'images.bundle.tar');
    const images = await writeRehearsalBundle(bundle, { name: spec.name, kubernetesVersion: spec.kubernetesVersion }, versionProfile(spec.kubernetesVersion).pauseImage);
    notes.push(`images ${images.join(', ')} built from busybox-static into a bundle; serve offers it as the provisioner's registry and containerd pulls through its rendered mirror config`);
    notes.push('dns: CoreDNS is applied but its image cannot be obtained offline; the DNS check is not run');
    return ['--bundle', bundle];
  }

  machine(r: LabRun, m: Machine): ContainerMachine {
    const ns = r.lab.attach(m.name, m.mac, m.interface ?? 'eth0');
    const adjust = { defaultGateway: r.spec.provisioner.dhcp.router ? undefined : r.spec.provisioner.address };
    return new ContainerMachine({ machine: m, ns, tree: r.image.root, dir: join(r.dir, 'machines', m.name), provisionerURL: r.lab.provisionerURL, adjust });
  }

  /** All machines install and boot at once, as a rack powers on; then wait until every node is Ready. */
  async bringUp(r: MachinesRun<ContainerMachine>): Promise<void> {
    const { o, progress, machines } = r;
    progress.startPolling();
    await Promise.all(machines.map(async (cm) => {
      await cm.install();
      await cm.powerOn();
    }));
    r.phase('install+boot');

    const deadline = Date.now() + o.timeoutSeconds * 1000;
    let ready = new Set<string>();
    for (let i = 0; i < 10_000 && Date.now() < deadline && !o.signal?.aborted; i++) {
      ready = (await r.checks.readyNodes()) ?? ready;
      for (const n of ready) progress.mark(n, 'ready', 'node Ready');
      if (ready.size === r.spec.machines.length) break;
      if (machines.some((m) => !m.running)) break;
      await sleep(3_000);
    }
    r.phase('ready');
    if (o.signal?.aborted) throw new RehearseError('interrupted');
  }

  checks(r: MachinesRun<ContainerMachine>): Step[] {
    const { checks, spec } = r;
    return [
      { check: 'etcd-healthy', run: () => checks.etcdHealthy() },
      { check: 'api-via-vip', run: () => checks.apiViaVip() },
      { check: 'leader-election', run: () => checks.leaderElection() },
      { check: 'csr-auto-approved', run: () => checks.csrAutoApproved() },
      { check: 'nodes-ready', run: () => checks.nodesReady() },
      { check: 'smoke-nodeport', run: () => checks.smokeNodePort() },
      // Failures for the report are read before a check powers a machine off.
      { step: 'failed units', run: async () => {
        for (const cm of r.machines) r.failedUnits.set(cm.m.name, await cm.failedUnits());
      } },
      ...lostMachineChecks(checks, () => checks.vipFailover()),
      { check: 'dns', run: async () => ({ result: 'not-run', detail: `CoreDNS image ${versionProfile(spec.kubernetesVersion).coreDNSImage} cannot be obtained offline (put it in the bundle to run this check)` }) },
      { step: 'etcd note', run: async () => {
        if (etcdMembers(spec).length === 0) r.notes.push('no etcd machines in the file');
      } },
    ];
  }

  /** The machine whose own namespace has the VIP on an interface. */
  async vipHolder(r: MachinesRun<ContainerMachine>): Promise<string | undefined> {
    const vip = r.spec.controlPlane.vip;
    if (!vip) return undefined;
    for (const cm of r.machines) {
      if (!cm.running || cm.stopped) continue;
      const a = await cm.ns.exec('ip', ['-4', '-o', 'addr', 'show'], { timeoutMs: 5_000 });
      if (a.stdout.includes(` ${vip}/`)) return cm.m.name;
    }
    return undefined;
  }

  /** A Ready node (the wait above marks it). */
  ready(r: MachinesRun<ContainerMachine>, name: string): boolean {
    return r.progress.times.get(name)?.ready !== undefined;
  }

  /** Failed units as far as they can still be read (a rehearsal that stopped early too). */
  async lastLook(r: MachinesRun<ContainerMachine>): Promise<void> {
    for (const cm of r.machines) if (!r.failedUnits.has(cm.m.name) && cm.running) r.failedUnits.set(cm.m.name, await cm.failedUnits().catch(() => []));
  }

  keptReadme(dir: string, lab: Lab | undefined, machines: ContainerMachine[]): string {
    return keptReadme(dir, lab, machines, machines[0]?.tree);
  }
}

/** What a kept rehearsal's README needs of the lab and of each machine. */
type KeptLab = { hub: { name: string }; serve?: { pid?: number } };
export type KeptMachine = Pick<ContainerMachine, 'root' | 'pid' | 'leaderPid' | 'cgroupDirs'> & { m: { name: string }; ns: { name: string } };

/**
 * The README of a kept rehearsal: everything left running or mounted, and how to remove
 * it. `image`: the OS image root the machines are overlays on (kept.ts boots one more
 * machine of the file on it). kept.ts reads it back and rewrites it as machines change.
 */
export function keptReadme(run: string, lab: KeptLab | undefined, machines: KeptMachine[], image?: string): string {
  const lines = [
    `Rehearsal kept at ${run}`,
    lab ? `lab namespace: ${lab.hub.name} (slipway serve, pid ${lab.serve?.pid})` : 'lab namespace: - (not made yet)',
    `admin kubeconfig: ${run}/out/cluster/admin.conf`,
    ...(image ? [`OS image root: ${image}`] : []),
    '',
    'machines (look inside with: nsenter --target <PID 1> --all):',
    ...machines.map((m) => `  ${m.m.name}: namespace ${m.ns.name}, root ${m.root}, ${m.pid ? `systemd-nspawn pid ${m.pid}, its PID 1 pid ${m.leaderPid ?? '?'}` : 'systemd-nspawn not running (not started yet when the rehearsal exited, or stopped)'}`),
    '',
    `cgroups: ${machines.flatMap((m) => m.cgroupDirs).join(' ')}`,
    '',
    // A container still starting when the rehearsal exited has no PID 1 to name yet; its
    // cgroup (made before nspawn starts) holds every process it will have.
    'to remove everything: kill each container with all its processes (a PID 1 not named',
    'above included): echo 1 > <dir>/cgroup.kill for each cgroup2 directory above (the ones',
    'not under /sys/fs/cgroup/systemd/); kill slipway serve; umount the roots; ip netns',
    `delete each namespace above; rmdir the cgroups (deepest first); rm -rf ${run}`,
  ];
  return lines.join('\n') + '\n';
}
