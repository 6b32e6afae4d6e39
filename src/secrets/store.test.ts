// State-directory behaviour beyond what test/pki.openssl.test.ts proves with openssl:
// refusals that must leave everything as it was, repairs, tokens, and plan's dry run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdtemp, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { loadOrCreateSecrets, previewSecrets, stageSecrets } from './store.ts';
import { randomString, reconcileTokens } from './tokens.ts';
import { CA_IDS, type CertId } from './certlist.ts';
import type { CertKey } from './types.ts';
import { haSpec } from '../../test/helpers/spec.ts';
import { snapshot } from '../../test/helpers/fs-snapshot.ts';

async function tempState(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'slipway-store-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return join(root, 'state');
}

const pki = (state: string, file: string) => join(state, 'pki', file);

test('a CA certificate whose key is gone is refused, naming both files, and nothing changes', async (t) => {
  const state = await tempState(t);
  await loadOrCreateSecrets(state, haSpec());
  await unlink(pki(state, 'ca.key'));
  const before = await snapshot(state);
  await assert.rejects(loadOrCreateSecrets(state, haSpec()), (e: Error) => {
    assert.ok(e.message.includes(`CA certificate ${pki(state, 'ca.crt')} exists but its key ${pki(state, 'ca.key')} is missing`), e.message);
    assert.match(e.message, /restore the key from a backup, or delete .* to start a new PKI/);
    return true;
  });
  assert.deepEqual(await snapshot(state), before);
});

test('a CA key that belongs to another certificate is refused', async (t) => {
  const state = await tempState(t);
  await loadOrCreateSecrets(state, haSpec());
  await copyFile(pki(state, 'front-proxy-ca.key'), pki(state, 'etcd/ca.key'));
  const before = await snapshot(state);
  await assert.rejects(loadOrCreateSecrets(state, haSpec()), /CA key .*etcd\/ca\.key does not belong to .*etcd\/ca\.crt/);
  assert.deepEqual(await snapshot(state), before);
});

test('a service-account key of the other algorithm is refused', async (t) => {
  const state = await tempState(t);
  await loadOrCreateSecrets(state, haSpec());
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' });
  await writeFile(pki(state, 'sa.key'), rsa, { mode: 0o600 });
  const before = await snapshot(state);
  await assert.rejects(loadOrCreateSecrets(state, haSpec()), /service-account key .*sa\.key is rsa-2048; the cluster file asks for ecdsa-p256/);
  assert.deepEqual(await snapshot(state), before);
});

test('a deleted CA is created again (never replaced), and only its leaves are reissued', async (t) => {
  const state = await tempState(t);
  const s1 = await loadOrCreateSecrets(state, haSpec());
  await unlink(pki(state, 'front-proxy-ca.crt'));
  await unlink(pki(state, 'front-proxy-ca.key'));
  const logs: string[] = [];
  const s2 = await loadOrCreateSecrets(state, haSpec(), { log: (m) => logs.push(m) });
  const changed = (Object.keys(s2.certs) as CertId[]).filter((id) => s2.certs[id]!.cert !== s1.certs[id]!.cert);
  assert.deepEqual(changed, ['front-proxy-ca', 'front-proxy-client']);
  assert.deepEqual(logs, [
    `created CA ${pki(state, 'front-proxy-ca.crt')}`,
    `reissued ${pki(state, 'front-proxy-client.crt')}: not signed by the current front-proxy-ca`,
  ]);
});

test('a leaf whose key is gone is reissued; a loosened key file is set back to 0600', async (t) => {
  const state = await tempState(t);
  const s1 = await loadOrCreateSecrets(state, haSpec());
  await unlink(pki(state, 'admin.key'));
  await chmod(pki(state, 'scheduler.key'), 0o644);
  await chmod(state, 0o755);
  const logs: string[] = [];
  const s2 = await loadOrCreateSecrets(state, haSpec(), { log: (m) => logs.push(m) });
  assert.notEqual(s2.certs.admin!.cert, s1.certs.admin!.cert);
  assert.deepEqual(s2.certs.scheduler, s1.certs.scheduler);
  assert.equal((await stat(pki(state, 'scheduler.key'))).mode & 0o777, 0o600);
  assert.equal((await stat(state)).mode & 0o777, 0o700);
  assert.deepEqual(logs.sort(), [
    `${pki(state, 'scheduler.key')} was readable by others; set it to 0600`,
    `${state} was readable by others; set it to 0700`,
    `reissued ${pki(state, 'admin.crt')}: key missing`,
  ].sort());
});

test('changing certValidityDays reissues every leaf, never a CA', async (t) => {
  const state = await tempState(t);
  const s1 = await loadOrCreateSecrets(state, haSpec());
  const s2 = await loadOrCreateSecrets(state, haSpec({ pki: { keyAlgorithm: 'ecdsa-p256', caValidityDays: 100, certValidityDays: 90, bootstrapTokenValidityHours: 24 } }));
  for (const [id, ck] of Object.entries(s2.certs) as [CertId, CertKey][]) {
    const isCa = (CA_IDS as readonly CertId[]).includes(id);
    assert.equal(ck.cert === s1.certs[id]!.cert, isCa, id);
  }
});

test('tokens.json that is not JSON is refused rather than replaced', async (t) => {
  const state = await tempState(t);
  await loadOrCreateSecrets(state, haSpec());
  await writeFile(join(state, 'tokens.json'), '{"bootstrapToken": ', { mode: 0o600 });
  const before = await snapshot(state);
  await assert.rejects(loadOrCreateSecrets(state, haSpec()), /tokens\.json is not valid JSON .*restore it from a backup/);
  assert.deepEqual(await snapshot(state), before);
});

test('tokens: invalid fields are refused, missing ones created, removed machines dropped', () => {
  const f = 'tokens.json';
  assert.throws(() => reconcileTokens({ bootstrapToken: { id: 'ABCDEF', secret: 'x'.repeat(16) } }, [], f), /bootstrapToken\.id is not 6 characters/);
  assert.throws(() => reconcileTokens({ encryptionKey: 'c2hvcnQ=' }, [], f), /encryptionKey is not base64 of 32 bytes/);
  const keep = 'k'.repeat(43);
  const { tokens, changes } = reconcileTokens({ machineTokens: { a: keep, gone: 'g'.repeat(43) } }, ['a', 'b'], f);
  assert.equal(tokens.machineTokens.a, keep);
  assert.match(tokens.machineTokens.b ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(Object.keys(tokens.machineTokens), ['a', 'b']);
  assert.deepEqual(changes, ['created bootstrap token', 'created encryption key', 'created machine tokens for b', 'removed machine tokens of gone']);
});

test('randomString uses the whole alphabet and nothing else', () => {
  const s = randomString(20_000);
  assert.match(s, /^[a-z0-9]{20000}$/);
  assert.equal(new Set(s).size, 36);
});

test('previewSecrets computes the same secrets without writing anything', async (t) => {
  const state = await tempState(t);
  const fresh = await previewSecrets(state, haSpec());
  assert.ok(fresh.certs.apiserver && fresh.machineTokens.w2);
  await assert.rejects(stat(state), { code: 'ENOENT' });

  const saved = await loadOrCreateSecrets(state, haSpec());
  const before = await snapshot(state);
  assert.deepEqual(await previewSecrets(state, haSpec()), saved);
  const renamed = haSpec({ controlPlane: { ...haSpec().controlPlane, endpoint: 'api.example' } });
  const preview = await previewSecrets(state, renamed);
  assert.notEqual(preview.certs.apiserver!.cert, saved.certs.apiserver!.cert);
  assert.deepEqual(preview.certs.admin, saved.certs.admin);
  assert.deepEqual(await snapshot(state), before);
});

test('staged secrets write nothing until committed, then exactly what loadOrCreateSecrets would', async (t) => {
  const state = await tempState(t);
  const said: string[] = [];
  const staged = await stageSecrets(state, haSpec(), { log: (m) => said.push(m) });
  // a render that fails after this point (a writer refusing a value) commits nothing
  await assert.rejects(stat(state), { code: 'ENOENT' });
  assert.equal(said.length, 0, 'nothing reported as created before the commit');
  await staged.commit();
  assert.ok(said.some((m) => m.startsWith('created a new ecdsa-p256 PKI')), said.join('\n'));
  assert.equal((await stat(state)).mode & 0o777, 0o700);
  assert.equal((await stat(join(state, 'tokens.json'))).mode & 0o777, 0o600);
  // the committed state is the staged one: reading it back gives the same secrets
  assert.deepEqual(await loadOrCreateSecrets(state, haSpec()), staged.secrets);

  // on an existing state, a staged change (a new machine's token and certificates) is
  // invisible until committed
  const before = await snapshot(state);
  const spec = haSpec();
  spec.machines.push({ ...spec.machines[4]!, name: 'w3', mac: '52:54:00:20:30:23', ip: '10.20.30.23' });
  const grown = await stageSecrets(state, spec);
  assert.ok(grown.secrets.machineTokens.w3);
  assert.deepEqual(await snapshot(state), before);
  await grown.commit();
  assert.deepEqual((await loadOrCreateSecrets(state, spec)).machineTokens, grown.secrets.machineTokens);
});
