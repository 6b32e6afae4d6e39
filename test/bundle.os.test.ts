// The bundle carries Slipway's OS image: `bundle create` puts the image directory's
// kernel, installer initramfs, disk image and os.json under os/ with their real sha256
// (os.json's, re-hashed while the tar is written), `bundle verify` re-checks them and
// that they are the files os/os.json names, and `serve --bundle`'s routes answer them at
// /assets/os/... with SHA256SUMS. The image is a small directory made here (the bundle
// only packages files); no image is built and nothing is downloaded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleContents, type BundleContents } from '../src/bundle/contents.ts';
import { BundleCreateError, createBundle } from '../src/bundle/create.ts';
import { parseMirrors } from '../src/bundle/mirror.ts';
import { progressFor } from '../src/bundle/progress.ts';
import { serveBundle } from '../src/bundle/serve.ts';
import type { BundleManifest } from '../src/bundle/manifest.ts';
import { readOsImage } from '../src/image/os-image.ts';
import { readPins, type PinNote } from '../src/serve/pins.ts';
import { startHttpServer } from '../src/serve/http/server.ts';
import { newLogger } from '../src/serve/log.ts';
import { newRegistry } from '../src/serve/metrics.ts';
import { BIN, EXAMPLE_HA, slipway } from './helpers/cli.ts';
import { singleSpec } from './helpers/spec.ts';
import { fakeOsImage, type FakeOsImage } from './helpers/os-image.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const OS_FILES = ['vmlinuz', 'initrd.img', 'disk.img.zst', 'os.json'];
let dir: string;
let img: FakeOsImage;
/** the cluster's contents with the OS image only: nothing to download */
let osOnly: BundleContents;
const quiet = () => progressFor(process.stderr, true);
const create = async (output: string, imageDir = img.dir) =>
  createBundle({ contents: osOnly, osImage: await readOsImage(imageDir), output, mirrors: parseMirrors([]), platforms: [{ os: 'linux', architecture: 'amd64' }], progress: quiet() });

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'slipway-bundle-os-'));
  chmodSync(dir, 0o755); // the not-root cases read it as nobody
  img = fakeOsImage(join(dir, 'image'));
  const c = bundleContents(singleSpec());
  osOnly = { ...c, items: c.items.filter((i) => i.kind === 'os-image') };
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('create: os/vmlinuz, os/initrd.img, os/disk.img.zst, os/os.json with their real sha256; verify and inspect agree', async () => {
  const out = join(dir, 'os.tar');
  const r = await create(out);
  assert.deepEqual(r.manifest.os, { name: 'debian-12', version: '12.12-test1' });
  const v = slipway(['bundle', 'verify', out]);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /ok: 4 entries/);
  const i = slipway(['bundle', 'inspect', out, '--json']);
  const m = JSON.parse(i.stdout) as BundleManifest;
  assert.deepEqual(m.files.map((f) => f.path), OS_FILES.map((n) => `os/${n}`).sort());
  for (const name of OS_FILES) {
    const f = m.files.find((x) => x.path === `os/${name}`)!;
    const bytes = img.bytes.get(name)!;
    assert.equal(f.sha256, sha256(bytes), name);
    assert.equal(f.size, bytes.length, name);
    assert.equal(f.version, '12.12-test1');
    assert.equal(f.source, join(img.dir, name));
    if (name !== 'os.json') assert.deepEqual(f.checksum, { algorithm: 'sha256', digest: sha256(bytes), from: `${img.dir}/os.json` });
  }
  // GNU tar gives back the same bytes
  const x = join(dir, 'x');
  mkdirSync(x);
  assert.equal(spawnSync('tar', ['-xf', out, '-C', x]).status, 0);
  for (const name of OS_FILES) assert.ok(readFileSync(join(x, 'os', name)).equals(img.bytes.get(name)!), name);
  const text = slipway(['bundle', 'inspect', out]);
  assert.match(text.stdout, /Kubernetes v1\.34\.2, OS debian-12 12\.12-test1$/m);
  assert.doesNotMatch(text.stdout + JSON.stringify(m), /flatcar/i);
});

test('serve --bundle answers the image at /assets/os/... (whole, by range, HEAD) with SHA256SUMS', async () => {
  const out = join(dir, 'serve.tar');
  await create(out);
  const served = await serveBundle(out);
  const http = await startHttpServer({ address: '127.0.0.1', port: 0, handlers: served.handlers, log: newLogger({ level: 'silent' }), registry: newRegistry() });
  try {
    const base = `http://127.0.0.1:${http.port}/assets/os`;
    for (const name of OS_FILES) {
      const r = await fetch(`${base}/${name}`);
      assert.equal(r.status, 200, name);
      const body = Buffer.from(await r.arrayBuffer());
      assert.ok(body.equals(img.bytes.get(name)!), name);
      assert.equal(r.headers.get('x-checksum-sha256'), sha256(body));
    }
    const disk = img.bytes.get('disk.img.zst')!;
    const part = await fetch(`${base}/disk.img.zst`, { headers: { Range: 'bytes=100-' } });
    assert.equal(part.status, 206);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(disk.subarray(100)));
    const head = await fetch(`${base}/disk.img.zst`, { method: 'HEAD' });
    assert.equal(head.headers.get('content-length'), String(disk.length));
    const sums = await (await fetch(`${base}/SHA256SUMS`)).text();
    assert.equal(sums, OS_FILES.map((n) => `${sha256(img.bytes.get(n)!)}  ${n}`).sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1)).join('\n') + '\n');
    // and machines are rendered for this image: serve's pins read from the bundle
    const notes: PinNote[] = [];
    const pins = await readPins([served.pins], notes);
    assert.deepEqual(pins.os, { sha256: sha256(disk), rawSize: img.json.disk.rawSize }, JSON.stringify(notes));
    assert.deepEqual(notes.map((n) => n.level), ['info']);
  } finally {
    await http.close();
    await served.close();
  }
});

test('an image file changed after its os.json: create fails naming it and leaves the image alone; verify catches os.json disagreeing', async () => {
  const other = fakeOsImage(join(dir, 'changed'));
  const osImage = await readOsImage(other.dir);
  const kernel = Buffer.from(other.bytes.get('vmlinuz')!);
  kernel[kernel.length >> 1] = kernel[kernel.length >> 1]! ^ 0x20; // same size: only the digest tells
  writeFileSync(join(other.dir, 'vmlinuz'), kernel);
  const out = join(dir, 'changed.tar');
  await assert.rejects(
    createBundle({ contents: osOnly, osImage, output: out, mirrors: parseMirrors([]), platforms: [{ os: 'linux', architecture: 'amd64' }], progress: quiet() }),
    (e: Error) => e instanceof BundleCreateError && /os\/vmlinuz: .*changed\/vmlinuz no longer matches the \d+ bytes and sha256 [0-9a-f]{64} its os\.json names/.test(e.message),
  );
  assert.ok(!existsSync(out));
  assert.ok(readFileSync(join(other.dir, 'vmlinuz')).equals(kernel), 'the image directory is not the parts cache: kept');

  // a bundle whose entries match its manifest but not os/os.json: verify names the file
  const lying = { ...osImage, files: osImage.files.map((f) => (f.role === 'kernel' ? { ...f, sha256: sha256(kernel) } : f)) };
  const out2 = join(dir, 'lying.tar');
  await createBundle({ contents: osOnly, osImage: lying, output: out2, mirrors: parseMirrors([]), platforms: [{ os: 'linux', architecture: 'amd64' }], progress: quiet() });
  const v = slipway(['bundle', 'verify', out2]);
  assert.equal(v.code, 1);
  assert.match(v.stderr, new RegExp(`^BAD os/vmlinuz: ${kernel.length} bytes, sha256 ${sha256(kernel)}; os/os\\.json says ${kernel.length} bytes, sha256 ${other.json.kernel.sha256}$`, 'm'));
});

test('create --os-image: a directory that is not an image is exit 1 naming it; the dry run shows where the image comes from', () => {
  const r = slipway(['bundle', 'create', '-f', EXAMPLE_HA, '-o', join(dir, 'x.tar'), '--os-image', join(dir, 'nope')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /slipway bundle create: no bundle written: --os-image: .*nope: not an OS image directory \(no os\.json: ENOENT\)/);
  const d = slipway(['bundle', 'create', '-f', EXAMPLE_HA, '--dry-run', '--os-image', img.dir]);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /OS debian-12\n/);
  assert.ok(d.stdout.includes(`OS-IMAGE  Slipway OS (debian-12) 12.12-test1\n  from      ${img.dir}/ (--os-image)\n  to        os/vmlinuz (vmlinuz, ${img.bytes.get('vmlinuz')!.length} bytes)\n`), d.stdout);
  const j = JSON.parse(slipway(['bundle', 'create', '-f', EXAMPLE_HA, '--dry-run', '--json', '--os-image', img.dir]).stdout) as { os: unknown };
  assert.deepEqual(j.os, { name: 'debian-12', version: '12.12-test1', dir: img.dir });
  const u = slipway(['bundle', 'create', '-f', EXAMPLE_HA, '-o', join(dir, 'x.tar'), '--os-version', '4081.2.0']);
  assert.equal(u.code, 2, 'the Flatcar flags are gone');
  assert.match(u.stderr, /Unknown option '--os-version'/);
});

/** `slipway` as nobody, with the image cache at `cache`. */
function asNobody(args: string[], cache: string) {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SLIPWAY_CACHE: cache } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('not root, no --os-image: the newest cached build, named; none cached: exit 1 telling to run slipway image build', { skip: process.getuid?.() !== 0 ? 'needs root to drop to another user' : false }, () => {
  const empty = join(dir, 'empty-cache');
  const r = asNobody(['bundle', 'create', '-f', EXAMPLE_HA, '-o', join(dir, 'n.tar')], empty);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(r.stderr.includes(`slipway bundle create: no bundle written: no OS image in ${empty}/os-image/: build it first with \`sudo slipway image build\`, or give one with --os-image DIR`), r.stderr);
  const dry = asNobody(['bundle', 'create', '-f', EXAMPLE_HA, '--dry-run'], empty);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /OS-IMAGE {2}Slipway OS \(debian-12\) not built yet\n {2}from {6}not built yet: `sudo slipway image build` first/);

  // two builds in the cache: the newer (by its os.json) is the one taken
  const cache = join(dir, 'cache');
  const older = fakeOsImage(join(cache, 'os-image', 'aaa'), { version: '12.11-old' });
  const newer = fakeOsImage(join(cache, 'os-image', 'bbb'), { version: '12.12-new' });
  const past = new Date(Date.now() - 3600_000);
  spawnSync('touch', ['-d', past.toISOString(), join(older.dir, 'os.json')]);
  mkdirSync(join(cache, 'os-image', '.building-ccc')); // a build in progress is not an image
  spawnSync('chmod', ['-R', 'a+rX', cache]);
  const d = asNobody(['bundle', 'create', '-f', EXAMPLE_HA, '--dry-run'], cache);
  assert.equal(d.code, 0, d.stderr);
  assert.ok(d.stdout.includes(`OS-IMAGE  Slipway OS (debian-12) 12.12-new\n  from      ${newer.dir}/ (the newest build in the cache; create uses it)\n`), d.stdout);
});
