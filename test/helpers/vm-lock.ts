// The test files that boot machines by the handful (QEMU under TCG, or the containers
// rehearsal's five Kubernetes machines) take turns: on two cores, two of them at once made
// every VM about twice as slow, and a CI run failed on a login that came after 300 s
// (the 5-VM rehearsal beside the vm-image test). Lighter files still run beside them.
//
// A turn is for one core or both. The files that run one small VM at a time (the
// installer's cases, the BMC-powered VM, the bond VM, the network boots of a test
// initramfs) take one core, so two of them may run at once, one per core; the files that
// run five machines or a control plane on 2 vCPUs take both. Two lock files are the two
// cores: a one-core turn holds either, a two-core turn holds both (always taken in the
// same order, so no two turns wait on each other).
//
// The locks are flock(1) (util-linux) on files in /run/lock, held by a child that lives
// until we close its stdin: released by release(), and by the kernel if this process
// dies, so no stale lock outlives a crashed test.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DIR = existsSync('/run/lock') ? '/run/lock' : tmpdir();
const CORES = [join(DIR, 'slipway-heavy-tests.lock'), join(DIR, 'slipway-heavy-tests.core2.lock')] as const;

// flock -E 75: "held by someone else" is told apart from the holder's own exit
const HOLD = `sh -c 'echo held; read _'`;
const ONE_CORE = `end=$(( $(date +%s) + $1 )); while [ "$(date +%s)" -lt "$end" ]; do for l in "$2" "$3"; do flock --nonblock -E 75 "$l" ${HOLD}; rc=$?; [ "$rc" -ne 75 ] && exit "$rc"; done; sleep 1; done; echo "both cores busy for $1 s" >&2; exit 75`;

/**
 * Wait (at most `timeoutMs`) for the heavy tests' turn on `cores` of the machine's two
 * cores (default both); call the result to give it back.
 */
export async function heavyTestTurn(what: string, timeoutMs = 45 * 60_000, o: { cores?: 1 | 2 } = {}): Promise<() => void> {
  const t0 = performance.now();
  const s = String(Math.ceil(timeoutMs / 1000));
  const argv = o.cores === 1
    ? ['sh', '-c', ONE_CORE, 'heavy-turn', s, ...CORES]
    : ['flock', '--exclusive', '--timeout', s, CORES[0], 'flock', '--exclusive', '--timeout', s, CORES[1], 'sh', '-c', 'echo held; read _'];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${what}: no turn at ${CORES.join(', ')} within ${timeoutMs} ms (exit ${code}: ${err.trim()})`)));
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
