// `slipway rehearse --engine containers`: the whole cluster from the operator's file, as
// systemd-nspawn system containers on a private lab network, provisioned by the real
// `slipway serve`, then checked (see ../checks.ts) and torn down.
//
//   preflight (no side effects) → prepare (tree, render, assets, images) → lab + serve
//   → install (DHCP, ignition.json, Ignition) → boot → wait for Ready → checks → report
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { etcdMembers } from '../../spec/types.ts';
import { versionProfile } from '../../plan/versions.ts';
import { Lab } from '../lab/lab.ts';
import { openLab, prepare } from '../setup.ts';
import { Checks, type CheckResult } from '../checks.ts';
import { phaseTimer, reportOk, type Report } from '../report.ts';
import { Progress, round } from '../progress.ts';
import { ADJUSTMENTS } from './adjustments.ts';
import { ContainerMachine } from './machine.ts';
import { preflight, rehearsalTree, RehearseError, type RehearseOptions } from '../preflight.ts';
import { SMOKE_BODY, SMOKE_IMAGE, SMOKE_PORT, writeRehearsalBundle } from '../bundle.ts';


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


export async function rehearseContainers(o: RehearseOptions): Promise<Report> {
  const t0 = Date.now();
  const { spec, log } = o;
  if (o.noKubernetes) throw new RehearseError('the containers engine rehearses Kubernetes itself: --no-kubernetes goes with --engine vm');
  const pre = preflight({ spec, binaries: o.binaries });
  const binaries = pre.binaries!; // always set without noKubernetes
  const { phases, phase } = phaseTimer();
  const notes: string[] = [];
  const report: Report = { engine: 'containers', kubernetesVersion: spec.kubernetesVersion, ok: false, seconds: 0, machines: [], checks: [], adjustments: ADJUSTMENTS, phases, notes };

  const tree = rehearsalTree(log);
  const run = mkdtempSync('/var/tmp/slipway-rehearsal-');
  log(`run directory ${run}${o.keep ? ' (kept)' : ''}`);
  let lab: Lab | undefined;
  const machines: ContainerMachine[] = [];
  const cleanup = async () => {
    await Promise.all(machines.map((m) => m.destroy().catch((e) => log(`cleanup ${m.m.name}: ${(e as Error).message}`))));
    await lab?.close().catch((e) => log(`cleanup lab: ${(e as Error).message}`));
    rmSync(run, { recursive: true, force: true });
  };
  let kept = false;
  // synchronous: it also runs on the way out
  const keepAll = () => {
    kept = true;
    lab?.keep();
    for (const m of machines) m.keep();
    writeFileSync(join(run, 'README'), keptReadme(run, lab, machines));
    log(`kept: the lab and machines keep running; see ${join(run, 'README')}`);
  };
  // A second Ctrl-C exits at once: what can be undone synchronously is, on the way out
  // (the lab's namespaces and what runs in them go by their own exit hook). Under --keep
  // all of it stays, as after one Ctrl-C (prepended: before the namespaces' hook).
  const onExit = () => {
    if (kept) return;
    if (o.keep) return keepAll();
    for (const m of machines) m.destroyNow();
    rmSync(run, { recursive: true, force: true });
  };
  process.prependListener('exit', onExit);
  // The lifecycle poller runs from install to the end; it must stop on every path out.
  let progress: Progress | undefined;
  const failed = new Map<string, { unit: string; logs: string }[]>();
  try {
    // --- prepare: the render (for the checks' credentials), assets, images ------------
    const p = await prepare(spec, binaries, tree, run, (m) => new RehearseError(m));
    const { out } = p;
    notes.push(`binaries served to the machines from ${binaries}${p.fromTree.length ? `; from the Debian tree: ${p.fromTree.join(', ')}` : ''}`);
    const bundle = join(run, 'images.bundle.tar');
    const images = await writeRehearsalBundle(bundle, { name: spec.name, kubernetesVersion: spec.kubernetesVersion }, versionProfile(spec.kubernetesVersion).pauseImage);
    notes.push(`images ${images.join(', ')} built from busybox-static into a bundle; serve offers it as the provisioner's registry and containerd pulls through its rendered mirror config`);
    notes.push('dns: CoreDNS is applied but its image cannot be obtained offline; the DNS check is not run');
    phase('prepare');

    // --- the lab and the provisioner ---------------------------------------------------
    let token: string;
    ({ lab, token } = await openLab(spec, o.file, p, run, log, ['--bundle', bundle], { consolePort: o.consolePort }));
    phase('lab');

    const adjust = { defaultGateway: spec.provisioner.dhcp.router ? undefined : spec.provisioner.address };
    for (const m of spec.machines) {
      const ns = lab.attach(m.name, m.mac, m.interface ?? 'eth0');
      const cm = new ContainerMachine({ machine: m, ns, tree, dir: join(run, 'machines', m.name), provisionerURL: lab.provisionerURL, adjust });
      machines.push(cm);
      cm.mount();
    }

    // Progress: the provisioner's lifecycle, as every machine reports it.
    progress = new Progress(lab, token, spec.machines.map((m) => m.name), log);
    progress.startPolling();

    // --- install and boot: all machines at once, as a rack powers on -------------------
    await Promise.all(machines.map(async (cm) => {
      await cm.install();
      await cm.boot();
    }));
    phase('install+boot');

    // --- wait until every node is Ready -------------------------------------------------
    const checks = new Checks({
      lab, spec, out, kubectl: join(binaries, 'kubectl'), etcdctl: pre.etcdctl, log, signal: o.signal,
      smoke: { ref: SMOKE_IMAGE, port: SMOKE_PORT, body: SMOKE_BODY },
      engine: {
        running: () => machines.filter((m) => m.running && !m.stopped).map((m) => m.m.name),
        powerOff: async (name) => {
          const cm = machines.find((m) => m.m.name === name);
          await cm?.powerOff();
        },
        vipHolder: async () => {
          const vip = spec.controlPlane.vip;
          if (!vip) return undefined;
          for (const cm of machines) {
            if (!cm.running || cm.stopped) continue;
            const a = await cm.ns.exec('ip', ['-4', '-o', 'addr', 'show'], { timeoutMs: 5_000 });
            if (a.stdout.includes(` ${vip}/`)) return cm.m.name;
          }
          return undefined;
        },
      },
    });
    const deadline = Date.now() + o.timeoutSeconds * 1000;
    let ready = new Set<string>();
    for (let i = 0; i < 10_000 && Date.now() < deadline && !o.signal?.aborted; i++) {
      ready = (await checks.readyNodes()) ?? ready;
      for (const n of ready) progress.mark(n, 'ready', 'node Ready');
      if (ready.size === spec.machines.length) break;
      if (machines.some((m) => !m.running)) break;
      await sleep(3_000);
    }
    phase('ready');
    if (o.signal?.aborted) throw new RehearseError('interrupted');

    // --- the checks -----------------------------------------------------------------------
    const results: CheckResult[] = [];
    results.push(await checks.run('etcd-healthy', () => checks.etcdHealthy()));
    results.push(await checks.run('api-via-vip', () => checks.apiViaVip()));
    results.push(await checks.run('leader-election', () => checks.leaderElection()));
    results.push(await checks.run('csr-auto-approved', () => checks.csrAutoApproved()));
    results.push(await checks.run('nodes-ready', () => checks.nodesReady()));
    results.push(await checks.run('smoke-nodeport', () => checks.smokeNodePort()));
    // Failures for the report are read before a check powers a machine off.
    for (const cm of machines) failed.set(cm.m.name, await cm.failedUnits());
    let stopped: string | undefined;
    results.push(await checks.run('vip-failover', async () => {
      const r = await checks.vipFailover();
      stopped = r.stopped;
      return r;
    }));
    results.push(await checks.run('etcd-member-loss', () => checks.etcdMemberLoss(stopped)));
    results.push(await checks.run('dns', async () => ({ result: 'not-run', detail: `CoreDNS image ${versionProfile(spec.kubernetesVersion).coreDNSImage} cannot be obtained offline (put it in the bundle to run this check)` })));
    phase('checks');

    report.checks = results;
    report.ok = reportOk(results);
    if (etcdMembers(spec).length === 0) notes.push('no etcd machines in the file');
  } catch (e) {
    report.error = (e as Error).message;
    if (e instanceof RehearseError && !lab) throw e;
  } finally {
    await progress?.stop();
    // Failed units as far as they can still be read (a rehearsal that stopped early too).
    for (const cm of machines) if (!failed.has(cm.m.name) && cm.running) failed.set(cm.m.name, await cm.failedUnits().catch(() => []));
    report.machines = spec.machines.map((m) => ({
      name: m.name,
      roles: m.roles,
      ready: progress?.times.get(m.name)?.ready !== undefined,
      state: progress?.states.get(m.name)?.state ?? 'unknown',
      reason: progress?.states.get(m.name)?.reason,
      seconds: progress?.times.get(m.name) ?? {},
      poweredOff: machines.find((c) => c.m.name === m.name)?.stopped || undefined,
      failedUnits: failed.get(m.name) ?? [],
    }));
    // --keep keeps everything, a failed or interrupted rehearsal's too: that is what it is for.
    if (o.keep) keepAll();
    else await cleanup();
    process.off('exit', onExit);
    report.seconds = round(Date.now() - t0);
  }
  return report;
}

/** What a kept rehearsal's README needs of the lab and of each machine. */
type KeptLab = { hub: { name: string }; serve?: { pid?: number } };
type KeptMachine = Pick<ContainerMachine, 'm' | 'root' | 'pid' | 'leaderPid' | 'cgroupDirs'> & { ns: { name: string } };

/** The README of a kept rehearsal: everything left running or mounted, and how to remove it. */
export function keptReadme(run: string, lab: KeptLab | undefined, machines: KeptMachine[]): string {
  const lines = [
    `Rehearsal kept at ${run}`,
    lab ? `lab namespace: ${lab.hub.name} (slipway serve, pid ${lab.serve?.pid})` : 'lab namespace: - (not made yet)',
    `admin kubeconfig: ${run}/out/cluster/admin.conf`,
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
