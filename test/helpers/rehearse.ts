// Running `slipway rehearse` from tests, and what a rehearsal could leave behind.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN } from './cli.ts';

/** What a rehearsal could leave behind, to compare before and after. */
export function leftovers(): { netns: string[]; mounts: string[]; runDirs: string[] } {
  const netns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith('slipway-rh-'));
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes('slipway-rehearsal-'));
  const runDirs = readdirSync('/var/tmp').filter((d) => d.startsWith('slipway-rehearsal-'));
  return { netns: netns.sort(), mounts, runDirs: runDirs.sort() };
}

/**
 * Cgroups a rehearsal's containers were given: below this process's own cgroup (the
 * rehearsal shares it) in the cgroup2 hierarchy and, on a hybrid host, where systemd
 * mirrors them in the v1 name=systemd one.
 */
export function leftoverCgroups(): string[] {
  const roots = existsSync('/sys/fs/cgroup/cgroup.controllers') ? ['/sys/fs/cgroup'] : ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/systemd'];
  const self = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1] ?? '/';
  const dirs = [...new Set(roots.flatMap((r) => [r, join(r, self)]))];
  return [...new Set(dirs.flatMap((d) => (existsSync(d) ? readdirSync(d) : []).filter((e) => e.startsWith('slipway-rehearsal-')).map((e) => join(d, e))))];
}

/** Leftover processes of a rehearsal: its QEMU VMs and systemd-nspawn containers (matched by the run directory). */
export function leftoverProcesses(): string {
  return spawnSync('pgrep', ['-a', '-f', '(qemu-system-x86_64|systemd-nspawn).*slipway-rehearsal-'], { encoding: 'utf8' }).stdout.trim();
}

/**
 * `slipway rehearse ARGS`, bounded by `timeoutMs` (then SIGINT, then SIGKILL). With
 * `interruptWhen`, SIGINT as the operator's Ctrl-C once stderr matches it (`twice`: a
 * second one 200 ms later, the impatient operator's).
 */
export function run(args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env, interruptWhen?: RegExp, twice = false): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (process.env.SLIPWAY_TEST_VERBOSE) process.stderr.write(d);
      if (interruptWhen?.test(stderr)) {
        interruptWhen = undefined;
        child.kill('SIGINT');
        if (twice) setTimeout(() => child.kill('SIGINT'), 200).unref();
      }
    });
    // SIGINT first: the rehearsal cleans up on it; SIGKILL if it does not finish.
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 90_000).unref();
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

