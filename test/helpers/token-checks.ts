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
