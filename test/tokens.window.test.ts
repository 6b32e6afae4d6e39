// Bootstrap token windows beyond apply (issue 17): the file's token TTL
// (spec.pki.bootstrapTokenValidityHours, kubeadm's 24 h by default) checked like every
// field (FILE:LINE:COL), apply's --token-ttl checked as a flag; which apiservers serve's
// reprovision asks (the VIP, then installed control-plane machines', never the machine
// itself; none before the cluster runs); and a window the cluster cannot take recorded
// nowhere. The window itself is proved on the real v1.20.2 apiserver in
// versions.binaries.test.ts (test/helpers/token-checks.ts: checkReprovisionWindow).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXAMPLE_HA, slipway } from './helpers/cli.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import { apiEndpoints } from '../src/serve/window.ts';
import { KubeClient } from '../src/kube/client.ts';
import { openWindow } from '../src/kube/windows.ts';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';
import type { State } from '../src/store/states.ts';
import { SqliteStore } from '../src/store/sqlite.ts';
import { Lifecycle } from '../src/lifecycle/lifecycle.ts';

const HA = readFileSync(EXAMPLE_HA, 'utf8');
const withTtl = (v: string) => HA.replace(/^( {4}keyAlgorithm: .*)$/m, `$1\n    bootstrapTokenValidityHours: ${v}`);

test('spec.pki.bootstrapTokenValidityHours: 24 by default, the file\'s when given, refused out of range with FILE:LINE:COL', () => {
  assert.equal(parseClusterFile(HA, 'lab.yaml').spec!.pki.bootstrapTokenValidityHours, 24);
  assert.equal(parseClusterFile(withTtl('48'), 'lab.yaml').spec!.pki.bootstrapTokenValidityHours, 48);
  const dir = mkdtempSync(join(tmpdir(), 'slipway-ttl-'));
  try {
    for (const [v, msg] of [['0', /must be >= 1/], ['721', /must be <= 720/], ['"1d"', /must be integer|expected integer|must be an integer/], ['1.5', /integer/]] as const) {
      const text = withTtl(v);
      const file = join(dir, 'cluster.yaml');
      writeFileSync(file, text);
      const r = slipway(['validate', '-f', file]);
      assert.equal(r.code, 1, `${v}: ${r.stdout}${r.stderr}`);
      const line = text.split('\n').findIndex((l) => l.includes('bootstrapTokenValidityHours')) + 1;
      const col = text.split('\n')[line - 1]!.indexOf(v) + 1;
      const out = r.stdout + r.stderr;
      assert.match(out, new RegExp(`${file.replaceAll('.', '\\.')}:${line}:${col}: spec\\.pki\\.bootstrapTokenValidityHours: `), out);
      assert.match(out, msg, out);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('apply --token-ttl: whole hours 1..720, else a usage error naming the flag and the file field', () => {
  for (const v of ['0', '721', 'soon']) {
    const r = slipway(['apply', '-f', EXAMPLE_HA, '--token-ttl', v, '--dry-run']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--token-ttl must be a whole number of hours, 1\.\.720 \(default: the file's spec\.pki\.bootstrapTokenValidityHours, else kubeadm's 24\)/);
  }
});

test("serve's reprovision asks the VIP, then installed control-plane machines' own apiservers, never the machine itself; nobody before the cluster runs", () => {
  const spec = parseClusterFile(HA, 'lab.yaml').spec!;
  const states = (installed: string[]) => (n: string): State => (installed.includes(n) ? 'ready' : 'unknown');
  assert.deepEqual(apiEndpoints(spec, states([]), 'w1'), [], 'first install: no cluster to ask');
  assert.deepEqual(apiEndpoints(spec, states(['cp1']), 'cp1'), [], 'the only control-plane machine is the one reprovisioned');
  assert.deepEqual(apiEndpoints(spec, states(['cp1', 'cp2', 'w1']), 'cp1'), ['https://10.20.30.10:6443', 'https://10.20.30.12:6443']);
  // installed but never joined (no control plane came up, or none runs Kubernetes): nothing to ask
  const installedOnly = (n: string): State => (n === 'w1' ? 'unknown' : 'installed');
  assert.deepEqual(apiEndpoints(spec, installedOnly, 'w1'), [], 'installed, never joined: no cluster to ask');
  assert.deepEqual(apiEndpoints(spec, (n) => (n === 'cp2' ? 'joined' : 'installed'), 'cp1'), ['https://10.20.30.10:6443', 'https://10.20.30.12:6443']);
  assert.deepEqual(apiEndpoints(spec, states(['cp1', 'cp2', 'cp3', 'w1']), 'w1'), ['https://10.20.30.10:6443', 'https://10.20.30.11:6443', 'https://10.20.30.12:6443', 'https://10.20.30.13:6443']);
});

test('a control-plane machine that failed after it joined (a unit of it failed) is still asked; one that failed installing is not', () => {
  const spec = parseClusterFile(HA, 'lab.yaml').spec!;
  const store = new SqliteStore(':memory:');
  try {
    const life = new Lifecycle(store, spec.machines.map((m) => m.name));
    for (const s of ['dhcp', 'booting', 'config-fetched', 'installing', 'installed', 'joined', 'ready'] as const) life.observe('cp1', s, 'machine');
    for (const s of ['dhcp', 'booting', 'config-fetched', 'installing', 'installed', 'joined'] as const) life.observe('cp2', s, 'machine');
    for (const s of ['dhcp', 'booting', 'config-fetched', 'installing'] as const) life.observe('cp3', s, 'machine');
    life.fail('cp1', 'unit slipway-renew.service failed', 'machine');
    life.fail('cp2', 'unit etcd.service failed', 'machine');
    life.observe('cp2', 'ready', 'machine'); // a failed machine's later reports move nothing
    life.fail('cp3', 'timeout in installing', 'timeout');
    assert.deepEqual(['cp1', 'cp2', 'cp3'].map((n) => [life.state(n), life.reached(n)]), [['failed', 'ready'], ['failed', 'joined'], ['failed', 'installing']]);
    assert.deepEqual(apiEndpoints(spec, (n) => life.reached(n), 'w1'), ['https://10.20.30.10:6443', 'https://10.20.30.11:6443', 'https://10.20.30.12:6443']);
    // reprovisioned: back to the start, whatever it reached before
    life.reprovision('cp1');
    assert.equal(life.reached('cp1'), 'unknown');
    assert.deepEqual(apiEndpoints(spec, (n) => life.reached(n), 'w1'), ['https://10.20.30.10:6443', 'https://10.20.30.12:6443']);
  } finally {
    store.close();
  }
});

test('a window the cluster cannot take is recorded nowhere, and the error names every apiserver asked', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-window-'));
  // a loopback port nothing listens on (taken, then closed)
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  try {
    const spec = parseClusterFile(HA, 'lab.yaml').spec!;
    const secrets = await loadOrCreateSecrets(dir, spec);
    const api = new KubeClient({ endpoints: [`https://127.0.0.1:${port}`], ca: secrets.certs.ca.cert, client: secrets.certs.admin, timeoutMs: 2_000 });
    await assert.rejects(openWindow({ stateDir: dir, spec, name: 'w1', api }), (e: Error) => e.message.includes(`no apiserver answered (https://127.0.0.1:${port}: connect ECONNREFUSED`));
    assert.equal(existsSync(join(dir, 'bootstrap-tokens.json')), false, 'nothing recorded');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
