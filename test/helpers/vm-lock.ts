// The test files that boot machines by the handful (QEMU under TCG, or the containers
// rehearsal's five Kubernetes machines) take turns: on two cores, two of them at once made
// every VM about twice as slow, and a CI run failed on a login that came after 300 s
// (the 5-VM rehearsal beside the vm-image test). Lighter files still run beside them.
//
// The lock is flock(1) (util-linux) on a file in /run/lock, held by a child that lives
// until we close its stdin: released by release(), and by the kernel if this process
// dies, so no stale lock outlives a crashed test.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOCK = join(existsSync('/run/lock') ? '/run/lock' : tmpdir(), 'slipway-heavy-tests.lock');

/** Wait (at most `timeoutMs`) for the heavy tests' turn; call the result to give it back. */
export async function heavyTestTurn(what: string, timeoutMs = 45 * 60_000): Promise<() => void> {
  const t0 = performance.now();
  const child = spawn('flock', ['--exclusive', '--timeout', String(Math.ceil(timeoutMs / 1000)), LOCK, 'sh', '-c', 'echo held; read _'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${what}: no turn at ${LOCK} within ${timeoutMs} ms (flock exited ${code}: ${err.trim()})`)));
  });
  const waited = (performance.now() - t0) / 1000;
  if (waited > 1) console.log(`# ${what}: waited ${waited.toFixed(0)} s for another heavy test file to finish`);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    child.stdin.end();
  };
}
