// `npm run e2e`: the whole HA example (3 control-plane + etcd machines behind a VIP, 2
// workers) rehearsed as QEMU VMs on mixed firmware and hardware, each installing
// Slipway's OS onto its blank disk through DHCP, iPXE, the installer and Ignition, then
// booting it; nothing left behind. Not in `npm test` (which rehearses the same file with two machines broken on
// purpose, test/rehearse.test.ts):
//   - without Kubernetes binaries (--no-kubernetes): every check ok, the API check
//     not-run with the reason; the 5-minute figure of issue 6 (bench/rehearse-vm.bench.ts
//     prints it);
//   - with the real v1.20.2 binaries: only where KVM runs guests. Under software
//     emulation five VMs running the control plane on two cores do not settle (etcd
//     misses its health deadline: measured, docs/os-image.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.ts';
import { leftovers, run } from '../helpers/rehearse.ts';
import { kvmWorks } from '../../src/rehearse/vm/qemu.ts';

const CACHE = process.env.SLIPWAY_CACHE ?? '/var/cache/slipway';
const K8S = `${CACHE}/kubernetes/v1.20.2`;

async function rehearse(args: string[]) {
  const before = leftovers();
  const dir = mkdtempSync(join(tmpdir(), 'slipway-e2e-vm-'));
  try {
    const reportFile = join(dir, 'report.json');
    const r = await run(['rehearse', '-f', join(ROOT, 'examples/rehearsal.yaml'), '--engine', 'vm', '--report', reportFile, ...args], 50 * 60_000);
    process.stdout.write(r.stdout);
    const context = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-6000)}`;
    const report = JSON.parse(readFileSync(reportFile, 'utf8')) as { checks: { name: string; result: string; detail: string }[]; machines: { name: string; state: string }[] };
    return { r, report, context };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leftovers(), before);
    assert.equal(spawnSync('pgrep', ['-f', 'qemu-system-x86_64.*slipway-rehearsal-'], { encoding: 'utf8' }).stdout.trim(), '');
  }
}

test('rehearse --engine vm --no-kubernetes: the 5-machine HA example, every machine installed from a blank disk, every check ok', { timeout: 60 * 60_000 }, async () => {
  const { r, report, context } = await rehearse(['--no-kubernetes']);
  assert.ok(report.checks.some((c) => c.name === 'installed-from-blank-disk'), context);
  for (const c of report.checks) {
    if (c.name === 'api-via-vip') assert.equal(c.result, 'not-run', `${c.name}: ${c.detail}`);
    else assert.equal(c.result, 'ok', `${c.name}: ${c.detail}\n${context}`);
  }
  assert.deepEqual(report.machines.map((m) => m.state), ['installed', 'installed', 'installed', 'installed', 'installed']);
  assert.equal(r.code, 0, context);
});

const image = (existsSync(`${CACHE}/os-image`) ? readdirSync(`${CACHE}/os-image`, { withFileTypes: true }) : []).find((e) => e.isDirectory() && existsSync(`${CACHE}/os-image/${e.name}/.complete`));
const kvm = image && kvmWorks(`${CACHE}/os-image/${image.name}/vmlinuz`);
test('rehearse --engine vm: the 5-machine HA example with the real Kubernetes binaries (KVM)', { skip: !existsSync(`${K8S}/.complete`) ? `no binaries in ${K8S}` : !kvm && 'KVM does not run guests here: five TCG VMs cannot run the control plane on this host', timeout: 60 * 60_000 }, async () => {
  const { r, report, context } = await rehearse([]);
  for (const c of report.checks) assert.equal(c.result, 'ok', `${c.name}: ${c.detail}\n${context}`);
  assert.equal(r.code, 0, context);
});
