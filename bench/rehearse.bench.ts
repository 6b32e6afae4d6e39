// Time to a Ready 5-machine HA cluster: `slipway rehearse --engine containers` on the HA
// example (3 control-plane + etcd behind a VIP, 2 workers), real v1.20.2 binaries, the
// Debian tree warm. Prints the per-phase and per-machine figures from the report, and
// the checks' own durations. Target: Ready in under 3 minutes on 2 cores (published:
// kubespray ~15 min for 10 nodes, Typhoon 10-15 min for 3). RUNS=n repeats.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printRehearsal, printTable } from './print.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const runs = Number(process.env.RUNS ?? 1);
const dir = mkdtempSync(join(tmpdir(), 'slipway-bench-rehearse-'));
try {
  // Warm the tree first so its one-time build is not counted.
  spawnSync('bash', [join(ROOT, 'scripts/build-rehearsal-tree.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const rows: string[][] = [['run', 'wall', 'install+boot', 'to all Ready', 'first Ready', 'last Ready', 'checks', 'vip failover', 'result']];
  for (let i = 1; i <= runs; i++) {
    const report = join(dir, `report-${i}.json`);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/slipway.js'), 'rehearse', '-f', join(ROOT, 'examples/rehearsal.yaml'), '--report', report], { encoding: 'utf8', timeout: 20 * 60_000 });
    const wall = (Date.now() - t0) / 1000;
    const rep = JSON.parse(readFileSync(report, 'utf8')) as {
      ok: boolean;
      phases: { name: string; seconds: number }[];
      machines: { name: string; seconds: { ready?: number } }[];
      checks: { name: string; result: string; seconds: number }[];
    };
    const phase = (n: string) => rep.phases.find((p) => p.name === n)?.seconds ?? NaN;
    const ready = rep.machines.map((m) => m.seconds.ready ?? NaN);
    const failover = rep.checks.find((c) => c.name === 'vip-failover');
    rows.push([
      String(i),
      `${wall.toFixed(1)} s`,
      `${phase('install+boot')} s`,
      `${(phase('prepare') + phase('lab') + phase('install+boot') + phase('ready')).toFixed(1)} s`,
      `${Math.min(...ready)} s`,
      `${Math.max(...ready)} s`,
      `${phase('checks')} s`,
      `${failover?.seconds ?? '-'} s`,
      rep.ok && r.status === 0 ? 'all checks ok' : `FAILED (exit ${r.status})`,
    ]);
    if (i === 1) {
      printRehearsal(rep);
    }
  }
  printTable(rows);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
