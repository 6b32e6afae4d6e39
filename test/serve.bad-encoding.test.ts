// Malformed percent-encoding in a URL path ("/assets/%E0%A4%A", "/assets/%") is the
// client's mistake: 400 with a body that says so, never a 500 or an error in the log.
// The real serve (in this process, loopback only, DHCP off), once with an assets
// directory (the core /assets/ route) and once with a bundle (its /assets/ and /v2/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { request } from 'node:http';
import { startServe, type Serving } from '../src/serve/serve.ts';
import { newLogger } from '../src/serve/log.ts';
import { serveBundle } from '../src/bundle/serve.ts';
import { writeRehearsalBundle } from '../src/rehearse/bundle.ts';
import { EXAMPLE_HA } from './helpers/cli.ts';

let dir: string;
const logs: string[] = [];
const served: Serving[] = [];

/** One GET with the path sent exactly as given (fetch and curl would normalise or refuse it). */
function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer in 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

async function serve(extra: { assetsDir?: string; bundleFile?: string }): Promise<number> {
  const { bundleFile, ...rest } = extra;
  const state = join(dir, `state-${served.length}`);
  const out = new PassThrough();
  out.setEncoding('utf8').on('data', (d: string) => logs.push(...d.split('\n').filter(Boolean)));
  const s = await startServe({
    file: join(dir, 'cluster.yaml'),
    stateDir: state,
    bind: '127.0.0.1',
    httpPort: 0,
    tftpPort: 0,
    ntpPort: 0,
    loader: 'ipxe',
    unknown: 'ignore',
    timeoutSeconds: 0,
    noRivalCheck: true,
    log: newLogger({ level: 'debug', pretty: false, destination: out }),
    ...rest,
    ...(bundleFile ? { extension: (log) => serveBundle(bundleFile, log) } : {}),
  });
  served.push(s);
  return s.http.port;
}

const errorsLogged = () => logs.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'slipway-encoding-'));
  // DHCP off: nothing binds a privileged port or answers on the host's segment
  writeFileSync(join(dir, 'cluster.yaml'), readFileSync(EXAMPLE_HA, 'utf8').replace(/mode: full\b/, 'mode: off'));
  mkdirSync(join(dir, 'assets/bin'), { recursive: true });
  writeFileSync(join(dir, 'assets/bin/kubelet'), 'kubelet-binary');
  writeFileSync(join(dir, 'vmlinuz'), 'a kernel, for the test\n');
  await writeRehearsalBundle(join(dir, 'b.tar'), { name: 'lab', kubernetesVersion: 'v1.34.2' }, 'registry.k8s.io/pause:3.10.1', {
    name: 'debian-stand-in', channel: 'rehearsal', version: 't',
    files: [{ path: 'os/vmlinuz', source: join(dir, 'vmlinuz'), name: 'kernel' }],
  });
});
after(async () => {
  for (const s of served) await s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const MALFORMED = ['/assets/%E0%A4%A', '/assets/%', '/assets/bin/%ZZ', '/assets/os/%E0%A4%A'];

test('the core /assets/ route answers malformed percent-encoding with 400, logging no error', { timeout: 60_000 }, async () => {
  const port = await serve({ assetsDir: join(dir, 'assets') });
  for (const path of MALFORMED) {
    const r = await get(port, path);
    assert.equal(r.status, 400, `${path}: ${r.body}`);
    assert.equal(r.body, 'malformed percent-encoding in the URL path\n', path);
  }
  // well-formed encoding still reaches the file
  assert.deepEqual(await get(port, '/assets/bin/%6Bubelet'), { status: 200, body: 'kubelet-binary' });
  assert.equal((await get(port, '/healthz')).status, 200);
  assert.deepEqual(errorsLogged(), []);
  assert.ok(!logs.some((l) => l.includes('URI malformed')), 'URI malformed was logged');
});

test('serve --bundle: its /assets/ and /v2/ routes answer malformed percent-encoding with 400', { timeout: 60_000 }, async () => {
  const port = await serve({ assetsDir: join(dir, 'assets'), bundleFile: join(dir, 'b.tar') });
  for (const path of MALFORMED) {
    const r = await get(port, path);
    assert.equal(r.status, 400, `${path}: ${r.body}`);
    assert.equal(r.body, 'malformed percent-encoding in the URL path\n', path);
  }
  assert.deepEqual(await get(port, '/assets/os/vmlinuz'), { status: 200, body: 'a kernel, for the test\n' });
  for (const path of ['/v2/pause/manifests/%E0%A4%A', '/v2/registry.k8s.io/pause/blobs/%', '/v2/pause/manifests/3.10.1%']) {
    const r = await get(port, path);
    assert.equal(r.status, 400, `${path}: ${r.body}`);
    const e = (JSON.parse(r.body) as { errors: { code: string; message: string }[] }).errors[0]!;
    assert.equal(e.message, 'malformed percent-encoding in the reference', path);
  }
  assert.equal((await get(port, '/v2/pause/manifests/3.10.1')).status, 200);
  assert.deepEqual(errorsLogged(), []);
  assert.ok(!logs.some((l) => l.includes('URI malformed')), 'URI malformed was logged');
});
