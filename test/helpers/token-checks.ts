// Bootstrap tokens per provisioning window, checked by a real apiserver and the
// controller-manager's tokencleaner (run by versions.binaries.test.ts on its v1.20
// control plane, in a namespace holding cp1's address): apply's planTokens opens a window
// for w1, its Secret (tokenManifest, what apply gives kubectl) is created, and w1's
// rendered bootstrap kubeconfig, with that record as render's input, authenticates as a
// bootstrapper that may create CSRs and nothing more; an expired token is refused and
// deleted by the tokencleaner; a used (deleted) token and a retired install token are refused.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Netns } from './netns.ts';
import { planTokens, tokenManifest } from '../../src/apply/tokens.ts';
import { parseClusterFile } from '../../src/spec/parse.ts';
import { loadOrCreateSecrets } from '../../src/secrets/store.ts';
import { buildPlan } from '../../src/plan/plan.ts';
import { planTree } from '../../src/render/tree.ts';
import { machineFiles } from '../../src/render/given.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import type { Lab as RehearsalLab } from '../../src/rehearse/lab/lab.ts';

export interface TokenCheckInputs {
  ns: Netns;
  kubectl: string;
  /** the admin kubeconfig (a control-plane machine's rendered admin.conf) */
  adminConf: string;
  /** the rendered add-ons file with the bootstrap RBAC (and the install token) */
  bootstrapAddons: string;
  specFile: string;
  stateDir: string;
  server: string;
  work: string;
}

/** Returns a one-line summary; asserts each effect. */
export async function checkWindowTokens(i: TokenCheckInputs): Promise<string> {
  const t0 = performance.now();
  const admin = (args: string[], input?: string) => i.ns.exec(i.kubectl, [`--kubeconfig=${i.adminConf}`, `--server=${i.server}`, '--request-timeout=10s', ...args], { timeoutMs: 30_000, input });
  const as = (conf: string, args: string[]) => i.ns.exec(i.kubectl, [`--kubeconfig=${conf}`, `--server=${i.server}`, '--request-timeout=10s', ...args], { timeoutMs: 30_000 });
  let r = await admin(['apply', '-f', i.bootstrapAddons]);
  assert.equal(r.code, 0, r.out);

  const { spec } = parseClusterFile(readFileSync(i.specFile, 'utf8'), i.specFile);
  assert.ok(spec);
  const secrets = await loadOrCreateSecrets(i.stateDir, spec);
  const five = new Set(spec.machines.map((m) => m.name).filter((n) => n !== 'w1'));
  const base = { spec, installTokenId: secrets.bootstrapToken.id, installSince: Date.now() - 3600_000, installed: five, fetched: five, clusterRuns: true, ttlSeconds: 3600 };
  // w1 left to serve: its window opens now (1 h); another made two hours ago has expired
  const open = planTokens({ ...base, record: { machines: {}, retired: [] }, now: Date.now() });
  assert.deepEqual(open.create.map((c) => c.machine), ['w1']);
  assert.equal(open.retire, secrets.bootstrapToken.id, 'the first window retires the install token');
  const stale = planTokens({ ...base, record: { machines: {}, retired: [] }, now: Date.now() - 2 * 3600_000 });
  r = await admin(['apply', '-f', '-'], tokenManifest(open.create, spec) + '---\n' + tokenManifest(stale.create, spec));
  assert.equal(r.code, 0, r.out);

  // render with the record: w1's own bootstrap kubeconfig
  const tree = planTree(buildPlan(spec, { ...secrets, windowTokens: open.next }));
  const conf = join(i.work, 'w1-bootstrap-kubelet.conf');
  writeFileSync(conf, machineFiles(tree, 'w1').get('/etc/kubernetes/bootstrap-kubelet.conf')!.contents, { mode: 0o600 });
  const own = open.create[0]!.token;
  assert.match(readFileSync(conf, 'utf8'), new RegExp(`token: ${own.id}\\.${own.secret}`));
  r = await as(conf, ['auth', 'can-i', 'create', 'certificatesigningrequests.certificates.k8s.io']);
  assert.equal(r.stdout.trim(), 'yes', `w1's token: ${r.out}`);
  r = await as(conf, ['auth', 'can-i', 'list', 'secrets', '-n', 'kube-system']);
  assert.equal(r.stdout.trim(), 'no', `a bootstrapper reads no Secret: ${r.out}`);

  // the expired one: refused by the apiserver, deleted by the tokencleaner
  const old = stale.create[0]!.token;
  const staleConf = join(i.work, 'stale.conf');
  writeFileSync(staleConf, readFileSync(conf, 'utf8').replace(`${own.id}.${own.secret}`, `${old.id}.${old.secret}`), { mode: 0o600 });
  r = await as(staleConf, ['auth', 'can-i', 'create', 'certificatesigningrequests.certificates.k8s.io']);
  assert.notEqual(r.code, 0);
  assert.match(r.out, /Unauthorized/);
  await i.ns.waitFor('the tokencleaner deletes the expired token', async () => /NotFound/.test((await admin(['-n', 'kube-system', 'get', 'secret', `bootstrap-token-${old.id}`])).out), 60_000, 1_000);

  // w1 joined: apply deletes its token (as removeTokens does); it no longer authenticates
  const used = planTokens({ ...base, installed: new Set([...five, 'w1']), record: open.next, now: Date.now() });
  assert.deepEqual(used.remove, [{ id: own.id, why: 'used: w1 joined' }]);
  r = await admin(['-n', 'kube-system', 'delete', 'secret', '--ignore-not-found', `bootstrap-token-${own.id}`, `bootstrap-token-${secrets.bootstrapToken.id}`]);
  assert.equal(r.code, 0, r.out);
  // the authenticator reads Secrets through the apiserver's informer cache: a moment later
  await i.ns.waitFor('a used token refused', async () => /Unauthorized/.test((await as(conf, ['auth', 'can-i', 'create', 'certificatesigningrequests.certificates.k8s.io'])).out), 30_000, 500);
  const installConf = join(i.work, 'install.conf');
  writeFileSync(installConf, readFileSync(conf, 'utf8').replace(`${own.id}.${own.secret}`, `${secrets.bootstrapToken.id}.${secrets.bootstrapToken.secret}`), { mode: 0o600 });
  r = await as(installConf, ['auth', 'can-i', 'create', 'certificatesigningrequests.certificates.k8s.io']);
  assert.match(r.out, /Unauthorized/, 'the retired install token is refused');
  return `window token for w1 authenticated as a bootstrapper (CSRs only), an expired one refused and cleaned by the tokencleaner, used and retired ones refused (${((performance.now() - t0) / 1000).toFixed(1)} s)`;
}

export interface ReprovisionCheckInputs {
  /** the lab the control plane's cp1 is attached to; serve is started in its hub */
  lab: RehearsalLab;
  /** cp1's namespace (the apiserver at 10.20.30.11:6443) */
  cp1: Netns;
  kubectl: string;
  adminConf: string;
  specFile: string;
  stateDir: string;
  server: string;
  work: string;
}

/**
 * serve's reprovision opens a provisioning window (issue 17): the real `slipway serve` in
 * the lab's hub, its store saying the cluster's machines are installed, reprovisions w1
 * through its API (what the console's button and `slipway provision` call): the 200 names
 * a fresh token; the token is in the cluster as a Secret with its expiration (the file's
 * default, 24 h) and in the record; the Ignition serve gives w1 (fetched from w1's own
 * namespace, its IP and MAC) carries it in its bootstrap kubeconfig, which authenticates
 * as a bootstrapper; a second reprovision replaces it and deletes the first from the
 * cluster. Returns a one-line summary.
 */
export async function checkReprovisionWindow(i: ReprovisionCheckInputs): Promise<string> {
  const t0 = performance.now();
  const { spec } = parseClusterFile(readFileSync(i.specFile, 'utf8'), i.specFile);
  assert.ok(spec);
  const admin = (args: string[]) => i.cp1.exec(i.kubectl, [`--kubeconfig=${i.adminConf}`, `--server=${i.server}`, '--request-timeout=10s', ...args], { timeoutMs: 30_000 });
  // serve's store: every machine ready, as after the first install (a control-plane machine joined: the cluster runs)
  const store = new SqliteStore(join(i.stateDir, 'serve.db'));
  try {
    for (const m of spec.machines) store.transition(m.name, 'ready', 'machine', () => true);
    store.commit();
  } finally {
    store.close();
  }
  let log = '';
  await i.lab.startServe({ file: i.specFile, state: i.stateDir, args: ['--timeout', '0'], timeoutMs: 30_000, output: (d) => (log = (log + d).slice(-20_000)) });
  const token = readFileSync(join(i.stateDir, 'api-token'), 'utf8').trim();
  const reprovision = async () => {
    const r = await i.lab.exec('curl', ['-sS', '-m', '30', '-X', 'POST', '-H', `Authorization: Bearer ${token}`, '-w', '\n%{http_code}', `${i.lab.provisionerURL}/api/v1/machines/w1/reprovision`], 40_000);
    const [body, code] = [r.stdout.slice(0, r.stdout.lastIndexOf('\n')), r.stdout.slice(r.stdout.lastIndexOf('\n') + 1)];
    assert.equal(code, '200', `${r.out}\n${log}`);
    const window = (JSON.parse(body) as { window?: { id: string; expires: string } }).window;
    assert.ok(window, `the reprovision names w1's window: ${body}`);
    assert.doesNotMatch(body, /secret/i, 'only the id and expiry');
    return window;
  };
  const secretData = async (id: string) => {
    const r = await admin(['-n', 'kube-system', 'get', 'secret', `bootstrap-token-${id}`, '-o', 'json']);
    if (/NotFound/.test(r.out)) return undefined;
    assert.equal(r.code, 0, r.out);
    return Object.fromEntries(Object.entries((JSON.parse(r.stdout) as { data: Record<string, string> }).data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  };
  const first = await reprovision();
  const record = JSON.parse(readFileSync(join(i.stateDir, 'bootstrap-tokens.json'), 'utf8')) as { machines: Record<string, { id: string; secret: string; expires: string }> };
  const own = record.machines.w1!;
  assert.equal(own.id, first.id);
  assert.equal(own.expires, first.expires);
  const ttl = Date.parse(own.expires) - Date.now();
  assert.ok(Math.abs(ttl - 24 * 3600_000) < 5 * 60_000, `kubeadm's 24 h, the file's default: expires ${own.expires}`);
  const data = await secretData(own.id);
  assert.ok(data, `bootstrap-token-${own.id} exists in the cluster`);
  assert.equal(data.expiration, own.expires);
  assert.equal(data['token-secret'], own.secret);

  // what w1 gets: its Ignition, fetched as w1 (serve checks its IP and MAC)
  const w1 = spec.machines.find((m) => m.name === 'w1')!;
  const host = i.lab.attach('w1', w1.mac);
  host.addAddress('eth0', `${w1.ip}/${w1.prefix}`);
  const ign = await host.exec('curl', ['-fsS', '-m', '10', `${i.lab.provisionerURL}/machines/w1/ignition.json`], { timeoutMs: 15_000 });
  assert.equal(ign.code, 0, `${ign.out}\n${log}`);
  const files = (JSON.parse(ign.stdout) as { storage: { files: { path: string; contents: { source: string } }[] } }).storage.files;
  const kubeconfig = Buffer.from(files.find((f) => f.path === '/etc/kubernetes/bootstrap-kubelet.conf')!.contents.source.split(',')[1]!, 'base64').toString();
  assert.match(kubeconfig, new RegExp(`token: ${own.id}\\.${own.secret}$`, 'm'), "w1's Ignition carries its window token");
  const conf = join(i.work, 'w1-reprovisioned.conf');
  writeFileSync(conf, kubeconfig, { mode: 0o600 });
  const can = await i.cp1.exec(i.kubectl, [`--kubeconfig=${conf}`, `--server=${i.server}`, '--request-timeout=10s', 'auth', 'can-i', 'create', 'certificatesigningrequests.certificates.k8s.io'], { timeoutMs: 30_000 });
  assert.equal(can.stdout.trim(), 'yes', `w1's window token authenticates as a bootstrapper: ${can.out}`);

  // reprovisioned again before it came: a new window; the unused token is deleted from the cluster
  const second = await reprovision();
  assert.notEqual(second.id, first.id);
  assert.ok(await secretData(second.id), 'the new token is in the cluster');
  assert.equal(await secretData(first.id), undefined, 'the unused one was deleted');
  await i.lab.stopServe();
  return `serve's reprovision of w1 opened its window twice: a 24 h token in the cluster and in w1's Ignition (a bootstrapper), the unused one deleted (${((performance.now() - t0) / 1000).toFixed(1)} s)`;
}
