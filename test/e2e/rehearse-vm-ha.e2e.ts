// `npm run e2e`: the whole HA example (3 control-plane + etcd machines behind a VIP, 2
// workers) rehearsed as QEMU VMs booting through DHCP, iPXE and Ignition, every check ok
// and nothing left behind. Slow under TCG (no KVM here), so not in `npm test`, which
// rehearses three control-plane machines and a broken worker (test/rehearse.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.ts';
import { leftovers, run } from '../helpers/rehearse.ts';

const K8S = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes/v1.20.2`;

test('rehearse --engine vm: the 5-machine HA example', { skip: !existsSync(`${K8S}/.complete`) && `no binaries in ${K8S}`, timeout: 60 * 60_000 }, async () => {
  const before = leftovers();
  const dir = mkdtempSync(join(tmpdir(), 'slipway-e2e-vm-'));
  try {
    const reportFile = join(dir, 'report.json');
    const r = await run(['rehearse', '-f', join(ROOT, 'examples/rehearsal.yaml'), '--engine', 'vm', '--report', reportFile], 50 * 60_000);
    process.stdout.write(r.stdout);
    const context = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-6000)}`;
    const report = JSON.parse(readFileSync(reportFile, 'utf8'));
    for (const c of report.checks) assert.equal(c.result, 'ok', `${c.name}: ${c.detail}\n${context}`);
    assert.equal(report.machines.length, 5);
    assert.equal(r.code, 0, context);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leftovers(), before);
    assert.equal(spawnSync('pgrep', ['-f', 'qemu-system-x86_64.*slipway-rehearsal-'], { encoding: 'utf8' }).stdout.trim(), '');
  }
});
