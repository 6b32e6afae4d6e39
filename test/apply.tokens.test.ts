// Bootstrap tokens per provisioning window: apply's rules (planTokens, pure), what render
// makes of the record (a machine's own token in its bootstrap kubeconfig only; the install
// token's Secret gone from the add-ons once retired), the Secret manifest kubectl gets,
// and the state record (0600, checked, never quoting a secret in its errors). The tokens
// are checked by a real v1.20 apiserver and tokencleaner in test/helpers/token-checks.ts
// (run by versions.binaries.test.ts on its control plane).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { planTokens, describeTokens, tokenManifest, windowFor, type TokenInputs } from '../src/apply/tokens.ts';
import { readBootstrapTokens, writeBootstrapTokens, type WindowToken } from '../src/secrets/bootstrap-tokens.ts';
import { buildPlan } from '../src/plan/plan.ts';
import { planTree } from '../src/render/tree.ts';
import { machineFiles } from '../src/render/given.ts';
import { haSpec, machine } from './helpers/spec.ts';
import { fakeSecrets } from './helpers/secrets.ts';

const NOW = Date.parse('2026-12-07T12:00:00Z');
const H = 3600_000;
const s = haSpec();
const withW3 = { ...s, machines: [...s.machines, machine('w3', '10.20.30.23', ['worker'])] };
let n = 0;
const fixed = (now: number, ttl: number): WindowToken => ({ id: `tok${String(++n).padStart(3, '0')}`, secret: 'abcdefghijklmnop', expires: new Date(now + ttl * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') });
const five = new Set(['cp1', 'cp2', 'cp3', 'w1', 'w2']);
const inputs = (over: Partial<TokenInputs>): TokenInputs => ({
  spec: withW3,
  record: { machines: {}, retired: [] },
  installTokenId: 'inst01',
  installSince: NOW - 2 * H,
  installed: five,
  fetched: five,
  clusterRuns: true,
  now: NOW,
  ttlSeconds: 24 * 3600,
  newToken: fixed,
  ...over,
});

test('a machine left to serve gets a token of its own (24 h), once the cluster runs; the install token is retired with the first window', () => {
  n = 0;
  // no cluster yet (first install): the install token does it all
  assert.deepEqual(planTokens(inputs({ clusterRuns: false, installed: new Set(), fetched: new Set() })), { create: [], remove: [], next: { machines: {}, retired: [] } });
  const p = planTokens(inputs({}));
  assert.deepEqual(p.create, [{ machine: 'w3', token: { id: 'tok001', secret: 'abcdefghijklmnop', expires: '2026-12-08T12:00:00Z' } }]);
  assert.equal(p.retire, 'inst01');
  assert.deepEqual(p.remove, [{ id: 'inst01', why: 'the install token: no machine installs with it any more' }]);
  assert.deepEqual(p.next, { machines: { w3: p.create[0]!.token }, retired: ['inst01'] });
  const lines = describeTokens(p).join('\n');
  assert.match(lines, /^w3: a bootstrap token of its own for its provisioning window: tok001, expires 2026-12-08T12:00:00Z/m);
  assert.doesNotMatch(lines, /abcdefghijklmnop/, 'never a secret');
});

test('the install token stays while a machine installs with it, and while it is young and no window opened', () => {
  n = 0;
  // w2 fetched its configuration (with the install token) and is not installed yet
  const installing = planTokens(inputs({ spec: s, installed: new Set(['cp1', 'cp2', 'cp3', 'w1']) }));
  assert.equal(installing.retire, undefined);
  assert.deepEqual(installing.create.map((c) => c.machine), ['w2'], 'w2 gets its own for its next install');
  // everything installed, the state 2 h old: nothing to do (an unchanged file changes nothing)
  assert.deepEqual(planTokens(inputs({ spec: s })), { create: [], remove: [], next: { machines: {}, retired: [] } });
  // 25 h old: its own TTL is over
  assert.equal(planTokens(inputs({ spec: s, installSince: NOW - 25 * H })).retire, 'inst01');
  // retired once: never again
  assert.deepEqual(planTokens(inputs({ spec: s, installSince: NOW - 25 * H, record: { machines: {}, retired: ['inst01'] } })).remove, []);
});

test('window tokens: kept while open, replaced when expired, deleted when used (kept in the record as used), dropped with the machine', () => {
  n = 0;
  const open: WindowToken = { id: 'open01', secret: 'abcdefghijklmnop', expires: '2026-12-08T00:00:00Z' };
  const old: WindowToken = { id: 'old001', secret: 'abcdefghijklmnop', expires: '2026-12-07T11:00:00Z' };
  const retired = ['inst01'];
  // still open: nothing
  let p = planTokens(inputs({ record: { machines: { w3: open }, retired } }));
  assert.deepEqual([p.create, p.remove], [[], []]);
  // expired while w3 never came: deleted and replaced
  p = planTokens(inputs({ record: { machines: { w3: old }, retired } }));
  assert.deepEqual(p.remove, [{ id: 'old001', why: 'expired 2026-12-07T11:00:00Z' }]);
  assert.deepEqual(p.create.map((c) => c.token.id), ['tok001']);
  // w3 joined: deleted from the cluster, kept as used (its files stay what it was given)
  p = planTokens(inputs({ record: { machines: { w3: open }, retired }, installed: new Set([...five, 'w3']) }));
  assert.deepEqual(p.remove, [{ id: 'open01', why: 'used: w3 joined' }]);
  assert.deepEqual(p.next.machines, { w3: { ...open, used: true } });
  // used, still installed: nothing more
  p = planTokens(inputs({ record: { machines: { w3: { ...open, used: true } }, retired }, installed: new Set([...five, 'w3']) }));
  assert.deepEqual([p.create, p.remove], [[], []]);
  // used, then reprovisioned (not installed any more): a new window, a new token
  p = planTokens(inputs({ record: { machines: { w3: { ...open, used: true } }, retired } }));
  assert.deepEqual(p.remove, []);
  assert.deepEqual(p.create.map((c) => c.machine), ['w3']);
  // w3 taken out of the file before it came: its token deleted, dropped
  p = planTokens(inputs({ spec: s, record: { machines: { w3: open }, retired } }));
  assert.deepEqual(p.remove, [{ id: 'open01', why: 'w3 is no longer in the file' }]);
  assert.deepEqual(p.next.machines, {});
});

test("render: a machine's own token is in its bootstrap kubeconfig only; a retired install token leaves the add-ons; the Secret carries its expiration", () => {
  const secrets = fakeSecrets(withW3);
  const own: WindowToken = { id: 'own001', secret: 'ownsecretownsecr', expires: '2026-12-08T12:00:00Z' };
  const tree = planTree(buildPlan(withW3, { ...secrets, windowTokens: { machines: { w3: own }, retired: [secrets.bootstrapToken.id] } }));
  const conf = (m: string) => parse(machineFiles(tree, m).get('/etc/kubernetes/bootstrap-kubelet.conf')!.contents).users[0].user.token;
  assert.equal(conf('w3'), 'own001.ownsecretownsecr');
  for (const m of ['cp1', 'w1']) assert.equal(conf(m), `${secrets.bootstrapToken.id}.${secrets.bootstrapToken.secret}`, `${m} keeps what it was given`);
  const f = machineFiles(tree, 'w3').get('/etc/kubernetes/bootstrap-kubelet.conf')!;
  assert.equal(f.mode, 0o600);
  assert.equal(f.secret, true);
  const addons = (t: typeof tree) => parseAllDocuments(machineFiles(t, 'cp1').get('/etc/kubernetes/addons/10-bootstrap.yaml')!.contents).map((d) => d.toJSON());
  assert.deepEqual(addons(tree).map((o) => o.kind), ['ClusterRoleBinding', 'ClusterRoleBinding', 'ClusterRoleBinding'], 'retired: no Secret');
  assert.equal(addons(planTree(buildPlan(withW3, secrets)))[0].kind, 'Secret', 'before: the install token');
  const [secret] = parseAllDocuments(tokenManifest([{ machine: 'w3', token: own }], withW3)).map((d) => d.toJSON());
  assert.equal(secret.metadata.name, 'bootstrap-token-own001');
  assert.equal(secret.type, 'bootstrap.kubernetes.io/token');
  const data = Object.fromEntries(Object.entries(secret.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  assert.equal(data.expiration, '2026-12-08T12:00:00Z');
  assert.equal(data['token-id'], 'own001');
  assert.equal(data['auth-extra-groups'], 'system:bootstrappers:slipway:default-node-token');
});

test('the record: 0600, read back, a damaged one refused naming the field and never the secret; empty: no file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-tokens-'));
  try {
    assert.deepEqual(await readBootstrapTokens(dir), { machines: {}, retired: [] });
    const t = { machines: { w3: { id: 'abc123', secret: 'abcdefghijklmnop', expires: '2026-12-08T12:00:00Z' } }, retired: ['inst01'] };
    await writeBootstrapTokens(dir, t);
    assert.equal(statSync(join(dir, 'bootstrap-tokens.json')).mode & 0o777, 0o600);
    assert.deepEqual(await readBootstrapTokens(dir), t);
    for (const [text, msg] of [
      ['{', /bootstrap-tokens\.json: not JSON/],
      ['{"machines": {"w3": {"id": "abc123", "secret": "SHORTSECRET", "expires": "2026-12-08T12:00:00Z"}}}', /machines\.w3\.secret is not 16 characters/],
      ['{"machines": {"w3": {"id": "x", "secret": "abcdefghijklmnop", "expires": "2026"}}}', /machines\.w3\.id is not 6 characters/],
      ['{"retired": ["nope!"]}', /retired is not a list of token ids/],
    ] as const) {
      writeFileSync(join(dir, 'bootstrap-tokens.json'), text);
      await assert.rejects(readBootstrapTokens(dir), (e: Error) => msg.test(e.message) && !e.message.includes('SHORTSECRET'));
    }
    await writeBootstrapTokens(dir, { machines: {}, retired: [] });
    assert.equal(existsSync(join(dir, 'bootstrap-tokens.json')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('windowFor (slipway remove): a reprovisioned machine gets a fresh token; an unused old one is deleted, a used one is already gone; the others are kept', () => {
  const t = (id: string, used?: true): WindowToken => ({ id, secret: 'abcdefghijklmnop', expires: '2026-12-08T12:00:00Z', ...(used ? { used } : {}) });
  const fresh = t('new001');
  const used = windowFor({ machines: { w2: t('old001', true), w1: t('kept01', true) }, retired: ['inst01'] }, 'w2', fresh);
  assert.deepEqual(used.create, [{ machine: 'w2', token: fresh }]);
  assert.deepEqual(used.remove, []);
  assert.deepEqual(used.next, { machines: { w2: fresh, w1: t('kept01', true) }, retired: ['inst01'] });
  const open = windowFor({ machines: { w2: t('old002') }, retired: [] }, 'w2', fresh);
  assert.deepEqual(open.remove.map((r) => r.id), ['old002']);
  assert.deepEqual(windowFor({ machines: {}, retired: [] }, 'w2', fresh).next.machines, { w2: fresh });
});
