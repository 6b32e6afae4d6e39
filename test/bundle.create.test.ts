// `slipway bundle create|inspect|verify` against a local upstream: Debian's
// docker-registry filled with images built here (pushed by skopeo, one behind a
// token-auth proxy that redirects blobs like Docker Hub), and a file mirror serving
// release files (Debian's real etcd among them) with checksum files in each project's
// format, and a small OS image directory given with --os-image (no image is built here:
// test/bundle.os.test.ts covers the os/ entries). Everything the real command does, with
// --mirror pointing it at them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleContents } from '../src/bundle/contents.ts';
import { binariesFor } from '../src/plan/phases/node.ts';
import type { BundleManifest } from '../src/bundle/manifest.ts';
import { EXAMPLE_HA } from './helpers/cli.ts';
import { haSpec } from './helpers/spec.ts';
import { sha256 } from './helpers/oci-images.ts';
import { has, run, slipwayAsync, startUpstream, type Upstream } from './helpers/oci-upstream.ts';

const skip = !has('docker-registry') || !has('skopeo') ? 'needs docker-registry and skopeo (apt-get install docker-registry skopeo)' : false;
let up: Upstream;
let dir: string;
let good: string;
let manifest: BundleManifest;
const contents = bundleContents(haSpec());
const mirrorFlags = () => up.mirrorArgs.flatMap((m) => ['--mirror', m]);
const create = (out: string, extra: string[] = []) => slipwayAsync(['bundle', 'create', '-f', EXAMPLE_HA, '-o', out, ...mirrorFlags(), '--os-image', up.osImageDir, ...extra]);
const leftovers = (d: string) => readdirSync(d).filter((n) => n.includes('.tmp-'));

before(async () => {
  if (skip) return;
  up = await startUpstream(contents);
  dir = mkdtempSync(join(tmpdir(), 'slipway-bundle-'));
  good = join(dir, 'good.tar');
});
after(async () => {
  await up?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('--dry-run lists every fetch, where it goes and how it is checked, and touches nothing', { skip, timeout: 60_000 }, async () => {
  const out = join(dir, 'dry.tar');
  const r = await create(out, ['--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  for (const item of contents.items) {
    if (item.kind === 'file' || item.kind === 'archive') {
      assert.ok(r.stdout.includes(`upstream  ${item.url}`), `${item.name}: upstream URL missing`);
      assert.ok(r.stdout.includes(`from ${up.mirror.url}`), 'checksum source through the mirror');
    }
  }
  assert.match(r.stdout, /to {8}bin\/etcd \(etcd-v3\.6\.4-linux-amd64\/etcd\)/);
  assert.match(r.stdout, new RegExp(`fetch {5}${up.registry.url}/v2/pause/manifests/3\\.10\\.1`));
  assert.ok(r.stdout.includes(`OS-IMAGE  Slipway OS (debian-12) 12.12-test1\n  from      ${up.osImageDir}/ (--os-image)\n`), r.stdout);
  assert.match(r.stdout, /to {8}os\/disk\.img\.zst \(disk\.img\.zst, \d+ bytes\)/);
  const j = await create(out, ['--dry-run', '--json']);
  assert.equal(j.code, 0, j.stderr);
  const plan = JSON.parse(j.stdout) as { fetches: { kind: string; url: string; destinations: string[] }[] };
  assert.equal(plan.fetches.length, contents.items.length);
  assert.doesNotMatch(j.stdout, /flatcar/i);
  assert.ok(!existsSync(out) && !existsSync(`${out}.parts`), 'dry-run wrote something');
  assert.equal(up.mirror.requests.length, 0, 'dry-run fetched something');
  assert.equal(up.proxy.stats.challenges + up.proxy.stats.tokens, 0);
});

test('create fetches everything through the mirrors, checks it, and writes one tar', { skip, timeout: 120_000 }, async () => {
  const r = await create(good);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*good\.tar: 23 files, 3 images/m);
  assert.ok(!existsSync(`${good}.parts`), 'the parts cache is removed after success');
  assert.deepEqual(leftovers(dir), []);

  const i = await slipwayAsync(['bundle', 'inspect', good, '--json']);
  assert.equal(i.code, 0, i.stderr);
  manifest = JSON.parse(i.stdout) as BundleManifest;
  const files = new Map(manifest.files.map((f) => [f.path, f]));
  // every binary any machine fetches, with the bytes upstream published
  for (const m of haSpec().machines) for (const [, asset] of binariesFor(m)) assert.ok(files.has(`bin/${asset}`), `bin/${asset}`);
  for (const [path, body] of up.expected) {
    const f = files.get(path);
    assert.ok(f, `${path} missing`);
    assert.equal(f.sha256, sha256(body), path);
    assert.equal(f.size, body.length, path);
  }
  const apiserver = files.get('bin/kube-apiserver')!;
  assert.equal(apiserver.source, 'https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kube-apiserver');
  assert.equal(apiserver.fetchedFrom, `${up.mirror.url}/k8s/release/v1.34.2/bin/linux/amd64/kube-apiserver`);
  assert.deepEqual(apiserver.checksum, { algorithm: 'sha256', digest: apiserver.sha256, from: 'https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kube-apiserver.sha256' });
  // the OS image's files, with os.json's digests (up.expected holds their bytes: checked above)
  assert.deepEqual(manifest.os, { name: 'debian-12', version: '12.12-test1' });
  assert.deepEqual(files.get('os/disk.img.zst')!.checksum, { algorithm: 'sha256', digest: up.osImage.info.disk.sha256, from: `${up.osImageDir}/os.json` });
  assert.match(files.get('bin/flanneld')!.source!, /^docker\.io\/flannel\/flannel:v0\.26\.7@sha256:/);

  // images: the tag's digest is upstream's; manifest lists keep linux/amd64 only
  for (const im of manifest.images) {
    const src = up.images.get(im.ref)!;
    assert.equal(im.digest, src.top.digest, im.ref);
    const amd64 = src.platforms.find((p) => p.platform.architecture === 'amd64')!;
    assert.deepEqual(im.manifests.map((m) => m.digest), [amd64.manifest.digest]);
    assert.deepEqual(im.skippedPlatforms, src.platforms.length > 1 ? ['linux/arm64'] : []);
    for (const b of [amd64.config, ...amd64.layers]) assert.equal(files.get(`oci/blobs/sha256/${b.digest.slice(7)}`)?.sha256, b.digest.slice(7));
  }
  // the flannel image was only a source for flanneld: not in the layout
  assert.ok(!manifest.images.some((im) => im.ref.includes('flannel')));
  // Docker Hub's way was followed: 401, token, retry, blobs from a redirect
  assert.ok(up.proxy.stats.challenges >= 2 && up.proxy.stats.tokens >= 2 && up.proxy.stats.redirects >= 2, JSON.stringify(up.proxy.stats));

  const text = await slipwayAsync(['bundle', 'inspect', good]);
  assert.match(text.stdout, /registry\.k8s\.io\/pause:3\.10\.1 {2}sha256:[0-9a-f]{64}/);
  assert.match(text.stdout, /not bundled: linux\/arm64/);
  const v = await slipwayAsync(['bundle', 'verify', good]);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /ok: 36 entries/);

  // GNU tar reads it as an ordinary tar, and the etcd in it is Debian's, runnable
  const x = join(dir, 'x');
  assert.equal(run('mkdir', ['-p', x]).code, 0);
  const t = run('tar', ['-xf', good, '-C', x, 'slipway-bundle.json', 'bin/etcd', 'oci/index.json']);
  assert.equal(t.code, 0, t.out);
  assert.deepEqual(JSON.parse(readFileSync(join(x, 'slipway-bundle.json'), 'utf8')), manifest);
  if (existsSync('/usr/bin/etcd')) assert.match(run(join(x, 'bin/etcd'), ['--version']).stdout, /etcd Version: /);
});

test('a corrupted download fails naming it and leaves no bundle; the next run reuses what was verified', { skip, timeout: 120_000 }, async () => {
  const out = join(dir, 'corrupt.tar');
  const path = up.paths.get('kube-proxy')!;
  const body = up.mirror.files.get(path)!;
  const bad = Buffer.from(body);
  bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0x40;
  up.mirror.corrupt.set(path, bad);
  try {
    const r = await create(out);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no bundle written/);
    assert.match(r.stderr, new RegExp(`kube-proxy v1\\.34\\.2: sha256 mismatch for ${up.mirror.url}/k8s/release/v1\\.34\\.2/bin/linux/amd64/kube-proxy: expected ${sha256(body)}, got ${sha256(bad)} \\(checksum from `));
    assert.ok(!existsSync(out));
    assert.deepEqual(leftovers(dir), []);
  } finally {
    up.mirror.corrupt.delete(path);
  }
  up.mirror.requests.length = 0;
  const again = await create(out);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /\(1 downloaded, \d+ reused from the cache\)/);
  assert.equal(up.mirror.count(path), 1, 'kube-proxy fetched again');
  assert.equal(up.mirror.count(up.paths.get('etcd')!), 0, 'the verified etcd tarball came from the cache');
  assert.equal(up.mirror.count(up.paths.get('kubelet')!), 0);
  assert.ok(up.mirror.count(up.paths.get('kubelet')! + '.sha256') === 1, 'checksum files are fetched again every run');
});

test('a wrong published checksum fails naming the file; nothing is written', { skip, timeout: 120_000 }, async () => {
  const out = join(dir, 'wrongsum.tar');
  const sumPath = up.paths.get('runc')!.replace(/runc\.amd64$/, 'runc.sha256sum');
  const orig = up.mirror.files.get(sumPath)!;
  const text = orig.toString();
  const digest = /^([0-9a-f]{64}) {2}runc\.amd64$/m.exec(text)![1]!;
  up.mirror.files.set(sumPath, Buffer.from(text.replace(digest, '0'.repeat(64))));
  try {
    const r = await create(out);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`runc v1\\.2\\.6: sha256 mismatch for .*runc\\.amd64: expected 0{64}, got ${digest}`));
    assert.ok(!existsSync(out));
  } finally {
    up.mirror.files.set(sumPath, orig);
  }
});

test('an interrupted download is resumed with a Range request on the next run', { skip, timeout: 120_000 }, async () => {
  const out = join(dir, 'resume.tar');
  const path = up.paths.get('kubectl')!;
  const size = up.mirror.files.get(path)!.length;
  const cut = Math.floor(size / 2);
  up.mirror.cutAfter.set(path, cut);
  const r = await create(out);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /kubectl/);
  assert.ok(!existsSync(out));
  up.mirror.requests.length = 0;
  const again = await create(out);
  assert.equal(again.code, 0, again.stderr);
  const ranges = up.mirror.requests.filter((q) => q.path === path);
  assert.equal(ranges.length, 1);
  assert.match(ranges[0]!.range ?? '', /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(ranges[0]!.range!)![0]) > 0, 'resumed past the start');
  const v = await slipwayAsync(['bundle', 'verify', out]);
  assert.equal(v.code, 0, v.stderr);
});

test('a registry blob that does not match its digest fails naming the image and the blob', { skip, timeout: 120_000 }, async () => {
  const out = join(dir, 'badblob.tar');
  const nginx = up.images.get('docker.io/library/nginx:1.27-alpine')!;
  const layer = nginx.platforms.find((p) => p.platform.architecture === 'amd64')!.layers[0]!;
  up.proxy.tamper.add(layer.digest);
  try {
    const r = await create(out);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`docker.io/library/nginx:1.27-alpine blob ${layer.digest}: sha256 mismatch`), r.stderr);
    assert.ok(!existsSync(out));
  } finally {
    up.proxy.tamper.clear();
  }
});

test('--all-platforms keeps every entry of a manifest list', { skip, timeout: 120_000 }, async () => {
  const out = join(dir, 'all.tar');
  const r = await create(out, ['--all-platforms', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const i = await slipwayAsync(['bundle', 'inspect', out, '--json']);
  const m = JSON.parse(i.stdout) as BundleManifest;
  const pause = m.images.find((x) => x.ref.startsWith('registry.k8s.io/pause:'))!;
  assert.deepEqual(pause.manifests.map((x) => x.platform).sort(), ['linux/amd64', 'linux/arm64']);
  assert.deepEqual(pause.skippedPlatforms, []);
  assert.equal(m.platforms, 'all');
});

test('verify names every flipped byte, a corrupt header and a truncated bundle', { skip, timeout: 60_000 }, async () => {
  assert.ok(manifest, 'needs the bundle from the create test');
  const copy = join(dir, 'flipped.tar');
  copyFileSync(good, copy);
  // find the data offsets with the index the server uses
  const { Bundle } = await import('../src/bundle/reader.ts');
  const b = await Bundle.open(good);
  const etcd = b.entries.get('bin/etcd')!;
  const layer = manifest.images[0]!.blobs.at(-1)!;
  const blob = b.entries.get(`oci/blobs/sha256/${layer.slice(7)}`)!;
  const header = b.entries.get('bin/kubelet')!.offset - 512;
  await b.close();
  const flip = (file: string, at: number) => {
    const fd = openSync(file, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0xff;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);
  };
  flip(copy, etcd.offset + (etcd.size >> 1));
  flip(copy, blob.offset + 10);
  const r = await slipwayAsync(['bundle', 'verify', copy]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^BAD bin\/etcd: sha256 mismatch: manifest says [0-9a-f]{64}, content is [0-9a-f]{64}$/m);
  assert.match(r.stderr, new RegExp(`^BAD oci/blobs/sha256/${layer.slice(7)}: sha256 mismatch`, 'm'));
  assert.match(r.stderr, /2 bad entries/);

  const hdr = join(dir, 'header.tar');
  copyFileSync(good, hdr);
  flip(hdr, header + 5);
  const h = await slipwayAsync(['bundle', 'verify', hdr]);
  assert.equal(h.code, 1);
  assert.match(h.stderr, new RegExp(`tar header at offset ${header} is corrupt`));

  const cut = join(dir, 'cut.tar');
  copyFileSync(good, cut);
  run('truncate', ['-s', String(blob.offset + 3), cut]);
  const c = await slipwayAsync(['bundle', 'verify', cut]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /truncated/);
  // and serve refuses it before binding anything
  const i = await slipwayAsync(['bundle', 'inspect', cut]);
  assert.equal(i.code, 1);
  assert.match(i.stderr, /slipway bundle: .*cut\.tar: .*truncated/);
});

test('bad input: usage errors exit 2, unreadable bundles exit 1 with the file named', { skip, timeout: 60_000 }, async () => {
  const u = await slipwayAsync(['bundle', 'create', '-o', join(dir, 'x.tar')]);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /missing -f FILE/);
  const p = await slipwayAsync(['bundle', 'create', '-f', EXAMPLE_HA, '-o', join(dir, 'x.tar'), '--platform', 'amd64']);
  assert.equal(p.code, 2);
  assert.match(p.stderr, /bad platform "amd64"/);
  const m = await slipwayAsync(['bundle', 'create', '-f', EXAMPLE_HA, '-o', join(dir, 'x.tar'), '--mirror', 'ftp://x/']);
  assert.equal(m.code, 2);
  const sub = await slipwayAsync(['bundle', 'frobnicate']);
  assert.equal(sub.code, 2);
  assert.match(sub.stderr, /unknown bundle command "frobnicate"/);
  const missing = await slipwayAsync(['bundle', 'inspect', join(dir, 'missing.tar')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /missing\.tar: cannot open: ENOENT/);
  const notBundle = join(dir, 'plain.tar');
  run('tar', ['-cf', notBundle, '-C', dir, 'good.tar']);
  const nb = await slipwayAsync(['bundle', 'verify', notBundle]);
  assert.equal(nb.code, 1);
  assert.match(nb.stderr, /not a Slipway bundle \(its first entry is good\.tar/);
});
