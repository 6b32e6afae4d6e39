// Day 2 on a live cluster: the containers rehearsal of the HA example (real Kubernetes
// v1.20.2, etcd 3.4, sshd) with certValidityDays: 20 so every leaf is due, kept up after
// its checks (`--keep`), then test/helpers/day2-live.ts's steps through the real CLI from
// the lab's namespace: certs check against openssl s_client, etcd snapshot against
// etcdctl snapshot status, a restore refused while a member is down, every member wiped
// and restored (a ConfigMap from before the snapshot back, one from after gone), certs
// renew --all delivered by apply with /readyz probed through the VIP. Then the lab is
// removed by its README and nothing is left. SLIPWAY_DAY2_LAB=/var/tmp/slipway-rehearsal-X
// runs the steps on a lab kept by hand instead (made from the same file), and leaves it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/cli.ts';
import { leftoverCgroups, leftovers, run } from './helpers/rehearse.ts';
import { heavyTestTurn } from './helpers/vm-lock.ts';
import { readKeptLab, removeKeptLab } from './helpers/kept-lab.ts';
import { day2OnLiveLab } from './helpers/day2-live.ts';
import { parseClusterFile } from '../src/spec/parse.ts';

const K8S = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes/v1.20.2`;
const SKIP = !existsSync(`${K8S}/.complete`) ? `no v1.20.2 binaries in ${K8S}: run scripts/build-kubernetes.sh (.ci/run does)` : false;
/** Waits at most this long (minutes) for the other heavy test files (test/helpers/vm-lock.ts). */
const TURN_MIN = 45;

/** examples/rehearsal.yaml with leaves valid 20 days: all within certs check's 30-day window. */
const FILE_TEXT = readFileSync(join(ROOT, 'examples/rehearsal.yaml'), 'utf8').replace(/^( {4}keyAlgorithm: .*)$/m, '$1\n    certValidityDays: 20');

test('day 2 on a rehearsed cluster: certs check, etcd snapshot, restore after a wipe, certs renew delivered by apply', { skip: SKIP, timeout: (TURN_MIN + 40) * 60_000 }, async () => {
  assert.match(FILE_TEXT, /certValidityDays: 20/);
  const dir = mkdtempSync(join(tmpdir(), 'slipway-day2-'));
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, FILE_TEXT);
  const { spec } = parseClusterFile(FILE_TEXT, file);
  assert.ok(spec);
  const given = process.env.SLIPWAY_DAY2_LAB;
  const release = await heavyTestTurn('day2 on a containers rehearsal', TURN_MIN * 60_000);
  const before = leftovers();
  let labDir: string | undefined = given;
  try {
    let powerOff: string | undefined;
    if (!given) {
      const reportFile = join(dir, 'report.json');
      const t0 = performance.now();
      const r = await run(['rehearse', '-f', file, '--keep', '--no-console', '--report', reportFile], 15 * 60_000);
      const kept = leftovers().runDirs.filter((d) => !before.runDirs.includes(d));
      assert.equal(kept.length, 1, `one kept run directory:\n${r.stdout}\n${r.stderr.slice(-4000)}`);
      labDir = join('/var/tmp', kept[0]!);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr.slice(-6000)}`);
      const report = JSON.parse(readFileSync(reportFile, 'utf8'));
      // the vip-failover check powers the VIP's holder off and leaves it off
      powerOff = /powered off (\S+);/.exec(report.checks.find((c: { name: string }) => c.name === 'vip-failover').detail)?.[1];
      console.log(`# day2: rehearsal up and checked in ${((performance.now() - t0) / 1000).toFixed(0)} s; ${powerOff} powered off by vip-failover`);
    }
    const steps = await day2OnLiveLab(readKeptLab(labDir!), file, spec, powerOff);
    assert.ok(steps.length >= 5);
  } finally {
    release();
    if (labDir && !given) await removeKeptLab(labDir);
    rmSync(dir, { recursive: true, force: true });
    if (!given) {
      assert.deepEqual(leftovers(), before, 'the day-2 rehearsal left namespaces, mounts or run directories behind');
      assert.deepEqual(leftoverCgroups(), [], 'cgroups left behind');
    }
  }
});
