// `npm run bench`: render a 1,000-machine cluster (3 control-plane + etcd, 997 workers)
// end to end — parse, validate, secrets, plan, encode, atomic write — and report wall
// time and peak RSS; then certificate generation against cfssl (bench/pki.bench.ts).
// Targets (figures, not test assertions): 1,000 machines < 3 s; faster than cfssl.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { benchPki, formatPkiBench } from './pki.bench.ts';
import { bigClusterFile } from '../test/helpers/spec.ts';

const MACHINES = Number(process.env.MACHINES ?? 1000);


// Creating ~34,000 small files dominates on a slow disk (seen here: ~0.5 ms per file on
// the VM's ext4, where `cp -a` of the same tree takes longer than the render). So the
// render is timed in tmpfs (/dev/shm) to measure Slipway itself, and on disk against
// `cp -a` of the very tree it wrote, the floor any tool writing those files has.
async function benchRender(base: string, label: string): Promise<void> {
  const dir = await mkdtemp(join(base, 'slipway-bench-'));
  try {
    const file = join(dir, 'big.yaml');
    await writeFile(file, bigClusterFile(MACHINES));
    const self = fileURLToPath(import.meta.url);
    // A child process per run (this file with --child) so peak RSS is the render's own.
    const once = (run: string) => {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [self, '--child', 'render', '-f', file, '-o', join(dir, 'out'), '--state', join(dir, 'state')], { encoding: 'utf8' });
      const ms = performance.now() - t0;
      if (r.status !== 0) throw new Error(`render failed: ${r.stderr}`);
      const rssKiB = Number(/maxRSS=(\d+)/.exec(r.stdout)?.[1]);
      console.log(`| ${label.padEnd(6)} | render ${MACHINES} machines, ${run.padEnd(28)} | ${ms.toFixed(0).padStart(6)} ms | ${(rssKiB / 1024).toFixed(0).padStart(4)} MiB |`);
      return ms;
    };
    once('cold (creates the PKI)');
    const warm = once('warm (reuses the state dir)');
    const t0 = performance.now();
    const cp = spawnSync('cp', ['-a', join(dir, 'out'), join(dir, 'copy')]);
    const cpMs = performance.now() - t0;
    if (cp.status === 0) console.log(`| ${label.padEnd(6)} | cp -a of the same tree (peer)${' '.repeat(19)} | ${cpMs.toFixed(0).padStart(6)} ms |          |   render/cp = ${(warm / cpMs).toFixed(2)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const { main } = await import('../src/cli/main.ts');
  const code = await main(process.argv.slice(3));
  console.log(`maxRSS=${process.resourceUsage().maxRSS}`);
  process.exitCode = code;
} else {
  console.log(`| where  | run${' '.repeat(46)} | wall      | peak RSS |\n|--------|${'-'.repeat(50)}|-----------|----------|`);
  if (existsSync('/dev/shm')) await benchRender('/dev/shm', 'tmpfs');
  await benchRender(tmpdir(), 'disk');
  console.log('');
  console.log(formatPkiBench(await benchPki()));
}
