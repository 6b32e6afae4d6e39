// `slipway apply` on a live containers rehearsal (real Kubernetes v1.20.2, real sshd in
// each machine, the lab's real serve and its state): the checks shared by the test that
// boots the rehearsal and by a run against a lab kept by hand. Every step runs the real
// CLI inside the lab's namespace (where the machines are reachable, as from a provisioner).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT } from './cli.ts';
import { bootKept, inMachine, powerOffKept, vipProber, type KeptLab } from './kept-lab.ts';
import { parseClusterFile } from '../../src/spec/parse.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';

export interface Step {
  name: string;
  seconds: number;
  detail: string;
  /** /readyz through the VIP, 10 a second, while the step ran: failed / sent */
  probes?: { failed: number; sent: number };
}

const VIP = '10.20.30.10';

function slipwayInLab(lab: KeptLab, args: string[], timeoutMs = 20 * 60_000): { code: number | null; out: string; seconds: number } {
  const t0 = performance.now();
  const r = spawnSync('ip', ['netns', 'exec', lab.hub, process.execPath, BIN, ...args], { encoding: 'utf8', timeout: timeoutMs, cwd: ROOT });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, seconds: (performance.now() - t0) / 1000 };
}


const notAfter = (lab: KeptLab, hostPort: string): string => {
  const r = spawnSync('ip', ['netns', 'exec', lab.hub, 'sh', '-c', `openssl s_client -connect ${hostPort} </dev/null 2>/dev/null | openssl x509 -noout -enddate`], { encoding: 'utf8', timeout: 30_000 });
  return r.stdout.trim();
};

const invocation = (lab: KeptLab, machine: string, unit: string) => inMachine(lab, machine, `systemctl show -p InvocationID --value ${unit}`).out.trim();

/**
 * The change apply delivers:
 *  - 'kube-proxy-cert' (the test suite's, ~1 min): `slipway certs renew kube-proxy`
 *    re-issues one leaf in the state; every machine's kube-proxy.conf changes and only
 *    kube-proxy restarts;
 *  - { validityDays } (by hand, ~5 min): certValidityDays changed in the file, so every
 *    leaf is re-issued: etcd, the apiserver, the controller-manager, the scheduler and
 *    kube-proxy restart on each control-plane machine in turn, kube-proxy on workers.
 */
export type LiveChange = 'kube-proxy-cert' | { validityDays: number };

/**
 * The scenario: nothing to do on an unchanged file; the change, delivered while w1's sshd
 * is down (stops at w1: unreachable) and then while w2's pinned host key is wrong (stops
 * at w2: mismatch), each leaving that machine untouched; a third run finishes; the real
 * effects are checked on the machines; the VIP answered throughout. `steps` fills as it goes.
 */
export async function applyOnLiveLab(lab: KeptLab, clusterFile: string, change: LiveChange, steps: Step[] = []): Promise<Step[]> {
  const base = ['-f', clusterFile, '--state', lab.state, '--assets', lab.assets];

  // 1. what serve gave each machine is what a fresh render gives: nothing to do
  let r = slipwayInLab(lab, ['apply', ...base, '--dry-run']);
  assert.equal(r.code, 0, r.out);
  for (const m of ['cp1', 'cp2', 'cp3', 'w1', 'w2']) assert.match(r.out, new RegExp(`^${m}: up to date$`, 'm'), r.out);
  steps.push({ name: 'dry-run-unchanged', seconds: r.seconds, detail: '5 of 5 machines up to date' });

  // 2. the change, and apply's plan for it
  let file = clusterFile;
  if (change === 'kube-proxy-cert') {
    r = slipwayInLab(lab, ['certs', 'renew', '-f', file, '--state', lab.state, 'kube-proxy']);
    assert.equal(r.code, 0, r.out);
  } else {
    file = join(lab.dir, `cluster-${change.validityDays}d.yaml`);
    const text = readFileSync(clusterFile, 'utf8').replace(/^ {4}certValidityDays: .*\n/m, '');
    assert.match(text, /^ {2}pki:\n {4}keyAlgorithm: \S+/m);
    writeFileSync(file, text.replace(/^( {2}pki:\n {4}keyAlgorithm: \S+.*)$/m, `$1\n    certValidityDays: ${change.validityDays}`));
  }
  const args = ['-f', file, '--state', lab.state, '--assets', lab.assets];
  r = slipwayInLab(lab, ['apply', ...args, '--dry-run']);
  assert.equal(r.code, 3, r.out);
  const planned = r.out.split('\n').filter((l) => /: (restart|reload|start|stop) /.test(l));
  if (change === 'kube-proxy-cert') {
    assert.deepEqual(planned, ['cp1', 'cp2', 'cp3', 'w1', 'w2'].map((m) => `${m}: restart kube-proxy.service`), r.out);
    for (const m of ['cp1', 'cp2', 'cp3', 'w1', 'w2']) assert.match(r.out, new RegExp(`^${m}: 1 file to write, 0 files to remove\n${m}:   ~ /etc/kubernetes/kube-proxy.conf \\(secret\\)$`, 'm'), r.out);
  } else {
    for (const u of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy']) assert.ok(planned.includes(`cp1: restart ${u}.service`), `${u}: ${r.out}`);
    assert.ok(planned.includes('w1: restart kube-proxy.service'), r.out);
  }
  assert.ok(!planned.some((l) => l.includes('kubelet.service')), 'the kubelet reads no certificate that was re-issued');
  steps.push({ name: 'dry-run-change', seconds: r.seconds, detail: planned.join('; ') });

  const invocations = () => new Map(['cp1', 'cp2', 'cp3', 'w1', 'w2'].map((m) => [m, invocation(lab, m, 'kube-proxy.service')]));
  const before = { proxies: invocations(), cp2Api: invocation(lab, 'cp2', 'kube-apiserver.service') };
  const w1Conf = inMachine(lab, 'w1', 'sha256sum /etc/kubernetes/kube-proxy.conf').out;
  const w2Conf = inMachine(lab, 'w2', 'sha256sum /etc/kubernetes/kube-proxy.conf').out;
  const probe = vipProber(lab, VIP);
  try {
    // 3. w1's sshd down: the control plane goes, one machine at a time, then apply stops at w1
    assert.equal(inMachine(lab, 'w1', 'systemctl stop ssh.service ssh.socket 2>/dev/null; systemctl is-active ssh.service').out.trim(), 'inactive');
    r = slipwayInLab(lab, ['apply', ...args, '--yes']);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /^w1: FAILED at connect: unreachable over SSH \(Connection refused\)/m, r.out);
    assert.match(r.out, /^apply: done: cp1, cp2, cp3$/m, r.out);
    assert.match(r.out, /^apply: not done: w1, w2 \(stopped at w1/m, r.out);
    const order = [...r.out.matchAll(/^(cp\d): (?:writing|done)/gm)].map((m) => m[1]);
    assert.deepEqual(order, ['cp1', 'cp1', 'cp2', 'cp2', 'cp3', 'cp3'], 'one control-plane machine at a time, each done before the next starts');
    assert.equal(inMachine(lab, 'w1', 'sha256sum /etc/kubernetes/kube-proxy.conf').out, w1Conf, 'nothing written on w1');
    steps.push({ name: 'apply-stops-at-unreachable', seconds: r.seconds, detail: 'cp1, cp2, cp3 done one at a time; w1 unreachable (sshd stopped): w1 and w2 untouched' });

    // 4. w1 back; w2's pinned host key wrong: w1 goes, apply stops at w2 before running anything there
    inMachine(lab, 'w1', 'systemctl start ssh.service');
    const store = new SqliteStore(join(lab.state, 'serve.db'));
    const real = store.hostKey('w2')!;
    assert.ok(real, 'w2 reported its host key with installed');
    store.forgetHostKey('w2');
    store.pinHostKey('w2', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoV7irw7un7QlJFAtFficETkA8oSUkSqFvoIXTO3CUY');
    try {
      r = slipwayInLab(lab, ['apply', ...args, '--yes']);
    } finally {
      store.forgetHostKey('w2');
      store.pinHostKey('w2', real);
      store.close();
    }
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /^cp1: up to date$/m, 'a second run continues: the finished machines have nothing left to do');
    assert.match(r.out, /^w2: FAILED at connect: its SSH host key is not the one pinned when it was installed/m, r.out);
    assert.match(r.out, /^apply: done: w1$/m, r.out);
    assert.equal(inMachine(lab, 'w2', 'sha256sum /etc/kubernetes/kube-proxy.conf').out, w2Conf, 'nothing written on w2');
    steps.push({ name: 'apply-stops-at-wrong-host-key', seconds: r.seconds, detail: 'w1 done; w2 refused before anything ran on it' });

    // 5. the pin restored: the third run finishes w2 alone
    r = slipwayInLab(lab, ['apply', ...args, '--yes']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^apply: done: w2$/m, r.out);
    steps.push({ name: 'apply-continues', seconds: r.seconds, detail: 'w2 done; cp1-cp3 and w1 up to date' });
  } finally {
    const p = await probe.finish();
    steps.push({ name: 'vip-readyz-during-apply', seconds: 0, detail: `${p.failed} of ${p.sent} probes failed`, probes: p });
  }

  // the real effects: each restarted unit runs anew with what the state now holds
  const after = invocations();
  for (const [m, id] of before.proxies) assert.notEqual(after.get(m), id, `kube-proxy on ${m} was restarted`);
  const given = JSON.parse(readFileSync(join(lab.state, 'given/w2.json'), 'utf8')) as Record<string, { sha256: string }>;
  assert.equal(inMachine(lab, 'w2', 'sha256sum /etc/kubernetes/kube-proxy.conf').out.split(' ')[0], given['/etc/kubernetes/kube-proxy.conf']!.sha256);
  assert.notEqual(inMachine(lab, 'w2', 'sha256sum /etc/kubernetes/kube-proxy.conf').out, w2Conf);
  let detail = `kube-proxy restarted on all 5 with the new kube-proxy.conf`;
  if (change !== 'kube-proxy-cert') {
    const want = spawnSync('openssl', ['x509', '-noout', '-enddate', '-in', join(lab.state, 'pki/apiserver.crt')], { encoding: 'utf8' }).stdout.trim();
    const days = (Date.parse(want.replace('notAfter=', '')) - Date.now()) / 86_400_000;
    assert.ok(days > change.validityDays - 2 && days < change.validityDays + 1, `${want}: the state's apiserver certificate is valid ~${change.validityDays} days`);
    for (const ip of ['10.20.30.11', '10.20.30.12', '10.20.30.13']) assert.equal(notAfter(lab, `${ip}:6443`), want, `${ip}:6443 serves the re-issued certificate`);
    assert.notEqual(invocation(lab, 'cp2', 'kube-apiserver.service'), before.cp2Api, 'the apiserver on cp2 was restarted');
    detail += `; the apiservers serve ${want}`;
  }
  const nodes = inMachine(lab, 'cp1', "/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes --no-headers | awk '{print $1\"=\"$2}'").out.trim().split('\n').sort();
  assert.deepEqual(nodes, ['cp1=Ready', 'cp2=Ready', 'cp3=Ready', 'w1=Ready', 'w2=Ready']);
  r = slipwayInLab(lab, ['apply', ...args, '--dry-run']);
  assert.equal(r.code, 0, r.out);
  steps.push({ name: 'effects', seconds: 0, detail: `${detail}; 5 nodes Ready; nothing left to apply` });

  // 6. a worker added to the file serve reads: apply gives the others the route to its pod
  // /24 (cni: bridge) by networkctl reload, restarts nothing and opens its window; serve,
  // reloaded (SIGHUP), then provisions it: a new container boots through serve as the
  // rehearsal's machines did (src/rehearse/containers/kept.ts) and becomes a Ready node
  const text3 = readFileSync(file, 'utf8');
  assert.match(text3, /roles: \[worker\]\n?$/, 'the machines are the file\'s last list');
  const withW3 = text3.replace(/\n?$/, '\n    - name: w3\n      mac: "52:54:00:20:30:23"\n      ip: 10.20.30.23/24\n      roles: [worker]\n');
  writeFileSync(lab.file, withW3);
  const spec3 = parseClusterFile(withW3, lab.file).spec!;
  const w3 = spec3.machines.find((m) => m.name === 'w3')!;
  const addProbe = vipProber(lab, VIP, 'add-worker');
  let added: { failed: number; sent: number; kinds: string } | undefined;
  const t6 = performance.now();
  try {
    r = slipwayInLab(lab, ['apply', '-f', lab.file, '--state', lab.state, '--assets', lab.assets, '--yes']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^w3: not installed \(unknown\): left to serve/m, r.out);
    for (const m of ['cp1', 'cp2', 'cp3', 'w1', 'w2']) assert.match(r.out, new RegExp(`^${m}: networkctl reload$`, 'm'), r.out);
    assert.doesNotMatch(r.out, /: restart /, r.out);
    for (let i = 0; i < 20 && !/via 10\.20\.30\.23/.test(inMachine(lab, 'w1', 'ip route show 10.244.5.0/24').out); i++) await new Promise((res) => setTimeout(res, 500));
    assert.match(inMachine(lab, 'w1', 'ip route show 10.244.5.0/24').out, /via 10\.20\.30\.23/, "w1 routes w3's pod /24 to w3");
    const booted = await bootKept(lab, spec3, w3);
    const t0 = performance.now();
    for (let i = 0; i < 150 && !/^w3\s+Ready\s/m.test(inMachine(lab, 'cp1', '/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf get node w3 --no-headers 2>&1').out); i++) await new Promise((res) => setTimeout(res, 2000));
    assert.match(inMachine(lab, 'cp1', '/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf get node w3 --no-headers 2>&1').out, /^w3\s+Ready\s/m, 'w3 became a Ready node');
    const s3 = new SqliteStore(join(lab.state, 'serve.db'));
    try {
      assert.ok(['installed', 'joined', 'ready'].includes(s3.get('w3')?.state ?? ''), `serve: w3 ${s3.get('w3')?.state}`);
    } finally {
      s3.close();
    }
    added = await addProbe.finish();
    steps.push({ name: 'add-worker', seconds: (performance.now() - t6) / 1000, probes: added, detail: `apply ${r.seconds.toFixed(1)} s: w3 left to serve, the five others routed its pod /24 (networkctl reload), nothing restarted; serve reloaded and w3's container installed and booted through it ${booted.toFixed(1)} s, a Ready node ${((performance.now() - t0) / 1000).toFixed(0)} s later` });
  } finally {
    if (!added) await addProbe.finish();
  }
  file = lab.file;

  // 7. drain takes workers only
  const nodeArgs = ['-f', file, '--state', lab.state];
  r = slipwayInLab(lab, ['drain', 'cp1', ...nodeArgs]);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /rule workers-only/);
  if (change !== 'kube-proxy-cert') {
    // a worker cordoned and drained through the eviction API, then taken back
    r = slipwayInLab(lab, ['drain', 'w2', ...nodeArgs, '--timeout', '120']);
    assert.equal(r.code, 0, r.out);
    assert.match(inMachine(lab, 'cp1', '/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf get node w2 -o jsonpath={.spec.unschedulable}').out, /true/);
    inMachine(lab, 'cp1', '/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf uncordon w2');
  }
  steps.push({ name: 'drain', seconds: r.seconds, detail: change === 'kube-proxy-cert' ? 'cp1 refused (workers-only)' : 'w2 cordoned and drained; cp1 refused (workers-only)' });

  // 8. the worker added above removed: drained, its Node deleted, its record forgotten,
  // serve asked to reprovision it; then its container is powered off
  const tr = performance.now();
  r = slipwayInLab(lab, ['remove', 'w3', ...nodeArgs, '--timeout', '120']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^w3: marked for reprovision at http:\/\/10\.20\.30\.2:8080/m, r.out);
  assert.match(inMachine(lab, 'cp1', '/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf get node w3 2>&1').out, /NotFound/);
  assert.ok(!existsSync(join(lab.state, 'given/w3.json')), "w3's record is gone");
  // its next install joins with a token of its own: serve's reprovision opens a window, as
  // control-plane machines have joined (one whose unit failed since still counts)
  const window = /^w3: bootstrap token ([a-z0-9]{6}) (?:created|for its next install) \(expires \S+\)$/m.exec(r.out);
  if (!window) {
    const s = new SqliteStore(join(lab.state, 'serve.db'));
    try {
      const seen = ['cp1', 'cp2', 'cp3'].map((n) => `${n}: ${s.get(n)?.state} (${s.recentEvents(n, { limit: 3, maxDetailBytes: 0, withDetail: false }).events.map((e) => `${e.from}→${e.to} by ${e.source}${e.reason ? `: ${e.reason}` : ''}`).join('; ')})`);
      assert.fail(`serve's reprovision of w3 opened no window; serve's store says ${seen.join(', ')}\n${r.out}`);
    } finally {
      s.close();
    }
  }
  {
    const recorded = JSON.parse(readFileSync(join(lab.state, 'bootstrap-tokens.json'), 'utf8')).machines.w3;
    assert.equal(recorded.id, window[1]);
    assert.equal(recorded.used, undefined);
    assert.match(inMachine(lab, 'cp1', `/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get secret bootstrap-token-${window[1]} -o jsonpath='{.type}' 2>&1`).out, /bootstrap\.kubernetes\.io\/token/);
  }
  const s2 = new SqliteStore(join(lab.state, 'serve.db'));
  try {
    assert.equal(s2.get('w3')?.state, 'unknown', 'serve reprovisions w3: its next network boot installs it');
    assert.equal(s2.hostKey('w3'), undefined, "w3's host key pin is forgotten");
  } finally {
    s2.close();
  }
  await powerOffKept(lab, w3);
  steps.push({ name: 'remove', seconds: (performance.now() - tr) / 1000, detail: `remove ${r.seconds.toFixed(1)} s: w3 drained, its Node gone, its record and host key forgotten, a bootstrap token of its own (${window[1]}) in the cluster for its next install, serve reprovisions it; its container powered off` });
  return steps;
}
