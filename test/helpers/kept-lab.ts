// A containers rehearsal kept with --keep, as its README describes it: where its lab's
// serve runs (the hub namespace), its state and assets, each machine's PID 1; and its
// removal by the README's PIDs, roots, namespaces and cgroups (never by process name),
// as test/rehearse.test.ts's --keep tests remove theirs.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface KeptLab {
  dir: string;
  hub: string;
  servePid: number;
  state: string;
  assets: string;
  /** machine name → its PID 1 (nsenter --target PID --all) */
  leaders: Map<string, number>;
}

export function readKeptLab(dir: string): KeptLab {
  const readme = readFileSync(join(dir, 'README'), 'utf8');
  const lab = /^lab namespace: (\S+) \(slipway serve, pid (\d+)\)/m.exec(readme);
  if (!lab) throw new Error(`${dir}/README names no lab namespace:\n${readme}`);
  const leaders = new Map<string, number>();
  for (const m of readme.matchAll(/^ {2}(\S+): namespace \S+, root \S+, systemd-nspawn pid \d+, its PID 1 pid (\d+)/gm)) leaders.set(m[1]!, Number(m[2]));
  return { dir, hub: lab[1]!, servePid: Number(lab[2]), state: join(dir, 'state'), assets: join(dir, 'assets'), leaders };
}

/** Runs a command inside a kept machine (all its namespaces), as the README says to look inside. */
export function inMachine(lab: KeptLab, machine: string, script: string, timeoutMs = 60_000): { code: number | null; out: string } {
  const pid = lab.leaders.get(machine);
  if (!pid) throw new Error(`no PID 1 for ${machine} in ${lab.dir}/README`);
  const r = spawnSync('nsenter', ['--target', String(pid), '--all', 'sh', '-c', script], { encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

/** Removes everything the README names, then the run directory. */
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
  for (const m of readme.matchAll(/(?:systemd-nspawn pid|slipway serve, pid) (\d+)/g)) kill(Number(m[1]));
  await new Promise((res) => setTimeout(res, 2000));
  for (const m of readme.matchAll(/root (\S+?),/g)) spawnSync('umount', ['-l', m[1]!]);
  for (const m of readme.matchAll(/namespace:? (slipway-rh-\S+?)[,\s]/g)) spawnSync('ip', ['netns', 'delete', m[1]!]);
  for (const cg of cgroups) spawnSync('find', [cg, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';']);
  rmSync(dir, { recursive: true, force: true });
}
