// `slipway certs check` and `certs renew` on their own: which ports each machine of the
// HA example serves TLS on; a certificate served on loopback with the state's own pair
// read off the wire, its not-after as `openssl s_client | openssl x509` prints it, its CA
// named; the table and the exit rule; renew re-issues leaves (new serial, new not-after,
// same CA, accepted by `openssl verify`) and nothing else, and refuses a CA or an unknown
// id writing nothing. The live checks against a rehearsed cluster are in
// test/helpers/day2-live.ts, run by rehearse.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haSpec } from './helpers/spec.ts';
import { snapshot } from './helpers/fs-snapshot.ts';
import { slipway, EXAMPLE_HA } from './helpers/cli.ts';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';
import { checkHeld, checkServed, checkState, dueReason, endpoints, formatTable, heldScript, readCas } from '../src/day2/certs.ts';
import { renewCertificates } from '../src/day2/renew.ts';

const DAY = 24 * 60 * 60 * 1000;
const OPENSSL = spawnSync('sh', ['-c', 'command -v openssl']).status === 0 ? false : 'openssl missing (Debian package openssl)';

function withState(fn: (state: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-day2-certs-'));
    try {
      await fn(join(dir, 'state'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test('the ports certs check reads: apiserver, etcd client and peer on control-plane/etcd machines, kubelet everywhere, the VIP', () => {
  const eps = endpoints(haSpec());
  const at = (m: string) => eps.filter((e) => e.machine === m).map((e) => `${e.name}@${e.host}:${e.port}`);
  assert.deepEqual(at('cp1'), ['apiserver@10.20.30.11:6443', 'etcd-server@10.20.30.11:2379', 'etcd-peer@10.20.30.11:2380', 'kubelet@10.20.30.11:10250']);
  assert.deepEqual(at('w2'), ['kubelet@10.20.30.22:10250']);
  assert.deepEqual(at('VIP'), ['apiserver@10.20.30.10:6443']);
  assert.ok(eps.filter((e) => e.name.startsWith('etcd')).every((e) => e.etcdClient));
  assert.equal(eps.length, 3 * 4 + 2 + 1);
});

test('a served certificate is read off the wire: not-after as openssl s_client says, the CA that signed it', { skip: OPENSSL, timeout: 30_000 }, withState(async (state) => {
  const spec = haSpec();
  const secrets = await loadOrCreateSecrets(state, spec);
  const server = createServer({ cert: secrets.certs.apiserver.cert, key: secrets.certs.apiserver.key });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const cas = await readCas(state);
    const now = Date.now();
    const [row, dead] = await checkServed([{ name: 'apiserver', machine: 'cp1', host: '127.0.0.1', port }, { name: 'kubelet', machine: 'w1', host: '127.0.0.1', port: 1 }], cas, undefined, now, 3000);
    // not spawnSync: the server answering it runs on this event loop
    const s = await promisify(execFile)('sh', ['-c', `openssl s_client -connect 127.0.0.1:${port} </dev/null 2>/dev/null | openssl x509 -noout -enddate -serial`], { encoding: 'utf8', timeout: 20_000 });
    const enddate = /notAfter=(.*)/.exec(s.stdout)?.[1];
    assert.ok(enddate, s.stdout + s.stderr);
    assert.equal(row!.notAfter!.getTime(), new Date(enddate).getTime());
    assert.equal(row!.serial, /serial=(\w+)/.exec(s.stdout)?.[1]);
    assert.equal(row!.ca, 'ca');
    assert.equal(row!.daysLeft, Math.floor((row!.notAfter!.getTime() - now) / DAY));
    assert.equal(row!.daysLeft, 364);
    assert.equal(dead!.error, 'ECONNREFUSED');
    assert.equal(dueReason(row!, 30), undefined);
    assert.equal(dueReason(row!, 365), 'due (within 365 days)');
    assert.equal(dueReason(dead!, 30), 'unreadable: ECONNREFUSED');
    assert.equal(dueReason({ ...row!, daysLeft: -1 }, 30), 'expired');
    const table = formatTable([row!, dead!], 30).split('\n');
    assert.match(table[0]!, /^NAME +MACHINE +WHERE +NOT-AFTER +DAYS +CA +STATUS$/);
    assert.match(table[1]!, new RegExp(`^apiserver +cp1 +127\\.0\\.0\\.1:${port} +\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ +364 +ca +ok$`));
    assert.match(table[2]!, /^kubelet +w1 +127\.0\.0\.1:1 +- +- +- +unreadable: ECONNREFUSED$/);
  } finally {
    server.close();
  }
}));

test('the state\'s rows: every CA and leaf of the file, CAs self-signed, leaves by their CA', withState(async (state) => {
  const spec = haSpec();
  await loadOrCreateSecrets(state, spec);
  const rows = await checkState(state, spec, await readCas(state), Date.now());
  const by = new Map(rows.map((r) => [r.name, r]));
  assert.equal(by.get('ca')!.ca, 'self (CA)');
  assert.equal(by.get('etcd/peer/cp2')!.ca, 'etcd/ca');
  assert.equal(by.get('front-proxy-client')!.ca, 'front-proxy-ca');
  assert.equal(by.get('admin')!.ca, 'ca');
  assert.ok(rows.every((r) => !r.error && r.where === 'state'));
}));

test('what a machine holds: the script read by sh, sed and base64 over a rendered machine root: its certificate files and kubeconfigs\' client certificates, no key', withState(async (state) => {
  const out = join(state, '..', 'out');
  const r = slipway(['render', '-f', EXAMPLE_HA, '-o', out, '--state', state]);
  assert.equal(r.code, 0, r.stderr);
  const root = join(out, 'machines/cp1/root');
  const cas = await readCas(state);
  const rows = await checkHeld([{ name: 'cp1', ssh: { name: 'cp1', address: '10.20.30.11', hostKey: 'ssh-ed25519 AAAA' } }, { name: 'w9', why: 'not installed (booting)' }], async () => {
    const sh = spawnSync('sh', ['-s'], { input: heldScript(root), encoding: 'utf8' });
    assert.equal(sh.status, 0, sh.stderr);
    assert.doesNotMatch(sh.stdout, /PRIVATE KEY/);
    return sh.stdout;
  }, cas, Date.now());
  const by = new Map(rows.map((x) => [`${x.machine} ${x.name}`, x]));
  const serial = (id: string) => new X509Certificate(readFileSync(join(state, 'pki', `${id}.crt`), 'utf8')).serialNumber;
  for (const [name, id, ca] of [['pki/apiserver.crt', 'apiserver', 'ca'], ['pki/etcd/server.crt', 'etcd/server/cp1', 'etcd/ca'], ['pki/front-proxy-client.crt', 'front-proxy-client', 'front-proxy-ca'], ['admin.conf', 'admin', 'ca'], ['scheduler.conf', 'scheduler', 'ca'], ['kube-proxy.conf', 'kube-proxy', 'ca']] as const) {
    const x = by.get(`cp1 ${name}`);
    assert.ok(x, `cp1 ${name} missing: ${[...by.keys()].join(', ')}`);
    assert.equal(x.serial, serial(id), name);
    assert.equal(x.ca, ca, name);
    assert.equal(x.where, 'held');
  }
  assert.equal(by.get('cp1 pki/ca.crt')!.ca, 'self (CA)');
  assert.equal(by.get('w9 files')!.error, 'not installed (booting)');
}));

test('renew --all: every leaf re-issued (new serial and not-after, same CA, openssl verify accepts it); CAs, SA key and tokens untouched', { skip: OPENSSL }, withState(async (state) => {
  const spec = haSpec();
  const t0 = Date.now() - 300 * DAY; // issued 300 days ago: 65 days left, not due by render's rule
  await loadOrCreateSecrets(state, spec, { now: t0 });
  const pki = join(state, 'pki');
  const before = await snapshot(state);
  const read = (id: string) => new X509Certificate(readFileSync(join(pki, `${id}.crt`), 'utf8'));
  const old = read('apiserver');
  const said: string[] = [];
  const r = await renewCertificates(state, spec, 'all', (s) => said.push(s));
  const after = await snapshot(state);
  const leaves = r.renewed.map((x) => x.id);
  assert.equal(leaves.length, 15); // 9 rows of the table and 3 members' server and peer pairs
  assert.ok(!leaves.includes('ca') && !leaves.includes('etcd/ca') && !leaves.includes('front-proxy-ca'));
  for (const x of r.renewed) {
    assert.ok(x.notAfter.getTime() - x.before.getTime() > 299 * DAY, `${x.id}: ${x.before.toISOString()} → ${x.notAfter.toISOString()}`);
    assert.ok(said.some((s) => s.includes(`${x.id}.crt: renewal requested`)), said.join('\n'));
  }
  const now = read('apiserver');
  assert.notEqual(now.serialNumber, old.serialNumber);
  assert.equal(now.subjectAltName, old.subjectAltName);
  // unchanged: the CAs and their keys, the service-account pair, tokens.json
  for (const f of ['pki/ca.crt', 'pki/ca.key', 'pki/etcd/ca.key', 'pki/front-proxy-ca.crt', 'pki/sa.key', 'pki/sa.pub', 'tokens.json']) assert.equal(after[join(state, f)], before[join(state, f)], f);
  for (const id of leaves) assert.notEqual(after[join(pki, `${id}.crt`)], before[join(pki, `${id}.crt`)], id);
  const v = spawnSync('openssl', ['verify', '-CAfile', join(pki, 'ca.crt'), join(pki, 'apiserver.crt'), join(pki, 'admin.crt')], { encoding: 'utf8' });
  assert.equal(v.status, 0, v.stdout + v.stderr);
  const e = spawnSync('openssl', ['verify', '-CAfile', join(pki, 'etcd/ca.crt'), join(pki, 'etcd/server/cp1.crt')], { encoding: 'utf8' });
  assert.equal(e.status, 0, e.stdout + e.stderr);
}));

test('renew without --yes re-issues and says how to deliver', withState(async (state) => {
  await loadOrCreateSecrets(state, haSpec());
  const r = slipway(['certs', 'renew', '-f', EXAMPLE_HA, '--state', state, 'apiserver', 'admin']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^renewed apiserver: not after \S+ \(was \S+\)$/m);
  assert.match(r.stdout, /^2 leaf certificates re-issued in /m);
  assert.match(r.stdout, new RegExp(`Not delivered yet: .*: slipway apply -f ${EXAMPLE_HA.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} --state ${state.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} --yes$`, 'm'));
}));

test('renew by id renews only those; a CA or an unknown id is refused and nothing is written', withState(async (state) => {
  const spec = haSpec();
  await loadOrCreateSecrets(state, spec);
  const before = await snapshot(state);
  await assert.rejects(renewCertificates(state, spec, ['apiserver', 'etcd/ca'], () => {}), /etcd\/ca is a CA: Slipway renews leaf certificates only/);
  await assert.rejects(renewCertificates(state, spec, ['etcd/server/cp9'], () => {}), /no certificate "etcd\/server\/cp9" in this cluster; the leaves are: apiserver, /);
  assert.deepEqual(await snapshot(state), before);
  const r = await renewCertificates(state, spec, ['apiserver', 'apiserver'], () => {});
  assert.deepEqual(r.renewed.map((x) => x.id), ['apiserver']);
  const after = await snapshot(state);
  const changed = Object.keys(after).filter((k) => after[k] !== before[k] && !after[k]!.endsWith('<dir>')).map((k) => k.slice(state.length + 1)).sort();
  assert.deepEqual(changed, ['pki/apiserver.crt', 'pki/apiserver.key']);
}));

test('the CLI: usage errors exit 2; a wrong --state says so; a file that is not a snapshot is refused before anything', withState(async (state) => {
  assert.equal(slipway(['certs', 'renew', '-f', EXAMPLE_HA, '--state', state]).code, 2);
  assert.equal(slipway(['certs', 'renew', '-f', EXAMPLE_HA, '--state', state, '--all', 'apiserver']).code, 2);
  assert.equal(slipway(['certs', 'check', '-f', EXAMPLE_HA, '--window', 'soon']).code, 2);
  assert.equal(slipway(['certs', 'rotate']).code, 2);
  assert.equal(slipway(['etcd', 'snapshot', '-f', EXAMPLE_HA]).code, 2);
  const r = slipway(['certs', 'renew', '-f', EXAMPLE_HA, '--state', state, '--all']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /holds no PKI .*is it this cluster's state directory \(--state\)\?/);
  const c = slipway(['certs', 'check', '-f', EXAMPLE_HA, '--state', state]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /cannot read .*ca\.crt \(ENOENT\): is .* this cluster's state directory/);
  assert.match(slipway(['certs', 'renew', '-f', EXAMPLE_HA, '--state', state, '--all', '--assets', '/nonexistent']).stderr, /--assets is for the delivery: it goes with --yes/);
  const notSnap = join(state, '..', 'not.db');
  writeFileSync(notSnap, 'apiVersion: v1\n');
  for (const args of [['etcd', 'status', notSnap], ['etcd', 'restore', '-f', EXAMPLE_HA, '--state', state, '--from', notSnap, '--yes']]) {
    const x = slipway(args);
    assert.equal(x.code, 1, x.stderr);
    assert.match(x.stderr, /not\.db is not an etcd snapshot \(a bbolt database\): too short for a bbolt meta page/);
  }
}));
