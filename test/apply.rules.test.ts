// apply's pure decisions on real renders of the examples: which files differ from what a
// machine was given, which units that restarts or reloads (and in which order), the
// rollout order, and etcd's membership rules. The scripts apply sends are checked by the
// shell that runs them (sh -n).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { buildPlan } from '../src/plan/plan.ts';
import { planTree } from '../src/render/tree.ts';
import { givenOf, machineFiles } from '../src/render/given.ts';
import { fileChanges, installTimeNotes, machineActions, rolloutOrder, unitInputs } from '../src/apply/changes.ts';
import { membershipChange, membershipStep, quorum } from '../src/apply/membership.ts';
import { etcdRestartAvoidable, healthScript, withoutBootstrapFlags, type MachinePlan } from '../src/apply/apply.ts';
import { readEtcdJoins, writeEtcdJoins } from '../src/secrets/etcd-joins.ts';
import { putScript } from '../src/apply/ssh.ts';
import type { Secrets } from '../src/secrets/types.ts';
import type { Spec } from '../src/spec/types.ts';
import { haSpec, machine } from './helpers/spec.ts';
import { fakeSecrets } from './helpers/secrets.ts';

const render = (spec: Spec, secrets: Secrets = fakeSecrets(spec)) => planTree(buildPlan(spec, secrets));

/** What `name` was given under `before` and what it gets under `after`, with apply's actions. */
function delta(before: Spec, after: Spec, name: string, secretsAfter?: Secrets) {
  const given = givenOf(machineFiles(render(before), name));
  const next = machineFiles(render(after, secretsAfter ?? fakeSecrets(after)), name);
  const changes = fileChanges(given, next);
  return { changes, actions: machineActions(changes, next, Object.keys(given)), next };
}

test('an unchanged file: nothing to deliver anywhere', () => {
  const s = haSpec();
  for (const m of s.machines) {
    const d = delta(s, haSpec(), m.name);
    assert.deepEqual(d.changes, { put: [], remove: [] }, m.name);
    assert.deepEqual(d.actions, { daemonReload: false, stop: [], commands: [], units: [] });
  }
});

test("changed kernel arguments: written, nothing restarted, and apply says the boot loader keeps the old ones until a reprovision", () => {
  const withArgs = (args: string[]) => {
    const s = haSpec();
    s.additions = { files: [], units: [], sysctls: [], kernelArgs: [{ origin: 'spec.kernelArgs[0]', roles: ['worker'], args }] };
    return s;
  };
  const d = delta(withArgs(['intel_iommu=on']), withArgs(['intel_iommu=on', 'iommu=pt']), 'w1');
  assert.deepEqual(d.changes.put.map((f) => f.path), ['/etc/slipway/kernel-args']);
  assert.deepEqual(d.actions, { daemonReload: false, stop: [], commands: [], units: [] });
  const notes = installTimeNotes(d.changes, 'w1');
  assert.equal(notes.length, 1);
  assert.match(notes[0]!, /^kernel arguments changed \(spec\.kernelArgs\): \/etc\/slipway\/kernel-args is written, but the installed boot loader keeps the ones it was installed with; they take effect when the machine is reprovisioned \(slipway provision w1, or the console's Reprovision\)$/);
  // taken away too; and a machine they do not apply to has nothing to say
  assert.equal(installTimeNotes(delta(withArgs(['iommu=pt']), haSpec(), 'w1').changes, 'w1').length, 1);
  assert.deepEqual(installTimeNotes(delta(withArgs(['intel_iommu=on']), withArgs(['iommu=pt']), 'cp1').changes, 'cp1'), []);
});

test('adding worker w3: the others get (cni: bridge) a route to its pod /24, by networkctl reload; no unit restarts', () => {
  const before = haSpec();
  before.network = { ...before.network, cni: 'bridge' };
  const after = haSpec();
  after.network = { ...after.network, cni: 'bridge' };
  after.machines.push(machine('w3', '10.20.30.23', ['worker']));
  const d = delta(before, after, 'w1');
  assert.deepEqual(d.changes.put.map((f) => f.path), ['/etc/systemd/network/10-slipway.network']);
  assert.match(d.changes.put[0]!.contents, /Gateway=10\.20\.30\.23/);
  assert.deepEqual(d.actions.commands.map((c) => c.argv.join(' ')), ['networkctl reload']);
  assert.deepEqual(d.actions.units, []);
  assert.equal(d.actions.daemonReload, false);
});

test('a new apiserver certificate restarts exactly the apiserver on control-plane machines, nothing on workers', () => {
  const s = haSpec();
  const secrets = fakeSecrets(s);
  const renewed: Secrets = { ...secrets, certs: { ...secrets.certs, apiserver: { cert: secrets.certs.apiserver.cert.replace('apiserver', 'apiserver-renewed'), key: secrets.certs.apiserver.key + '\n' } } };
  const cp = delta(s, haSpec(), 'cp1', renewed);
  assert.deepEqual(cp.changes.put.map((f) => f.path).sort(), ['/etc/kubernetes/pki/apiserver.crt', '/etc/kubernetes/pki/apiserver.key']);
  assert.deepEqual(cp.actions.units, [{ kind: 'restart', unit: 'kube-apiserver.service' }]);
  assert.equal(cp.actions.daemonReload, false);
  const w = delta(s, haSpec(), 'w1', renewed);
  assert.deepEqual(w.changes.put, []);
});

test('a new etcd CA and member certificates restart etcd before the apiserver; a kubeconfig change restarts its component', () => {
  const s = haSpec();
  const secrets = fakeSecrets(s);
  const certs = { ...secrets.certs };
  certs['etcd/ca'] = { cert: certs['etcd/ca'].cert + '#', key: certs['etcd/ca'].key };
  certs['scheduler'] = { cert: certs['scheduler'].cert + '#', key: certs['scheduler'].key };
  const d = delta(s, haSpec(), 'cp2', { ...secrets, certs });
  const units = d.actions.units.map((u) => `${u.kind} ${u.unit}`);
  assert.ok(units.indexOf('restart etcd.service') === 0, units.join(', '));
  assert.ok(units.includes('restart kube-apiserver.service'), units.join(', '));
  assert.ok(units.includes('restart kube-scheduler.service'), units.join(', '));
  assert.ok(!units.includes('restart kube-controller-manager.service'), `the controller-manager reads neither: ${units.join(', ')}`);
});

test('unit files: a changed unit is daemon-reloaded and restarted; a newly enabled one started; a removed one stopped', () => {
  const s = haSpec();
  const given = givenOf(machineFiles(render(s), 'w1'));
  const next = machineFiles(render(s), 'w1');
  const kubelet = next.get('/etc/systemd/system/kubelet.service')!;
  next.set(kubelet.path, { ...kubelet, contents: kubelet.contents.replace('--node-ip=', '--v=2 \\\n  --node-ip=') });
  next.set('/etc/systemd/system/extra.service', { path: '/etc/systemd/system/extra.service', mode: 0o644, contents: '[Service]\nExecStart=/bin/true\n' });
  next.set('/etc/systemd/system/multi-user.target.wants/extra.service', { path: '/etc/systemd/system/multi-user.target.wants/extra.service', mode: 0o644, contents: '', link: '/etc/systemd/system/extra.service' });
  next.delete('/etc/systemd/system/slipway-swapoff.service');
  next.delete('/etc/systemd/system/multi-user.target.wants/slipway-swapoff.service');
  next.delete('/etc/systemd/system/slipway-swapoff.service.d/10-slipway-report.conf');
  const changes = fileChanges(given, next);
  const a = machineActions(changes, next, Object.keys(given));
  assert.equal(a.daemonReload, true);
  assert.deepEqual(a.stop, ['slipway-swapoff.service']);
  assert.deepEqual(a.units, [{ kind: 'start', unit: 'extra.service' }, { kind: 'restart', unit: 'kubelet.service' }]);
  assert.deepEqual(changes.remove, ['/etc/systemd/system/multi-user.target.wants/slipway-swapoff.service', '/etc/systemd/system/slipway-swapoff.service', '/etc/systemd/system/slipway-swapoff.service.d/10-slipway-report.conf']);
});

test('configuration of the OS units: haproxy and keepalived are reloaded, not restarted; a mode change counts', () => {
  const s = haSpec();
  const given = givenOf(machineFiles(render(s), 'cp1'));
  const next = machineFiles(render(s), 'cp1');
  for (const p of ['/etc/haproxy/haproxy.cfg', '/etc/keepalived/keepalived.conf']) next.set(p, { ...next.get(p)!, contents: next.get(p)!.contents + '# x\n' });
  const hosts = next.get('/etc/hosts')!;
  next.set('/etc/hosts', { ...hosts, mode: 0o600 });
  const changes = fileChanges(given, next);
  assert.deepEqual(changes.put.map((f) => f.path), ['/etc/haproxy/haproxy.cfg', '/etc/hosts', '/etc/keepalived/keepalived.conf']);
  assert.deepEqual(machineActions(changes, next, Object.keys(given)).units, [{ kind: 'reload', unit: 'haproxy.service' }, { kind: 'reload', unit: 'keepalived.service' }]);
});

test('what each unit reads comes from its own text: flags, and the files those name', () => {
  const inputs = unitInputs(machineFiles(render(haSpec()), 'cp1'));
  const api = inputs.get('kube-apiserver.service')!;
  for (const p of ['/etc/kubernetes/pki/apiserver.crt', '/etc/kubernetes/pki/etcd/ca.crt', '/etc/kubernetes/encryption-config.yaml', '/etc/kubernetes/pki/sa.pub']) assert.ok(api.has(p), p);
  assert.ok(!api.has('/etc/hosts'));
  assert.ok(inputs.get('kubelet.service')!.has('/var/lib/kubelet/config.yaml'));
  assert.ok(inputs.get('kubelet.service')!.has('/etc/kubernetes/pki/ca.crt'), 'named by the kubelet config, not the unit');
});

test('rollout: control-plane and etcd machines first, in file order, then workers', () => {
  const s = haSpec();
  const targets = [...s.machines].reverse().map((machine) => ({ machine }));
  assert.deepEqual(rolloutOrder(targets).map((t) => t.machine.name), ['cp3', 'cp2', 'cp1', 'w2', 'w1'].filter((n) => n.startsWith('cp')).concat(['w2', 'w1']));
  assert.deepEqual(rolloutOrder(s.machines.map((machine) => ({ machine }))).map((t) => t.machine.name), ['cp1', 'cp2', 'cp3', 'w1', 'w2']);
});

test('etcd membership: one change at a time, never below a healthy majority, never the last member', () => {
  const m = (spec: string) => spec.split(' ').map((x) => ({ name: x.replace('!', ''), healthy: !x.endsWith('!') }));
  assert.deepEqual([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
  assert.deepEqual(membershipChange(m('cp1 cp2 cp3'), ['cp1', 'cp2', 'cp3']), { kind: 'none' });
  assert.deepEqual(membershipChange(m('cp1 cp2 cp3'), ['cp1', 'cp2', 'cp3', 'cp4']), { kind: 'add', name: 'cp4' });
  assert.deepEqual(membershipChange(m('cp1 cp2 cp3'), ['cp1', 'cp2']), { kind: 'remove', name: 'cp3' });
  const rule = (r: ReturnType<typeof membershipChange>) => (r.kind === 'refused' ? r.rule : r.kind);
  // replacing cp3 by cp4 in one edit: two changes
  assert.equal(rule(membershipChange(m('cp1 cp2 cp3'), ['cp1', 'cp2', 'cp4'])), 'one-change-at-a-time');
  // 3 members, one down: adding a 4th needs 3 healthy
  assert.equal(rule(membershipChange(m('cp1 cp2 cp3!'), ['cp1', 'cp2', 'cp3', 'cp4'])), 'quorum-after-add');
  // 3 members, one down: removing a healthy one leaves 1 healthy of 2
  const r = membershipChange(m('cp1 cp2 cp3!'), ['cp2', 'cp3']);
  assert.equal(rule(r), 'quorum-after-remove');
  assert.match((r as { message: string }).message, /leaves 2 members, whose quorum is 2, but only 1 of them are healthy/);
  // ...but removing the broken one is what fixes it
  assert.deepEqual(membershipChange(m('cp1 cp2 cp3!'), ['cp1', 'cp2']), { kind: 'remove', name: 'cp3' });
  assert.equal(rule(membershipChange(m('cp1'), [])), 'keep-a-member');
  assert.equal(rule(membershipChange(m('cp1 cp2'), ['cp1'])), 'remove');
});

test('etcd membership step from the running cluster: names of members not yet started, the initial cluster of a join, an installed machine cannot join', () => {
  const s = haSpec();
  const cp4 = machine('cp4', '10.20.30.14', ['control-plane', 'etcd']);
  const s4 = { ...s, machines: [...s.machines, cp4] };
  const member = (name: string, ip: string, healthy = true) => ({ id: String(1000 + Number(ip.split('.')[3])), name, peerURLs: [`https://${ip}:2380`], clientURLs: name ? [`https://${ip}:2379`] : [], isLearner: false, healthy });
  // etcd lists members by id; the step reads them in the file's order
  const three = [member('cp2', '10.20.30.12'), member('cp3', '10.20.30.13'), member('cp1', '10.20.30.11')];
  const add = membershipStep(s4, three, new Set(['cp1', 'cp2', 'cp3']));
  assert.deepEqual(add, { kind: 'add', name: 'cp4', peerURL: 'https://10.20.30.14:2380', initialCluster: 'cp1=https://10.20.30.11:2380,cp2=https://10.20.30.12:2380,cp3=https://10.20.30.13:2380,cp4=https://10.20.30.14:2380', members: ['cp1', 'cp2', 'cp3'] });
  // added but not started: etcd gives it no name; its peer URL is cp4's, so nothing is left to do
  assert.deepEqual(membershipStep(s4, [...three, member('', '10.20.30.14', false)], new Set()), { kind: 'none', forget: [] });
  // an installed machine started its own cluster: refused, named
  const installed = membershipStep(s4, three, new Set(['cp1', 'cp2', 'cp3', 'cp4']));
  assert.equal(installed.kind === 'refused' && installed.rule, 'join-before-install');
  // a removal names the member's id and address
  const s2 = { ...s, machines: s.machines.filter((m) => m.name !== 'cp3') };
  assert.deepEqual(membershipStep(s2, three, new Set()), { kind: 'remove', name: 'cp3', id: '1013', ip: '10.20.30.13', members: ['cp1', 'cp2', 'cp3'] });
  // cp4 added but not running yet: removing cp3 is one change, and cp1, cp2 are a majority of the 3 that stay
  const r = membershipStep({ ...s4, machines: s4.machines.filter((m) => m.name !== 'cp3') }, [...three, member('', '10.20.30.14', false)], new Set());
  assert.equal(r.kind, 'remove');
});

test('a joining member renders --initial-cluster-state=existing with its recorded cluster; the others differ only in bootstrap-only flags', async () => {
  const s = haSpec();
  const cp4 = machine('cp4', '10.20.30.14', ['control-plane', 'etcd']);
  const s4 = { ...s, machines: [...s.machines, cp4] };
  const joined = 'cp1=https://10.20.30.11:2380,cp2=https://10.20.30.12:2380,cp3=https://10.20.30.13:2380,cp4=https://10.20.30.14:2380';
  const secrets = { ...fakeSecrets(s4), etcdJoins: { cp4: joined } };
  const unit = (spec: Spec, sec: Secrets, m: string) => machineFiles(render(spec, sec), m).get('/etc/systemd/system/etcd.service')!.contents;
  const u4 = unit(s4, secrets, 'cp4');
  assert.match(u4, /--initial-cluster-state=existing/);
  assert.match(u4, new RegExp(`--initial-cluster=${joined.replace(/\./g, '\.')} `));
  const fresh = unit(s4, fakeSecrets(s4), 'cp4');
  assert.match(fresh, /--initial-cluster-state=new/, 'without the record: a first install');
  const before = unit(s, fakeSecrets(s), 'cp1');
  const after = unit(s4, secrets, 'cp1');
  assert.notEqual(before, after);
  assert.equal(withoutBootstrapFlags(before), withoutBootstrapFlags(after));
  // a real flag change is not hidden
  assert.notEqual(withoutBootstrapFlags(before), withoutBootstrapFlags(before.replace('--snapshot-count=10000', '--snapshot-count=5')));
});

test("a member's etcd is not restarted when only its initial cluster changed; a certificate it reads, or a real flag, still restarts it", () => {
  const s = haSpec();
  const s4 = { ...s, machines: [...s.machines, machine('cp4', '10.20.30.14', ['control-plane', 'etcd'])] };
  const secrets = fakeSecrets(s4);
  const before = machineFiles(render(s, secrets), 'cp1');
  const next = machineFiles(render(s4, secrets), 'cp1');
  const given = givenOf(before);
  const onMachine = before.get('/etc/systemd/system/etcd.service')!.contents;
  const changes = fileChanges(given, next);
  assert.ok(changes.put.some((f) => f.path === '/etc/systemd/system/etcd.service'));
  assert.ok(machineActions(changes, next, Object.keys(given)).units.some((u) => u.unit === 'etcd.service'), 'by the unit alone it would restart');
  assert.equal(etcdRestartAvoidable(onMachine, given, next, changes), true);
  // the machine's own unit is not what the record says: a real difference restarts
  assert.equal(etcdRestartAvoidable(onMachine.replace('--snapshot-count=10000', '--snapshot-count=5'), given, next, changes), false);
  assert.equal(etcdRestartAvoidable(undefined, given, next, changes), false);
  // a new etcd server certificate too: restarted
  const cert = next.get('/etc/kubernetes/pki/etcd/server.crt')!;
  const withCert = new Map(next).set(cert.path, { ...cert, contents: cert.contents + '\n' });
  assert.equal(etcdRestartAvoidable(onMachine, given, withCert, fileChanges(given, withCert)), false);
});

test('the join record: written 0600, read back, a damaged one refused naming the file, an empty one removed', async () => {
  const { mkdtempSync, writeFileSync, statSync, existsSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'slipway-joins-'));
  try {
    assert.deepEqual(await readEtcdJoins(dir), {});
    await writeEtcdJoins(dir, { cp4: 'cp1=https://10.20.30.11:2380,cp4=https://10.20.30.14:2380' });
    assert.equal(statSync(join(dir, 'etcd-joins.json')).mode & 0o777, 0o600);
    assert.deepEqual(await readEtcdJoins(dir), { cp4: 'cp1=https://10.20.30.11:2380,cp4=https://10.20.30.14:2380' });
    for (const [text, msg] of [
      ['{', /etcd-joins\.json: not JSON/],
      ['[]', /not an object of machine name/],
      ['{"cp4": "cp1=https://10.20.30.11:2380"}', /cp4: .* is not an initial cluster .* that names cp4/],
      ['{"Bad Name": "x"}', /"Bad Name" is not a machine name/],
    ] as const) {
      writeFileSync(join(dir, 'etcd-joins.json'), text);
      await assert.rejects(readEtcdJoins(dir), msg);
    }
    await writeEtcdJoins(dir, {});
    assert.equal(existsSync(join(dir, 'etcd-joins.json')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the scripts apply sends are valid sh', () => {
  const s = haSpec();
  const next = machineFiles(render(s), 'cp1');
  const plan = { target: { machine: s.machines[0]!, state: 'ready', ssh: { name: 'cp1', address: '10.20.30.11', hostKey: 'ssh-ed25519 AAAA' } }, baseline: 'record', changes: { put: [], remove: [] }, actions: { daemonReload: true, stop: [], commands: [], units: [{ kind: 'restart', unit: 'etcd.service' }, { kind: 'restart', unit: 'slipway-addons.service' }] }, next } as MachinePlan;
  const h = healthScript(s, plan, 30);
  assert.deepEqual(h.checks, ['etcd.service active', 'etcd member healthy', 'apiserver /readyz', 'node Ready'], 'a oneshot unit is not waited for as active');
  const put = putScript([
    { path: '/etc/hosts', mode: 0o644, contents: "it's\n$HOME `x`\nSLIPWAY_EOF\n" },
    { path: '/etc/systemd/system/multi-user.target.wants/x.service', mode: 0o777, contents: '', link: '/etc/systemd/system/x.service' },
  ]);
  for (const script of [h.script, put]) {
    const r = spawnSync('sh', ['-n'], { input: script, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr + script);
  }
  assert.throws(() => putScript([{ path: '/etc/a b', mode: 0o644, contents: 'x' }]), /not an absolute path of plain characters/);
});
