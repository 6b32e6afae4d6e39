// A containers rehearsal kept with --keep, as its README describes it: where its lab's
// serve runs (the hub namespace), its state and assets, each machine's PID 1; and its
// removal by the README's PIDs, roots, namespaces and cgroups (never by process name),
// as test/rehearse.test.ts's --keep tests remove theirs.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from '../../src/spec/types.ts';
import { nspawnCommand } from '../../src/rehearse/containers/adjustments.ts';

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
}

export function readKeptLab(dir: string): KeptLab {
  const readme = readFileSync(join(dir, 'README'), 'utf8');
  const lab = /^lab namespace: (\S+) \(slipway serve, pid (\d+)\)/m.exec(readme);
  if (!lab) throw new Error(`${dir}/README names no lab namespace:\n${readme}`);
  const leaders = new Map<string, number>();
  for (const m of readme.matchAll(/^ {2}(\S+): namespace \S+, root \S+, systemd-nspawn pid \d+, its PID 1 pid (\d+)/gm)) leaders.set(m[1]!, Number(m[2]));
  const namespaces = new Map([...readme.matchAll(/^ {2}(\S+): namespace (\S+),/gm)].map((m) => [m[1]!, m[2]!] as [string, string]));
  const cgroups = new Map<string, string>();
  for (const cg of /^cgroups: (.*)$/m.exec(readme)?.[1]?.split(' ').filter((c) => c && !c.startsWith('/sys/fs/cgroup/systemd/')) ?? []) cgroups.set(/-([^-]+)$/.exec(cg)![1]!, cg);
  return { dir, hub: lab[1]!, servePid: Number(lab[2]), state: join(dir, 'state'), assets: join(dir, 'assets'), leaders, namespaces, cgroups };
}

/**
 * Powers a kept machine on again (a check powered it off): the rehearsal's own nspawn
 * command line, in the machine's cgroup the README names (so its removal still ends it).
 */
export async function powerOnKept(lab: KeptLab, machine: Machine): Promise<void> {
  const ns = lab.namespaces.get(machine.name);
  const cgroup = lab.cgroups.get(machine.name);
  if (!ns || !cgroup) throw new Error(`${machine.name}: no namespace or cgroup in ${lab.dir}/README`);
  spawnSync('ip', ['-n', ns, 'link', 'set', machine.interface ?? 'eth0', 'up']);
  const dir = join(lab.dir, 'machines', machine.name);
  const { argv, env } = nspawnCommand({ root: join(dir, 'root'), machine, netnsPath: `/run/netns/${ns}`, containerdDir: join(dir, 'containerd'), cgroup });
  const fd = openSync(join(dir, 'console.log'), 'a', 0o600);
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  child.unref();
  // its PID 1: nspawn's child running systemd
  for (let i = 0; i < 300; i++) {
    const kids = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(child.pid) && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'systemd';
      } catch {
        return false;
      }
    });
    if (kids.length) {
      lab.leaders.set(machine.name, Number(kids[0]));
      return;
    }
    if (child.exitCode !== null) throw new Error(`${machine.name}: systemd-nspawn exited ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${machine.name}: no systemd in the container after 60 s`);
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
