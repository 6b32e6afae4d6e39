// The project's main end-to-end proof: `slipway rehearse --engine containers` brings the
// 5-machine HA example (3 control-plane + etcd machines behind a VIP, 2 workers) up from
// the rendered files with real Kubernetes v1.20.2 binaries (built from Debian's source by
// scripts/build-kubernetes.sh), and every check of the report passes: etcd over TLS, the
// API through the VIP, leader election, kubelet CSRs approved with no human, Ready nodes,
// guide 02's NodePort smoke test, VIP failover and etcd losing a member. Then nothing is
// left behind: no namespace, mount, cgroup, process or run directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/cli.ts';
import { leftovers, run } from './helpers/rehearse.ts';

const K8S = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes/v1.20.2`;
const SKIP = !existsSync(`${K8S}/.complete`) ? `no v1.20.2 binaries in ${K8S}: run scripts/build-kubernetes.sh (.ci/run does)` : false;
const CHECKS = ['etcd-healthy', 'api-via-vip', 'leader-election', 'csr-auto-approved', 'nodes-ready', 'smoke-nodeport', 'vip-failover', 'etcd-member-loss'];

test('rehearse --engine containers: the HA example comes up from its rendered files and passes every check', { skip: SKIP, timeout: 20 * 60_000 }, async () => {
  const before = leftovers();
  const dir = mkdtempSync(join(tmpdir(), 'slipway-rehearse-'));
  try {
    const reportFile = join(dir, 'report.json');
    const r = await run(['rehearse', '-f', join(ROOT, 'examples/rehearsal.yaml'), '--engine', 'containers', '--report', reportFile], 15 * 60_000);
    const context = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-6000)}`;
    assert.ok(existsSync(reportFile), `no report written:\n${context}`);
    const report = JSON.parse(readFileSync(reportFile, 'utf8'));
    process.stdout.write(r.stdout);

    assert.equal(report.engine, 'containers');
    assert.equal(report.kubernetesVersion, 'v1.20.2');
    assert.equal(report.error, undefined, context);
    assert.deepEqual(report.machines.map((m: { name: string }) => m.name), ['cp1', 'cp2', 'cp3', 'w1', 'w2']);
    for (const m of report.machines) {
      assert.equal(m.ready, true, `${m.name} never became a Ready node:\n${context}`);
      assert.deepEqual(m.failedUnits, [], `${m.name} has failed units:\n${JSON.stringify(m.failedUnits, null, 2)}`);
      assert.ok(m.seconds.dhcp >= 0 && m.seconds.configFetched >= m.seconds.dhcp && m.seconds.installed > 0 && m.seconds.ready > 0, `${m.name}: ${JSON.stringify(m.seconds)}`);
    }
    assert.deepEqual(report.machines.map((m: { roles: string[] }) => m.roles.join(',')), ['control-plane,etcd', 'control-plane,etcd', 'control-plane,etcd', 'worker', 'worker']);
    const byName = new Map<string, { result: string; detail: string; seconds: number }>(report.checks.map((c: { name: string }) => [c.name, c]));
    for (const name of CHECKS) {
      const c = byName.get(name);
      assert.ok(c, `check ${name} missing from the report`);
      assert.equal(c.result, 'ok', `${name}: ${c.detail}\n${context}`);
      assert.ok(c.detail.length > 0 && typeof c.seconds === 'number');
    }
    const dns = byName.get('dns');
    assert.equal(dns?.result, 'not-run');
    assert.match(dns!.detail, /CoreDNS image .* cannot be obtained offline/);
    assert.match(byName.get('vip-failover')!.detail, /moved to cp\d/);
    assert.match(byName.get('csr-auto-approved')!.detail, /^5 kubelet client CSRs/);
    assert.match(byName.get('smoke-nodeport')!.detail, /every node: cp1, cp2, cp3, w1, w2$/);
    assert.ok(report.adjustments.length >= 10 && report.adjustments.every((a: { id: string; what: string; why: string }) => a.id && a.what && a.why));
    assert.equal(report.ok, true);
    assert.equal(r.code, 0, context);
    assert.match(r.stdout, /rehearsal \(containers, Kubernetes v1\.20\.2\): OK/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leftovers(), before, 'the rehearsal left namespaces, mounts or run directories behind');
    const cgroups = readdirSync(existsSync('/sys/fs/cgroup/unified') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup').filter((d) => d.startsWith('slipway-rehearsal-'));
    assert.deepEqual(cgroups, [], 'cgroups left behind');
  }
});
