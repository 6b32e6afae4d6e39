// The PKI checked by a real consumer: every certificate Slipway writes is verified and
// inspected with the openssl command line, the way an operator (or kubeadm's own
// checks) would look at it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';
import { CA_IDS, certList, type CertDef, type CertId } from '../src/secrets/certlist.ts';
import type { Secrets } from '../src/secrets/types.ts';
import type { KeyAlgorithm, Spec } from '../src/spec/types.ts';
import { haSpec, machine } from './helpers/spec.ts';
import { snapshot } from './helpers/fs-snapshot.ts';

const OPENSSL = '/usr/bin/openssl';
const openssl = (...args: string[]): string => execFileSync(OPENSSL, args, { encoding: 'utf8' });

async function tempState(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'slipway-pki-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return join(root, 'state'); // not created yet: the store must create it 0700
}

const withAlg = (alg: KeyAlgorithm, spec = haSpec()): Spec => ({ ...spec, pki: { ...spec.pki, keyAlgorithm: alg } });

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;
const crt = (state: string, id: string) => join(state, 'pki', `${id}.crt`);
const key = (state: string, id: string) => join(state, 'pki', `${id}.key`);

interface Inspected {
  subject: string;
  issuer: string;
  basic: string;
  keyUsage: string;
  eku?: string;
  san?: string;
  publicKey: string;
  signature: string;
  notBefore: number;
  notAfter: number;
}

/** The lines of `openssl x509 -text` a reviewer looks at. */
function inspect(file: string): Inspected {
  const text = openssl('x509', '-in', file, '-noout', '-text');
  const line = (re: RegExp) => text.match(re)?.[1]?.trim();
  const after = (header: string) => line(new RegExp(`${header}:(?: critical)?\\s*\\n\\s*(.*)`));
  return {
    subject: line(/Subject: (.*)/)!,
    issuer: line(/Issuer: (.*)/)!,
    basic: line(/X509v3 Basic Constraints: critical\s*\n\s*(.*)/)!, // also proves it is critical
    keyUsage: line(/X509v3 Key Usage: critical\s*\n\s*(.*)/)!,
    eku: after('X509v3 Extended Key Usage'),
    san: after('X509v3 Subject Alternative Name'),
    publicKey: [line(/Public Key Algorithm: (.*)/), line(/Public-Key: (\(\d+ bit\))/), line(/ASN1 OID: (.*)/)].filter(Boolean).join(' '),
    signature: line(/Signature Algorithm: (.*)/)!,
    notBefore: Date.parse(line(/Not Before: (.*)/)!),
    notAfter: Date.parse(line(/Not After : (.*)/)!),
  };
}

const expectedSubject = (d: CertDef) => [...(d.o ?? []).map((o) => `O = ${o}`), `CN = ${d.cn}`].join(', ');
const expectedSan = (d: CertDef) => d.sans && [...d.sans.dns.map((n) => `DNS:${n}`), ...d.sans.ip.map((n) => `IP Address:${n}`)].join(', ');
const EKU_NAMES = { server: 'TLS Web Server Authentication', client: 'TLS Web Client Authentication' } as const;
const PURPOSE = { server: 'sslserver', client: 'sslclient' } as const;

function verify(caFile: string, leafFile: string, purpose?: string): string {
  const args = ['verify', '-x509_strict', ...(purpose ? ['-purpose', purpose] : []), '-CAfile', caFile, leafFile];
  const r = spawnSync(OPENSSL, args, { encoding: 'utf8' });
  return (r.stdout + r.stderr).trim();
}

const pubOfKey = (file: string) => openssl('pkey', '-in', file, '-pubout');
const pubOfCert = (file: string) => openssl('x509', '-in', file, '-noout', '-pubkey');

function checkCert(state: string, d: CertDef, alg: KeyAlgorithm, issuedAt: number): void {
  const file = crt(state, d.id);
  const c = inspect(file);
  assert.equal(c.subject, expectedSubject(d), `${d.id} subject`);
  assert.equal(c.publicKey, alg === 'rsa-2048' ? 'rsaEncryption (2048 bit)' : 'id-ecPublicKey (256 bit) prime256v1', d.id);
  assert.equal(c.signature, alg === 'rsa-2048' ? 'sha256WithRSAEncryption' : 'ecdsa-with-SHA256', d.id);
  // Backdated a few minutes for clock skew, valid for the configured days from now.
  assert.ok(c.notBefore <= issuedAt - 4 * 60_000 && c.notBefore >= issuedAt - 10 * 60_000, `${d.id} notBefore`);
  assert.ok(Math.abs(c.notAfter - (issuedAt + d.validityDays * 86_400_000)) < 60_000, `${d.id} notAfter`);
  assert.equal(pubOfKey(key(state, d.id)), pubOfCert(file), `${d.id}: key does not match certificate`);
  const serial = openssl('x509', '-in', file, '-noout', '-serial').trim();
  assert.match(serial, /^serial=[0-9A-F]{1,32}$/, `${d.id}: positive serial of at most 128 bits`);
  if (d.isCA) {
    assert.equal(c.basic, 'CA:TRUE', d.id);
    assert.equal(c.keyUsage, 'Digital Signature, Certificate Sign, CRL Sign', d.id);
    assert.equal(c.issuer, c.subject, `${d.id} is self-signed`);
    assert.equal(verify(file, file), `${file}: OK`);
    return;
  }
  assert.equal(c.basic, 'CA:FALSE', d.id);
  assert.equal(c.keyUsage, alg === 'rsa-2048' ? 'Digital Signature, Key Encipherment' : 'Digital Signature', d.id);
  assert.equal(c.eku, d.usages.map((u) => EKU_NAMES[u]).join(', '), `${d.id} extended key usage`);
  assert.equal(c.san, expectedSan(d), `${d.id} SANs`);
  for (const u of d.usages) assert.equal(verify(crt(state, d.ca!), file, PURPOSE[u]), `${file}: OK`, `${d.id} as ${u}`);
  // and signed by its own CA only
  const other = d.ca === 'etcd/ca' ? 'ca' : 'etcd/ca';
  assert.notEqual(verify(crt(state, other), file), `${file}: OK`, `${d.id} must not verify against ${other}`);
}

async function checkFiles(state: string, s: Secrets, defs: CertDef[]): Promise<void> {
  assert.equal(await mode(state), 0o700);
  assert.equal(await mode(join(state, 'pki')), 0o700);
  for (const d of defs) {
    assert.equal(await readFile(crt(state, d.id), 'utf8'), s.certs[d.id]!.cert, `${d.id}.crt is what Secrets holds`);
    assert.equal(await readFile(key(state, d.id), 'utf8'), s.certs[d.id]!.key, `${d.id}.key is what Secrets holds`);
    assert.equal(await mode(crt(state, d.id)), 0o644, `${d.id}.crt mode`);
    assert.equal(await mode(key(state, d.id)), 0o600, `${d.id}.key mode`);
    assert.match(s.certs[d.id]!.key, /^-----BEGIN PRIVATE KEY-----\n/, `${d.id}: PKCS#8`);
  }
  assert.deepEqual(Object.keys(s.certs), defs.map((d) => d.id));
}

async function checkServiceAccountAndTokens(state: string, s: Secrets, alg: KeyAlgorithm, spec: Spec): Promise<void> {
  const saKey = join(state, 'pki', 'sa.key');
  assert.equal(await mode(saKey), 0o600);
  assert.equal(await readFile(join(state, 'pki', 'sa.pub'), 'utf8'), s.serviceAccount.pub);
  assert.match(s.serviceAccount.pub, /^-----BEGIN PUBLIC KEY-----\n/);
  assert.equal(pubOfKey(saKey), s.serviceAccount.pub, 'sa.pub belongs to sa.key');
  assert.match(openssl('pkey', '-in', saKey, '-noout', '-text'), alg === 'rsa-2048' ? /Private-Key: \(2048 bit/ : /ASN1 OID: prime256v1/);

  assert.equal(await mode(join(state, 'tokens.json')), 0o600);
  assert.match(s.bootstrapToken.id, /^[a-z0-9]{6}$/);
  assert.match(s.bootstrapToken.secret, /^[a-z0-9]{16}$/);
  assert.equal(Buffer.from(s.encryptionKey, 'base64').length, 32);
  assert.deepEqual(Object.keys(s.machineTokens), spec.machines.map((m) => m.name));
  for (const tok of Object.values(s.machineTokens)) assert.match(tok, /^[A-Za-z0-9_-]{32,}$/);
  assert.equal(new Set(Object.values(s.machineTokens)).size, spec.machines.length, 'machine tokens are distinct');
}

for (const alg of ['ecdsa-p256', 'rsa-2048'] as const) {
  test(`${alg}: every certificate passes openssl verify and carries the right names, usages and key`, async (t) => {
    const state = await tempState(t);
    const spec = withAlg(alg);
    const defs = certList(spec);
    const issuedAt = Date.now();
    const s = await loadOrCreateSecrets(state, spec);
    await checkFiles(state, s, defs);
    for (const d of defs) checkCert(state, d, alg, issuedAt);
    const serials = defs.map((d) => openssl('x509', '-in', crt(state, d.id), '-noout', '-serial'));
    assert.equal(new Set(serials).size, defs.length, 'serials are unique');
    await checkServiceAccountAndTokens(state, s, alg, spec);
  });

  test(`${alg}: a second call returns byte-identical secrets and touches no file`, async (t) => {
    const state = await tempState(t);
    const spec = withAlg(alg);
    const first = await loadOrCreateSecrets(state, spec);
    const before = await snapshot(state);
    const logs: string[] = [];
    const second = await loadOrCreateSecrets(state, spec, { log: (m) => logs.push(m) });
    assert.equal(JSON.stringify(second), JSON.stringify(first));
    assert.deepEqual(logs, []);
    assert.deepEqual(await snapshot(state), before);
  });
}

test('adding a control-plane machine reissues only the apiserver certificate and adds the new etcd pair; removing one prunes', async (t) => {
  const state = await tempState(t);
  const spec = haSpec();
  const s1 = await loadOrCreateSecrets(state, spec);

  const grown = haSpec({ machines: [...spec.machines.slice(0, 3), machine('cp4', '10.20.30.14', ['control-plane', 'etcd']), ...spec.machines.slice(3)] });
  const logs: string[] = [];
  const s2 = await loadOrCreateSecrets(state, grown, { log: (m) => logs.push(m) });
  const changed = (Object.keys(s2.certs) as CertId[]).filter((id) => s1.certs[id]?.cert !== s2.certs[id]!.cert || s1.certs[id]?.key !== s2.certs[id]!.key);
  assert.deepEqual(changed, ['apiserver', 'etcd/server/cp4', 'etcd/peer/cp4']);
  for (const ca of CA_IDS) assert.deepEqual(s2.certs[ca], s1.certs[ca], `${ca} kept`);
  assert.deepEqual(s2.serviceAccount, s1.serviceAccount);
  assert.deepEqual(s2.bootstrapToken, s1.bootstrapToken);
  assert.equal(s2.encryptionKey, s1.encryptionKey);
  for (const m of spec.machines) assert.equal(s2.machineTokens[m.name], s1.machineTokens[m.name], `${m.name} token kept`);
  assert.match(s2.machineTokens.cp4 ?? '', /^[A-Za-z0-9_-]{32,}$/);

  const api = inspect(crt(state, 'apiserver'));
  assert.match(api.san!, /DNS:cp4/);
  assert.match(api.san!, /IP Address:10\.20\.30\.14/);
  assert.equal(verify(crt(state, 'ca'), crt(state, 'apiserver'), 'sslserver'), `${crt(state, 'apiserver')}: OK`);
  assert.equal(verify(crt(state, 'etcd/ca'), crt(state, 'etcd/peer/cp4'), 'sslclient'), `${crt(state, 'etcd/peer/cp4')}: OK`);
  assert.ok(logs.some((l) => /reissued .*apiserver\.crt: definition changed \(sans\)/.test(l)), logs.join('\n'));
  assert.ok(logs.some((l) => /issued .*etcd\/server\/cp4\.crt$/.test(l)), logs.join('\n'));

  // Taking cp3 out: its etcd pair and token go, the apiserver loses its names.
  const shrunk = haSpec({ machines: grown.machines.filter((m) => m.name !== 'cp3') });
  const s3 = await loadOrCreateSecrets(state, shrunk, { log: (m) => logs.push(m) });
  await assert.rejects(stat(crt(state, 'etcd/server/cp3')), { code: 'ENOENT' });
  await assert.rejects(stat(key(state, 'etcd/peer/cp3')), { code: 'ENOENT' });
  assert.ok(!('etcd/server/cp3' in s3.certs));
  assert.ok(!('cp3' in s3.machineTokens));
  assert.doesNotMatch(inspect(crt(state, 'apiserver')).san!, /cp3|10\.20\.30\.13/);
  assert.deepEqual(s3.certs['etcd/server/cp1'], s1.certs['etcd/server/cp1']);
});

test('switching keyAlgorithm with an existing CA throws a clear error and changes nothing', async (t) => {
  const state = await tempState(t);
  await loadOrCreateSecrets(state, withAlg('ecdsa-p256'));
  const before = await snapshot(state);
  await assert.rejects(loadOrCreateSecrets(state, withAlg('rsa-2048')), (e: Error) => {
    assert.match(e.message, /has an ecdsa-p256 CA/);
    assert.match(e.message, /the cluster file asks for rsa-2048/);
    assert.ok(e.message.includes(`delete ${join(state, 'pki')} to start a new PKI`), e.message);
    return true;
  });
  assert.deepEqual(await snapshot(state), before);
});

test('leaves about to expire are reissued, the CAs are kept', async (t) => {
  const state = await tempState(t);
  const spec = haSpec();
  const longAgo = Date.now() - 340 * 86_400_000; // leaves (365 days) now have 25 days left
  const old = await loadOrCreateSecrets(state, spec, { now: longAgo });
  const logs: string[] = [];
  const renewed = await loadOrCreateSecrets(state, spec, { log: (m) => logs.push(m) });
  const leaves = certList(spec).filter((d) => !d.isCA);
  for (const d of leaves) {
    assert.notEqual(renewed.certs[d.id]!.cert, old.certs[d.id]!.cert, `${d.id} renewed`);
    assert.ok(inspect(crt(state, d.id)).notAfter > Date.now() + 300 * 86_400_000, `${d.id} has a fresh year`);
    assert.equal(verify(crt(state, d.ca!), crt(state, d.id)), `${crt(state, d.id)}: OK`);
  }
  for (const ca of CA_IDS) assert.deepEqual(renewed.certs[ca], old.certs[ca]);
  assert.equal(logs.filter((l) => /reissued .*: expires on /.test(l)).length, leaves.length, logs.join('\n'));
});
