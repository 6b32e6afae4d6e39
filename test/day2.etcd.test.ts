// etcd snapshots, checked by the real etcd 3.4 and etcdctl: one TLS member on loopback
// with the state's certificates (client-cert-auth, as machines run it), some keys, then
// a snapshot through its gRPC gateway with the provisioner's client certificate. What
// Slipway says of the file (revision, keys, crc32c hash) must be what
// `etcdctl snapshot status` says; `etcdctl snapshot restore` must accept it and a member
// started on the restored data must serve the keys. Files that are not snapshots are
// refused naming why.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { singleSpec } from './helpers/spec.ts';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';
import { etcdClientTls, takeSnapshot } from '../src/day2/etcd.ts';
import { NotASnapshot, snapshotStatus } from '../src/day2/snapshot-file.ts';

const SKIP = spawnSync('sh', ['-c', 'command -v etcd && command -v etcdctl']).status !== 0 ? 'etcd/etcdctl missing (Debian packages etcd-server, etcd-client)' : false;

let work: string;
let state: string;
let etcd: ChildProcess | undefined;
let client: string;
let logs = '';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

const etcdctl = (args: string[], endpoint = client) =>
  spawnSync('etcdctl', [`--endpoints=${endpoint}`, `--cacert=${join(state, 'pki/etcd/ca.crt')}`, `--cert=${join(state, 'pki/etcd/healthcheck-client.crt')}`, `--key=${join(state, 'pki/etcd/healthcheck-client.key')}`, '--dial-timeout=3s', '--command-timeout=10s', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout: 30_000,
  });

/** One member with the state's etcd/server/cp1 pair, on loopback ports of its own. */
async function startEtcd(dataDir: string, fresh: boolean, ports?: [number, number]): Promise<ChildProcess> {
  const [c, p] = ports ?? [await freePort(), await freePort()];
  client = `https://127.0.0.1:${c}`;
  const pki = join(state, 'pki/etcd');
  const child = spawn('etcd', [
    '--name=cp1', `--data-dir=${dataDir}`,
    `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
    `--listen-peer-urls=https://127.0.0.1:${p}`, `--initial-advertise-peer-urls=https://127.0.0.1:${p}`,
    `--initial-cluster=cp1=https://127.0.0.1:${p}`, ...(fresh ? ['--initial-cluster-state=new'] : []),
    '--client-cert-auth=true', `--trusted-ca-file=${pki}/ca.crt`, `--cert-file=${pki}/server/cp1.crt`, `--key-file=${pki}/server/cp1.key`,
    '--peer-client-cert-auth=true', `--peer-trusted-ca-file=${pki}/ca.crt`, `--peer-cert-file=${pki}/peer/cp1.crt`, `--peer-key-file=${pki}/peer/cp1.key`,
    '--listen-metrics-urls=http://127.0.0.1:0',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (logs = (logs + d).slice(-6000)));
  child.stderr!.on('data', (d: Buffer) => (logs = (logs + d).slice(-6000)));
  for (let i = 0; i < 100; i++) {
    if (etcdctl(['endpoint', 'health']).status === 0) return child;
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  assert.fail(`etcd did not become healthy:\n${logs}`);
}

async function stopEtcd(): Promise<void> {
  if (!etcd || etcd.exitCode !== null) return;
  const gone = new Promise((r) => etcd!.once('exit', r));
  etcd.kill('SIGTERM');
  await gone;
}

before(async () => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'slipway-day2-etcd-'));
  state = join(work, 'state');
  await loadOrCreateSecrets(state, singleSpec());
  etcd = await startEtcd(join(work, 'data'), true);
});

after(async () => {
  await stopEtcd();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a snapshot over the gateway: atomic, 0600, and what etcdctl snapshot status says of it', { skip: SKIP, timeout: 60_000 }, async () => {
  for (let i = 0; i < 50; i++) assert.equal(etcdctl(['put', `/registry/configmaps/default/k${i}`, `v${i}`]).status, 0);
  assert.equal(etcdctl(['del', '/registry/configmaps/default/k7']).status, 0);
  const firstClient = client;
  const out = join(work, 'snap.db');
  const lines: string[] = [];
  const r = await takeSnapshot([{ name: 'cp1', url: client }], await etcdClientTls(state), out, (s) => lines.push(s));
  assert.equal(statSync(out).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(work).filter((f) => f.includes('.tmp-')), [], 'a temp file was left');
  assert.equal(r.member, 'cp1');
  assert.ok(r.checksummed);
  const status = JSON.parse(etcdctl(['snapshot', 'status', out, '-w', 'json']).stdout);
  assert.deepEqual({ hash: r.hash, revision: r.revision, totalKey: r.totalKey, totalSize: r.totalSize }, status);
  assert.ok(r.revision >= 51, `revision ${r.revision}`);
  const sha = spawnSync('sha256sum', [out], { encoding: 'utf8' }).stdout.split(' ')[0];
  assert.equal(r.sha256, sha);

  // the real restore accepts it, and a member on the restored data serves the keys
  const restored = join(work, 'restored');
  const ports: [number, number] = [await freePort(), await freePort()];
  const peer = `https://127.0.0.1:${ports[1]}`;
  const rs = spawnSync('etcdctl', ['snapshot', 'restore', out, `--data-dir=${restored}`, '--name=cp1', `--initial-cluster=cp1=${peer}`, `--initial-advertise-peer-urls=${peer}`], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  assert.equal(rs.status, 0, rs.stderr);
  const first = etcd;
  const second = await startEtcd(restored, false, ports);
  try {
    assert.equal(etcdctl(['get', '/registry/configmaps/default/k42', '--print-value-only']).stdout.trim(), 'v42');
    assert.equal(etcdctl(['get', '/registry/configmaps/default/k7', '--print-value-only']).stdout.trim(), '');
  } finally {
    etcd = second;
    await stopEtcd();
    etcd = first;
  }
  client = firstClient;
});

test('an unreachable member is skipped for the next; none reachable names each, and leaves no file', { skip: SKIP, timeout: 60_000 }, async () => {
  const out = join(work, 'snap2.db');
  const dead = `https://127.0.0.1:${await freePort()}`;
  const said: string[] = [];
  const r = await takeSnapshot([{ name: 'gone', url: dead }, { name: 'cp1', url: client }], await etcdClientTls(state), out, (s) => said.push(s));
  assert.equal(r.member, 'cp1');
  assert.match(said.join('\n'), /snapshot from gone failed: .*ECONNREFUSED/);
  await assert.rejects(takeSnapshot([{ name: 'gone', url: dead }], await etcdClientTls(state), join(work, 'none.db'), () => {}), /no etcd member gave a snapshot:\n {2}gone: .*ECONNREFUSED/);
  assert.ok(!existsSync(join(work, 'none.db')));
  assert.deepEqual(readdirSync(work).filter((f) => f.includes('.tmp-')), []);
});

test('a client certificate of another CA gets no snapshot', { skip: SKIP, timeout: 30_000 }, async () => {
  const tls = await etcdClientTls(state);
  const wrong = { ...tls, cert: readFileSync(join(state, 'pki/front-proxy-client.crt'), 'utf8'), key: readFileSync(join(state, 'pki/front-proxy-client.key'), 'utf8') };
  await assert.rejects(takeSnapshot([{ name: 'cp1', url: client }], wrong, join(work, 'x.db'), () => {}), /cp1: .*(certificate|socket hang up|ECONNRESET|alert)/i);
  assert.ok(!existsSync(join(work, 'x.db')));
});

test('files that are not snapshots are refused, saying why', { skip: SKIP }, () => {
  const good = readFileSync(join(work, 'snap.db'));
  const refuse = (b: Buffer, re: RegExp) => assert.throws(() => snapshotStatus(b, 'F'), (e: Error) => e instanceof NotASnapshot && re.test(e.message));
  refuse(Buffer.from('apiVersion: v1\nkind: ConfigMap\n'), /^F is not an etcd snapshot \(a bbolt database\): too short/);
  refuse(Buffer.alloc(8192), /^F is not an etcd snapshot .*no bbolt meta page/);
  // one flipped byte: the sha256 trailer says so
  const flipped = Buffer.from(good);
  flipped[5000] = flipped[5000]! ^ 0xff;
  refuse(flipped, /^F is not an intact etcd snapshot: its sha256 trailer does not match/);
  // cut in half (no trailer any more): the pages it names are gone
  refuse(good.subarray(0, 8192), /F: page \d+ is outside the file|F is not an etcd snapshot/);
  // a bbolt database that is not etcd's is said to be one
  writeFileSync(join(work, 'plain.db'), good.subarray(0, good.length - 32));
  assert.equal(snapshotStatus(readFileSync(join(work, 'plain.db'))).checksummed, false);
});

test('a member that accepts the connection but never completes TLS (down behind a switch, hung) is given up after 5 s, not the 120 s stream timeout', { skip: SKIP, timeout: 60_000 }, async () => {
  const held: import('node:net').Socket[] = [];
  const silent = createServer((s) => void held.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const url = `https://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const said: string[] = [];
    const r = await takeSnapshot([{ name: 'hung', url }, { name: 'cp1', url: client }], await etcdClientTls(state), join(work, 'snap3.db'), (s) => said.push(s));
    assert.equal(r.member, 'cp1');
    assert.match(said.join('\n'), /snapshot from hung failed: .*no TLS connection within 5 s \(is the member down\?\)/);
    assert.equal(held.length, 1, 'the hung member was asked once');
  } finally {
    for (const s of held) s.destroy();
    silent.close();
  }
});
