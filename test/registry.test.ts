// The bundle's read-only registry and assets, checked by real clients: skopeo inspects
// and copies images out of it (digests identical to what was pushed upstream), curl and
// fetch ask it the way containerd's mirror config does (?ns=), the rendered
// fetch-binaries.sh installs binaries from it, and `slipway serve --bundle` serves it
// to a machine in a lab namespace.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleContents } from '../src/bundle/contents.ts';
import { createBundle } from '../src/bundle/create.ts';
import { parseMirrors } from '../src/bundle/mirror.ts';
import { progressFor } from '../src/bundle/progress.ts';
import { serveBundle, type ServedBundle } from '../src/bundle/serve.ts';
import type { BundleManifest } from '../src/bundle/manifest.ts';
import { startHttpServer, type HttpServer } from '../src/serve/http/server.ts';
import { newLogger } from '../src/serve/log.ts';
import { newRegistry } from '../src/serve/metrics.ts';
import { EXAMPLE_HA } from './helpers/cli.ts';
import { haSpec } from './helpers/spec.ts';
import { sha256, type BuiltImage } from './helpers/oci-images.ts';
import { has, runAsync, slipwayAsync, startUpstream, type Upstream } from './helpers/oci-upstream.ts';
import { Lab } from './helpers/serve.ts';

const skip = !has('docker-registry') || !has('skopeo') ? 'needs docker-registry and skopeo (apt-get install docker-registry skopeo)' : false;
const PAUSE = 'registry.k8s.io/pause:3.10.1';
const NGINX = 'docker.io/library/nginx:1.27-alpine';
const COREDNS = 'registry.k8s.io/coredns/coredns:v1.12.1';
let up: Upstream;
let dir: string;
let bundlePath: string;
let served: ServedBundle;
let http: HttpServer;
let base: string;
let manifest: BundleManifest;

const amd64 = (img: BuiltImage) => img.platforms.find((p) => p.platform.architecture === 'amd64')!;
const host = () => base.slice('http://'.length);
const skopeo = (args: string[]) => runAsync('skopeo', args, 60_000);

before(async () => {
  if (skip) return;
  const contents = bundleContents(haSpec());
  up = await startUpstream(contents);
  dir = mkdtempSync(join(tmpdir(), 'slipway-registry-'));
  bundlePath = join(dir, 'bundle.tar');
  const r = await createBundle({ contents, osImage: up.osImage, output: bundlePath, mirrors: parseMirrors(up.mirrorArgs), platforms: [{ os: 'linux', architecture: 'amd64' }], progress: progressFor(process.stderr, true) });
  manifest = r.manifest;
  served = await serveBundle(bundlePath);
  http = await startHttpServer({ address: '127.0.0.1', port: 0, handlers: served.handlers, log: newLogger({ level: 'silent' }), registry: newRegistry() });
  base = `http://127.0.0.1:${http.port}`;
});
after(async () => {
  await http?.close();
  await served?.close();
  await up?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('skopeo inspect and copy out of the bundle registry: digests identical to the source', { skip, timeout: 120_000 }, async () => {
  for (const ref of [PAUSE, NGINX, COREDNS]) {
    const src = up.images.get(ref)!;
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${host()}/${ref}`]);
    assert.equal(raw.code, 0, raw.out);
    assert.equal(`sha256:${sha256(raw.stdout)}`, src.top.digest, `${ref}: raw manifest differs`);
    const info = await skopeo(['inspect', '--tls-verify=false', `docker://${host()}/${ref}`]);
    assert.equal(info.code, 0, info.out);
    const j = JSON.parse(info.stdout) as { Digest: string; Architecture: string; Layers: string[] };
    assert.equal(j.Digest, src.top.digest);
    assert.equal(j.Architecture, 'amd64');
    assert.deepEqual(j.Layers, amd64(src).layers.map((l) => l.digest));
  }
  // short names, as a client that does not know the upstream registry would ask
  const short = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${host()}/pause:3.10.1`]);
  assert.equal(`sha256:${sha256(short.stdout)}`, up.images.get(PAUSE)!.top.digest, short.out);

  const out = join(dir, 'copied');
  const cp = await skopeo(['copy', '--quiet', '--src-tls-verify=false', '--preserve-digests', `docker://${host()}/${NGINX}`, `oci:${out}:nginx`]);
  assert.equal(cp.code, 0, cp.out);
  const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const src = amd64(up.images.get(NGINX)!);
  assert.equal(index.manifests[0]!.digest, src.manifest.digest);
  for (const b of [src.config, ...src.layers]) assert.equal(sha256(readFileSync(join(out, 'blobs/sha256', b.digest.slice(7)))), b.digest.slice(7));

  // --all asks for the arm64 manifest this bundle left out: a clear refusal
  const all = await skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${host()}/${PAUSE}`, `oci:${join(dir, 'all')}:p`]);
  assert.notEqual(all.code, 0);
  assert.match(all.out, /manifest unknown/);
});

test('containerd mirror requests (?ns=) find images by upstream registry and repository', { skip, timeout: 60_000 }, async () => {
  const pause = up.images.get(PAUSE)!;
  const v2 = await fetch(`${base}/v2/`);
  assert.equal(v2.status, 200);
  assert.equal(v2.headers.get('docker-distribution-api-version'), 'registry/2.0');

  const accept = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';
  const m = await fetch(`${base}/v2/pause/manifests/3.10.1?ns=registry.k8s.io`, { headers: { accept } });
  assert.equal(m.status, 200);
  assert.equal(m.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json');
  assert.equal(m.headers.get('docker-content-digest'), pause.top.digest);
  assert.equal(`sha256:${sha256(Buffer.from(await m.arrayBuffer()))}`, pause.top.digest);

  const head = await fetch(`${base}/v2/pause/manifests/3.10.1?ns=registry.k8s.io`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(pause.top.size));
  assert.equal(head.headers.get('docker-content-digest'), pause.top.digest);

  const nginx = up.images.get(NGINX)!;
  const child = await fetch(`${base}/v2/library/nginx/manifests/${amd64(nginx).manifest.digest}?ns=docker.io`);
  assert.equal(child.status, 200);
  assert.equal(child.headers.get('content-type'), 'application/vnd.oci.image.manifest.v1+json');
  await child.arrayBuffer();
  const arm = nginx.platforms.find((p) => p.platform.architecture === 'arm64')!;
  const absent = await fetch(`${base}/v2/library/nginx/manifests/${arm.manifest.digest}?ns=docker.io`);
  assert.equal(absent.status, 404);
  const err = (await absent.json()) as { errors: { code: string; message: string }[] };
  assert.equal(err.errors[0]!.code, 'MANIFEST_UNKNOWN');
  assert.match(err.errors[0]!.message, /linux\/arm64 was not included in this bundle/);
  // Docker Hub short names map to library/
  assert.equal((await fetch(`${base}/v2/nginx/manifests/1.27-alpine?ns=docker.io`, { method: 'HEAD' })).status, 200);
  // the wrong registry does not find it
  assert.equal((await fetch(`${base}/v2/pause/manifests/3.10.1?ns=quay.io`, { method: 'HEAD' })).status, 404);

  // blobs: whole, ranges, HEAD, in the right repository only
  const layer = amd64(nginx).layers[0]!;
  const url = `${base}/v2/library/nginx/blobs/${layer.digest}?ns=docker.io`;
  const whole = await fetch(url);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get('docker-content-digest'), layer.digest);
  assert.equal(whole.headers.get('content-type'), 'application/octet-stream');
  assert.equal(sha256(Buffer.from(await whole.arrayBuffer())), layer.digest.slice(7));
  const part = await fetch(url, { headers: { range: 'bytes=10-99' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 10-99/${layer.size}`);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), layer.bytes.subarray(10, 100));
  const tail = await fetch(url, { headers: { range: 'bytes=-7' } });
  assert.deepEqual(Buffer.from(await tail.arrayBuffer()), layer.bytes.subarray(layer.size - 7));
  const beyond = await fetch(url, { headers: { range: `bytes=${layer.size}-` } });
  assert.equal(beyond.status, 416);
  const hb = await fetch(url, { method: 'HEAD' });
  assert.equal(hb.headers.get('content-length'), String(layer.size));
  const wrongRepo = await fetch(`${base}/v2/pause/blobs/${layer.digest}?ns=registry.k8s.io`);
  assert.equal(wrongRepo.status, 404);
  assert.equal(((await wrongRepo.json()) as { errors: { code: string }[] }).errors[0]!.code, 'BLOB_UNKNOWN');
  const badDigest = await fetch(`${base}/v2/pause/blobs/sha256:xyz?ns=registry.k8s.io`);
  assert.equal(badDigest.status, 400);
  await badDigest.arrayBuffer();
});

test('tags, catalog (with pagination), unknown names and writes', { skip, timeout: 60_000 }, async () => {
  const tags = (await (await fetch(`${base}/v2/coredns/coredns/tags/list?ns=registry.k8s.io`)).json()) as { name: string; tags: string[] };
  assert.deepEqual(tags, { name: 'coredns/coredns', tags: ['v1.12.1'] });
  const cat = (await (await fetch(`${base}/v2/_catalog`)).json()) as { repositories: string[] };
  assert.deepEqual(cat.repositories, ['docker.io/library/nginx', 'registry.k8s.io/coredns/coredns', 'registry.k8s.io/pause']);
  const page1 = await fetch(`${base}/v2/_catalog?n=2`);
  assert.deepEqual(((await page1.json()) as { repositories: string[] }).repositories, ['docker.io/library/nginx', 'registry.k8s.io/coredns/coredns']);
  const link = page1.headers.get('link')!;
  assert.match(link, /^<\/v2\/_catalog\?n=2&last=registry\.k8s\.io%2Fcoredns%2Fcoredns>; rel="next"$/);
  const page2 = (await (await fetch(base + /<([^>]+)>/.exec(link)![1]!)).json()) as { repositories: string[] };
  assert.deepEqual(page2.repositories, ['registry.k8s.io/pause']);
  const hub = (await (await fetch(`${base}/v2/_catalog?ns=docker.io`)).json()) as { repositories: string[] };
  assert.deepEqual(hub.repositories, ['library/nginx']);
  const unknown = await fetch(`${base}/v2/nope/manifests/1?ns=docker.io`);
  assert.equal(unknown.status, 404);
  assert.equal(((await unknown.json()) as { errors: { code: string }[] }).errors[0]!.code, 'NAME_UNKNOWN');
  const put = await fetch(`${base}/v2/pause/manifests/3.10.1`, { method: 'PUT', body: '{}' });
  assert.equal(put.status, 405);
  assert.equal(((await put.json()) as { errors: { code: string }[] }).errors[0]!.code, 'UNSUPPORTED');
});

test('binaries and OS files under /assets/, checked by the rendered fetch-binaries.sh', { skip, timeout: 120_000 }, async () => {
  const sums = await (await fetch(`${base}/assets/bin/SHA256SUMS`)).text();
  const listed = new Map(sums.trim().split('\n').map((l) => [l.slice(66), l.slice(0, 64)]));
  const bins = manifest.files.filter((f) => f.path.startsWith('bin/'));
  assert.equal(listed.size, bins.length);
  for (const f of bins) assert.equal(listed.get(f.path.slice(4)), f.sha256, f.path);
  assert.ok(listed.has('cni/bridge'));

  const etcd = await fetch(`${base}/assets/bin/etcd`);
  assert.equal(etcd.status, 200);
  const body = Buffer.from(await etcd.arrayBuffer());
  assert.equal(etcd.headers.get('x-checksum-sha256'), sha256(body));
  assert.equal(sha256(body), sha256(up.expected.get('bin/etcd')!));
  const kernel = await fetch(`${base}/assets/os/vmlinuz`, { headers: { range: 'bytes=0-99' } });
  assert.equal(kernel.status, 206);
  assert.deepEqual(Buffer.from(await kernel.arrayBuffer()), up.expected.get('os/vmlinuz')!.subarray(0, 100));
  const etag = (await fetch(`${base}/assets/os/initrd.img`, { method: 'HEAD' })).headers.get('etag')!;
  assert.equal((await fetch(`${base}/assets/os/initrd.img`, { headers: { 'if-none-match': etag } })).status, 304);
  assert.equal((await fetch(`${base}/assets/bin/nope`)).status, 404);

  // the script every machine runs, rendered by slipway, pointed at this server and a scratch root
  const rendered = join(dir, 'rendered');
  const r = await slipwayAsync(['render', '-f', EXAMPLE_HA, '-o', rendered, '--state', join(dir, 'state')]);
  assert.equal(r.code, 0, r.stderr);
  const root = join(rendered, 'machines/cp1/root');
  const scratch = join(dir, 'scratch');
  mkdirSync(scratch);
  const list = readFileSync(join(root, 'etc/slipway/binaries.list'), 'utf8').split('\n').filter(Boolean).map((l) => `${scratch}${l}`).join('\n') + '\n';
  writeFileSync(join(dir, 'binaries.list'), list);
  const script = readFileSync(join(root, 'etc/slipway/fetch-binaries.sh'), 'utf8')
    .replace('http://10.20.30.2:8080', base)
    .replace(/^LIST=.*$/m, `LIST=${join(dir, 'binaries.list')}`)
    .replace(/^STATE=.*$/m, `STATE=${join(dir, 'fetch-state')}`);
  writeFileSync(join(dir, 'fetch.sh'), script);
  const f = await runAsync('sh', [join(dir, 'fetch.sh')]);
  assert.equal(f.code, 0, f.out);
  const installed = list.trim().split('\n').map((l) => l.split(' '));
  assert.ok(installed.length >= 10);
  for (const [dest, name] of installed) assert.equal(sha256(readFileSync(dest!)), listed.get(name!), dest);
  assert.equal(readFileSync(join(dir, 'fetch-state/binaries-missing'), 'utf8'), '\n');

  // A name the provisioner does not have is skipped and listed (its units are conditioned
  // on the binary); with the provisioner unreachable, the binaries in place are checked
  // against the last SHA256SUMS and kept.
  writeFileSync(join(dir, 'binaries.list'), list + `${scratch}/opt/bin/nope nope\n`);
  const skip = await runAsync('sh', [join(dir, 'fetch.sh')]);
  assert.equal(skip.code, 0, skip.out);
  assert.match(skip.out, /the provisioner has no nope: the units that run it will not start/);
  assert.equal(readFileSync(join(dir, 'fetch-state/binaries-missing'), 'utf8'), 'nope\n');
  writeFileSync(join(dir, 'fetch-offline.sh'), script.replace(base, 'http://127.0.0.1:9').replace('--retry 20 --retry-delay 3', '--retry 1 --retry-delay 1'));
  const offline = await runAsync('sh', [join(dir, 'fetch-offline.sh')]);
  assert.equal(offline.code, 0, offline.out);
  assert.match(offline.out, /unreachable: checking the binaries in place against the last SHA256SUMS/);
  rmSync(installed.at(-1)![0]!);
  assert.notEqual((await runAsync('sh', [join(dir, 'fetch-offline.sh')])).code, 0, 'a binary not in place cannot come from an unreachable provisioner');

  const etcdPath = installed.find(([, n]) => n === 'etcd')![0]!;
  chmodSync(etcdPath, 0o755);
  if (up.expected.get('bin/etcd')!.length > 1_000_000) assert.match((await runAsync(etcdPath, ['--version'])).stdout, /etcd Version: /);
});

test('slipway serve --bundle serves a machine on the lab network', { skip, timeout: 120_000 }, async () => {
  const lab = Lab.create();
  try {
    await lab.start(['--bundle', bundlePath]);
    const w1 = lab.host('52:54:00:20:30:21', '10.20.30.21');
    const sums = await w1.exec('curl', ['-fsS', '-m', '10', 'http://10.20.30.2:8080/assets/bin/SHA256SUMS']);
    assert.equal(sums.code, 0, sums.out);
    assert.match(sums.stdout, /^[0-9a-f]{64} {2}kubelet$/m);
    const m = await w1.exec('curl', ['-fsS', '-m', '10', '-o', '/dev/null', '-w', '%{http_code} %header{docker-content-digest}', 'http://10.20.30.2:8080/v2/pause/manifests/3.10.1?ns=registry.k8s.io']);
    assert.equal(m.stdout, `200 ${up.images.get(PAUSE)!.top.digest}`, m.out);
    const sk = await lab.hub.exec('skopeo', ['inspect', '--tls-verify=false', `docker://10.20.30.2:8080/${COREDNS}`], { timeoutMs: 60_000 });
    assert.equal(sk.code, 0, sk.out);
    assert.equal((JSON.parse(sk.stdout) as { Digest: string }).Digest, up.images.get(COREDNS)!.top.digest);
    assert.match(lab.log, /serving bundle/);
  } finally {
    await lab.close();
  }
});
