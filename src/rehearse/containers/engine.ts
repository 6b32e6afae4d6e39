// `slipway rehearse --engine containers`: the whole cluster from the operator's file, as
// systemd-nspawn system containers on a private lab network, provisioned by the real
// `slipway serve`, then checked (see ../checks.ts) and torn down.
//
//   preflight (no side effects) → prepare (tree, render, assets, images) → lab + serve
//   → install (DHCP, ignition.json, Ignition) → boot → wait for Ready → checks → report
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdMembers, type Spec } from '../../spec/types.ts';
import { versionProfile } from '../../plan/versions.ts';
import { Lab } from '../lab/lab.ts';
import { openLab, prepare } from '../setup.ts';
import { Checks, type CheckResult } from '../checks.ts';
import { reportOk, type Report } from '../report.ts';
import { Progress, round } from '../progress.ts';
import { ADJUSTMENTS } from './adjustments.ts';
import { ContainerMachine, IGNITION_BIN } from './machine.ts';
import { SMOKE_BODY, SMOKE_IMAGE, SMOKE_PORT, writeRehearsalBundle } from './images.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const CACHE = process.env.SLIPWAY_CACHE ?? '/var/cache/slipway';

/** Bad input or a host that cannot rehearse: a clear message, nothing created. */
export class RehearseError extends Error {}

export interface RehearseOptions {
  file: string;
  spec: Spec;
  /** directory with kube-apiserver, kubelet, ... (default: the cached Debian-source build for the file's version) */
  binaries?: string;
  keep: boolean;
  /** seconds to wait for every node to be Ready */
  timeoutSeconds: number;
  /** progress lines */
  log: (line: string) => void;
  /** set when the operator interrupts: stop waiting and clean up */
  signal?: AbortSignal;
  /** machines to break on purpose, to see what a broken machine looks like (VM engine) */
  faults?: Record<string, Fault>;
}

/** wrong-mac: the machine's NIC has another MAC than the file says (a typo in the file). */
export type Fault = 'wrong-mac';
export const FAULTS: Fault[] = ['wrong-mac'];

const KUBE_BINARIES = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'kubectl'];

interface Tool {
  cmd: string;
  pkg: string;
  why: string;
}
const TOOLS: Tool[] = [
  { cmd: 'systemd-nspawn', pkg: 'systemd-container', why: 'boots each machine as a system container' },
  { cmd: 'ip', pkg: 'iproute2', why: 'makes the lab network namespaces' },
  { cmd: 'curl', pkg: 'curl', why: 'fetches from the provisioner inside the lab' },
  { cmd: '/bin/busybox', pkg: 'busybox-static', why: 'DHCP client for installing; the test images' },
  { cmd: IGNITION_BIN, pkg: 'ignition', why: 'applies each machine\'s ignition.json' },
  { cmd: 'etcdctl', pkg: 'etcd-client', why: 'checks the etcd cluster from the lab' },
  { cmd: 'debootstrap', pkg: 'debootstrap', why: 'builds the Debian tree the machines boot (once, cached)' },
  { cmd: 'nsenter', pkg: 'util-linux', why: 'looks inside the containers' },
];

function which(cmd: string): string | undefined {
  if (cmd.startsWith('/')) return existsSync(cmd) ? cmd : undefined;
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export const defaultBinaries = (version: string) => join(CACHE, 'kubernetes', version, 'bin');

/** Everything that can be checked before touching anything. */
export function preflight(o: { spec: Spec; binaries?: string; uid?: number }): { binaries: string; etcdctl: string } {
  if ((o.uid ?? process.getuid?.() ?? 0) !== 0) throw new RehearseError('slipway rehearse needs root (network namespaces, mounts, systemd-nspawn): run it with sudo');
  const missing = TOOLS.filter((t) => !which(t.cmd));
  if (missing.length) {
    throw new RehearseError(`missing tools: ${missing.map((t) => `${t.cmd} (Debian package ${t.pkg}: ${t.why})`).join('; ')}\n  install with: apt-get install ${[...new Set(missing.map((t) => t.pkg))].join(' ')}`);
  }
  const version = o.spec.kubernetesVersion;
  const binaries = o.binaries ?? defaultBinaries(version);
  if (!existsSync(binaries)) {
    throw new RehearseError(o.binaries ? `--binaries ${binaries}: no such directory` : `no Kubernetes binaries for ${version} in ${binaries}: pass --binaries DIR, or build them from Debian's source with scripts/build-kubernetes.sh ${version} (Debian 12 ships the v1.20.2 source)`);
  }
  const absent = KUBE_BINARIES.filter((b) => !existsSync(join(binaries, b)));
  if (absent.length) throw new RehearseError(`${binaries} lacks ${absent.join(', ')}`);
  for (const b of KUBE_BINARIES) {
    const r = spawnSync(join(binaries, b), b === 'kubectl' ? ['version', '--client', '--short'] : ['--version'], { encoding: 'utf8', timeout: 30_000 });
    const got = /v\d+\.\d+\.\d+\S*/.exec(r.stdout + r.stderr)?.[0];
    if (got !== version) throw new RehearseError(`${join(binaries, b)} is ${got ?? 'of unknown version'}, but the cluster file says kubernetesVersion: ${version}`);
  }
  if (o.spec.network.cni === 'flannel' && !existsSync(join(binaries, 'flanneld'))) {
    throw new RehearseError(`network.cni is flannel, but ${binaries} has no flanneld (Debian packages no flannel, and no release can be downloaded here): set network.cni: bridge in the cluster file, or put flanneld and cni/flannel into the binaries directory`);
  }
  return { binaries, etcdctl: which('etcdctl')! };
}

/** The Debian tree every machine boots (built once by the project script, then cached). */
function rehearsalTree(log: (l: string) => void): string {
  log('Debian tree: scripts/build-rehearsal-tree.sh (cached after the first build, ~80 s cold)');
  const r = spawnSync('bash', [join(REPO, 'scripts/build-rehearsal-tree.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 1_800_000 });
  const tree = r.stdout.trim().split('\n').pop();
  if (r.status !== 0 || !tree || !existsSync(tree)) throw new RehearseError(`could not build the Debian tree (scripts/build-rehearsal-tree.sh exited ${r.status})`);
  return tree;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


export async function rehearseContainers(o: RehearseOptions): Promise<Report> {
  const t0 = Date.now();
  const { spec, log } = o;
  const pre = preflight({ spec, binaries: o.binaries });
  const phases: { name: string; seconds: number }[] = [];
  let phaseStart = Date.now();
  const phase = (name: string) => {
    phases.push({ name, seconds: round(Date.now() - phaseStart) });
    phaseStart = Date.now();
  };
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
  // The lifecycle poller runs from install to the end; it must stop on every path out.
  let progress: Progress | undefined;
  const failed = new Map<string, { unit: string; logs: string }[]>();
  try {
    // --- prepare: the render (for the checks' credentials), assets, images ------------
    const p = await prepare(spec, pre.binaries, tree, run, (m) => new RehearseError(m));
    const { out } = p;
    notes.push(`binaries served to the machines from ${pre.binaries}${p.fromTree.length ? `; from the Debian tree: ${p.fromTree.join(', ')}` : ''}`);
    const bundle = join(run, 'images.bundle.tar');
    const images = await writeRehearsalBundle(bundle, { name: spec.name, kubernetesVersion: spec.kubernetesVersion }, versionProfile(spec.kubernetesVersion).pauseImage);
    notes.push(`images ${images.join(', ')} built from busybox-static into a bundle; serve offers it as the provisioner's registry and containerd pulls through its rendered mirror config`);
    notes.push('dns: CoreDNS is applied but its image cannot be obtained offline; the DNS check is not run');
    phase('prepare');

    // --- the lab and the provisioner ---------------------------------------------------
    let token: string;
    ({ lab, token } = await openLab(spec, o.file, p, run, log, ['--bundle', bundle]));
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
      lab, spec, out, kubectl: join(pre.binaries, 'kubectl'), etcdctl: pre.etcdctl, log, signal: o.signal,
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
    if (o.keep) {
      kept = true;
      lab.keep();
      for (const m of machines) m.keep();
      writeFileSync(join(run, 'README'), keptReadme(run, lab, machines));
      log(`kept: the lab and machines keep running; see ${join(run, 'README')}`);
    }
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
    if (!kept) await cleanup();
    report.seconds = round(Date.now() - t0);
  }
  return report;
}

function keptReadme(run: string, lab: Lab, machines: ContainerMachine[]): string {
  const lines = [
    `Rehearsal kept at ${run}`,
    `lab namespace: ${lab.hub.name} (slipway serve, pid ${lab.serve?.pid})`,
    `admin kubeconfig: ${run}/out/cluster/admin.conf`,
    '',
    'machines (look inside with: nsenter --target <PID 1> --all):',
    ...machines.map((m) => `  ${m.m.name}: namespace ${m.ns.name}, root ${m.root}`),
    '',
    'to remove everything: kill the systemd-nspawn and slipway serve processes, umount the roots,',
    `ip netns delete each namespace above, then rm -rf ${run}`,
  ];
  return lines.join('\n') + '\n';
}
