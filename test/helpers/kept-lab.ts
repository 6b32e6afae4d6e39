// A containers rehearsal kept with --keep, as its README describes it: where its lab's
// serve runs (the hub namespace), its state and assets, each machine's PID 1; and its
// removal by the README's PIDs, roots, namespaces and cgroups (never by process name),
// as test/rehearse.test.ts's --keep tests remove theirs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine, Spec } from '../../src/spec/types.ts';
import { KeptRun, parseKeptReadme } from '../../src/rehearse/containers/kept.ts';

export interface KeptLab {
  dir: string;
  hub: string;
  servePid: number;
  state: string;
  assets: string;
  /** machine name → its PID 1 (nsenter --target PID --all) */
  leaders: Map<string, number>;
  /** machine name → its namespace */
  namespaces: Map<string, string>;
  /** machine name → its cgroup2 directory */
  cgroups: Map<string, string>;
  /** the cluster file the lab's serve reads (a reload re-reads it) */
  file: string;
}

export function readKeptLab(dir: string): KeptLab {
  const run = KeptRun.open(dir);
  const s = parseKeptReadme(readFileSync(join(dir, 'README'), 'utf8'));
  const leaders = new Map(s.machines.filter((m) => m.pid && m.leaderPid).map((m) => [m.name, m.leaderPid!] as [string, number]));
  const namespaces = new Map(s.machines.map((m) => [m.name, m.ns] as [string, string]));
  const cgroups = new Map(s.machines.flatMap((m) => m.cgroupDirs.filter((c) => !c.startsWith('/sys/fs/cgroup/systemd/')).map((c) => [m.name, c] as [string, string])));
  return { dir, hub: s.hub, servePid: s.servePid, state: join(dir, 'state'), assets: join(dir, 'assets'), leaders, namespaces, cgroups, file: run.clusterFile };
}

/** Reads the README again after kept.ts rewrote it (a machine added, powered off or on). */
function reread(lab: KeptLab): void {
  Object.assign(lab, readKeptLab(lab.dir));
}

/**
 * Powers a kept machine on again (a check powered it off): src/rehearse/containers/kept.ts,
 * the rehearsal's own nspawn command line in the machine's cgroup the README names (so its
 * removal still ends it); the README then names its new PIDs.
 */
export async function powerOnKept(lab: KeptLab, spec: Spec, machine: Machine): Promise<void> {
  await KeptRun.open(lab.dir).powerOn(spec, machine);
  reread(lab);
}

/** Powers a kept machine off (its PID 1 killed, its wire down); its root and namespace stay for the removal. */
export async function powerOffKept(lab: KeptLab, machine: Pick<Machine, 'name' | 'interface'>): Promise<void> {
  await KeptRun.open(lab.dir).powerOff(machine);
  reread(lab);
}

/**
 * One more machine of the file booted in the kept lab, as the rehearsal booted the others:
 * serve reloaded (SIGHUP) with it, then a new container installed through serve and powered
 * on (kept.ts). Resolves once its systemd runs; the seconds that took.
 */
export async function bootKept(lab: KeptLab, spec: Spec, machine: Machine): Promise<number> {
  const t0 = performance.now();
  const run = KeptRun.open(lab.dir);
  await run.reloadServe(spec, [machine.name]);
  try {
    await run.addMachine(spec, machine);
  } finally {
    reread(lab);
  }
  return (performance.now() - t0) / 1000;
}

/** Runs a command inside a kept machine (all its namespaces), as the README says to look inside. */
export function inMachine(lab: KeptLab, machine: string, script: string, timeoutMs = 60_000): { code: number | null; out: string } {
  const pid = lab.leaders.get(machine);
  if (!pid) throw new Error(`no PID 1 for ${machine} in ${lab.dir}/README`);
  const r = spawnSync('nsenter', ['--target', String(pid), '--all', 'sh', '-c', script], { encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

/** Removes everything the README names (by PID, never by name), then the run directory: a kept containers or VM rehearsal. */
export async function removeKeptLab(dir: string): Promise<void> {
  const readme = existsSync(join(dir, 'README')) ? readFileSync(join(dir, 'README'), 'utf8') : '';
  const kill = (pid: number) => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  };
  const cgroups = /^cgroups: (.*)$/m.exec(readme)?.[1]?.split(' ').filter(Boolean) ?? [];
  for (const cg of cgroups) if (existsSync(join(cg, 'cgroup.kill'))) writeFileSync(join(cg, 'cgroup.kill'), '1');
  for (const m of readme.matchAll(/(?:qemu pid|systemd-nspawn pid|slipway serve, pid) (\d+)/g)) kill(Number(m[1]));
  await new Promise((res) => setTimeout(res, 2000));
  for (const m of readme.matchAll(/root (\S+?),/g)) spawnSync('umount', ['-l', m[1]!]);
  for (const m of readme.matchAll(/namespace:? (slipway-rh-\S+?)[,\s]/g)) spawnSync('ip', ['netns', 'delete', m[1]!]);
  for (const cg of cgroups) spawnSync('find', [cg, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';']);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * /readyz through the VIP ten times a second from the lab's hub until finished (bounded:
 * 15 min); `name` keeps two probers' files apart.
 */
export function vipProber(lab: KeptLab, vip: string, name = 'prober') {
  const stop = join(lab.dir, `${name}.stop`);
  const log = join(lab.dir, `${name}.log`);
  const script = `i=0; while [ $i -lt 9000 ] && [ ! -e ${stop} ]; do curl -s -m 1 -o /dev/null -w '%{http_code}\\n' --cacert ${lab.state}/pki/ca.crt https://${vip}:6443/readyz >> ${log}; i=$((i+1)); sleep 0.1; done`;
  spawnSync('rm', ['-f', stop, log]);
  const child = spawn('ip', ['netns', 'exec', lab.hub, 'sh', '-c', script], { stdio: 'ignore' });
  return {
    /** failed and sent, and what the failures were: HTTP codes, 000 for no answer within 1 s, with counts */
    async finish(): Promise<{ failed: number; sent: number; kinds: string }> {
      writeFileSync(stop, '');
      await new Promise<void>((res) => (child.exitCode !== null ? res() : child.on('exit', () => res())));
      const codes = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
      const bad = codes.filter((c) => c !== '200');
      const kinds = [...new Set(bad)].map((c) => `${c}×${bad.filter((x) => x === c).length}`).join(', ');
      return { failed: bad.length, sent: codes.length, kinds };
    },
  };
}
