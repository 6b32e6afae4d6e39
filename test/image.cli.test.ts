// `slipway image build [-o DIR] [--mirror URL]`: its arguments as data, the usage and
// root errors through the real executable, and the command's run against a stand-in for
// scripts/build-os-image.sh that prints a small image directory (helpers/os-image.ts):
// progress, the os.json summary, the mirror handed to the script, and -o's atomic copy.
// No real image is built here (test/os-image.qemu.test.ts, helper A's, does that).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkMirror, imageCommand, ImageUsage, NEEDS_ROOT, parseImageArgs } from '../src/image/cli.ts';
import { IMAGE_SCRIPT } from '../src/image/build.ts';
import { BIN, ROOT, slipway } from './helpers/cli.ts';
import { fakeOsImage } from './helpers/os-image.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('arguments as data: build, -o, --mirror; everything else is a usage error', () => {
  assert.deepEqual(parseImageArgs(['build']), { command: 'build', out: undefined, mirror: undefined, quiet: false });
  assert.deepEqual(parseImageArgs(['build', '-o', 'out', '--mirror', 'http://mirror.corp/debian/', '-q']), { command: 'build', out: 'out', mirror: 'http://mirror.corp/debian', quiet: true });
  assert.equal(parseImageArgs(['build', '--out=x']).out, 'x');
  const usage: [string[], RegExp][] = [
    [[], /image: build\?/],
    [['make'], /unknown image command "make" \(build\)/],
    [['build', '--mirror', 'ftp://mirror/debian'], /only http and https mirrors/],
    [['build', '--mirror', 'deb.debian.org'], /is not a URL/],
    [['build', '--mirror', 'http://m/debian?x=1'], /no query or fragment/],
    [['build', '-o', ''], /-o needs a directory/],
    [['build', '--frobnicate'], /image build: Unknown option '--frobnicate'/],
    [['build', 'extra'], /image build: .*positional/i],
    [['build', '--mirror'], /image build: .*--mirror/],
  ];
  for (const [argv, re] of usage) assert.throws(() => parseImageArgs(argv), (e: Error) => e instanceof ImageUsage && re.test(e.message), argv.join(' '));
  assert.equal(checkMirror('https://deb.debian.org/debian'), 'https://deb.debian.org/debian');
});

test('the script is scripts/build-os-image.sh, one constant', () => {
  assert.equal(IMAGE_SCRIPT, join(ROOT, 'scripts/build-os-image.sh'));
});

test('through the executable: usage errors exit 2 with the usage text; the help lists image build', () => {
  for (const argv of [['image'], ['image', 'build', '--mirror', 'ftp://x/'], ['image', 'build', '-x']]) {
    const r = slipway(argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.match(r.stderr, /^slipway: image/);
    assert.match(r.stderr, /Usage: slipway <command>/);
  }
  const help = slipway(['--help']);
  assert.match(help.stdout, /^ {2}image {4}build \[-o DIR\] \[--mirror URL\] \[-q\]$/m);
  assert.match(help.stdout, /--os-image DIR/);
  assert.doesNotMatch(help.stdout, /flatcar|os-channel|os-version/i);
});

test('not root: says so and that sudo is needed, exit 1, nothing run', { skip: process.getuid?.() !== 0 ? 'needs root to drop to another user' : false }, () => {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'image', 'build'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(r.stderr.trim(), NEEDS_ROOT);
  assert.match(r.stderr, /run it with sudo/);
  assert.equal(r.stdout, '');
});

/** A stand-in for the image script: progress on stderr, the environment it got, the directory last on stdout. */
function fakeScript(dir: string, imageDir: string, opts: { exit?: number } = {}): string {
  const script = join(dir, 'fake-build.sh');
  writeFileSync(script, [
    '#!/bin/bash',
    'echo "build-os-image: debootstrap (cached)" >&2',
    'echo "build-os-image: disk image 3 MiB" >&2',
    `echo "mirror=\${SLIPWAY_MIRROR-unset}" > ${join(dir, 'env')}`,
    'echo "a line before the last"',
    opts.exit ? `echo "build-os-image: error: no space left" >&2; exit ${opts.exit}` : `echo ${imageDir}/`,
    '',
  ].join('\n'));
  return script;
}

function io(script: string) {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s), uid: 0, script, env: { PATH: process.env.PATH } } };
}

/** Run `fn` with a fresh temporary directory, removed afterwards whatever happens. */
const withDir = (fn: (dir: string) => Promise<void>) => async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-image-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

test('build: progress on stderr, the os.json summary on stdout, --mirror to the script as SLIPWAY_MIRROR', withDir(async (dir) => {
  const img = fakeOsImage(join(dir, 'cache', 'os-image', 'k1'));
  const x = io(fakeScript(dir, img.dir));
  assert.equal(await imageCommand(['build', '--mirror', 'http://mirror.corp/debian'], x.io), 0, x.err.join('\n'));
  assert.equal(readFileSync(join(dir, 'env'), 'utf8'), 'mirror=http://mirror.corp/debian\n');
  assert.ok(x.err.includes('image: build-os-image: debootstrap (cached)'), x.err.join('\n'));
  assert.ok(x.err.includes('image: a line before the last'));
  assert.match(x.err.at(-1)!, /^image: done in \d+\.\d s$/);
  const text = x.out.join('\n');
  assert.match(text, new RegExp(`^OS image debian-12 12\\.12-test1: ${img.dir}/$`, 'm'));
  for (const name of ['vmlinuz', 'initrd.img', 'disk.img.zst', 'os.json']) {
    const b = img.bytes.get(name)!;
    assert.match(text, new RegExp(`^ {2}os/${name.replace('.', '\\.')} +\\d+(\\.\\d KiB| B) {2}sha256:${sha256(b)}$`, 'm'), name);
  }
  assert.match(text, new RegExp(`raw, sha256:${img.json.disk.rawSha256}`));
  assert.match(text, /^ {2}3 Debian packages/m);

  // no --mirror: the script's own default (SLIPWAY_MIRROR unset)
  const y = io(fakeScript(dir, img.dir));
  assert.equal(await imageCommand(['build', '-q'], y.io), 0);
  assert.equal(readFileSync(join(dir, 'env'), 'utf8'), 'mirror=unset\n');
  assert.deepEqual(y.err, [], 'quiet');
}));

test('-o DIR: the five files (not root/) copied whole and checked, atomically; an earlier image replaced, anything else refused', withDir(async (dir) => {
  const img = fakeOsImage(join(dir, 'cache', 'os-image', 'k1'));
  const out = join(dir, 'deep', 'out');
  const x = io(fakeScript(dir, img.dir));
  assert.equal(await imageCommand(['build', '-o', out], x.io), 0, x.err.join('\n'));
  assert.deepEqual(readdirSync(out).sort(), ['MANIFEST', 'disk.img.zst', 'initrd.img', 'os.json', 'vmlinuz']);
  for (const [name, b] of img.bytes) assert.ok(readFileSync(join(out, name)).equals(b), name);
  assert.ok(x.out.includes(`copied to ${out}: vmlinuz, initrd.img, disk.img.zst, os.json, MANIFEST`), x.out.join('\n'));
  assert.deepEqual(readdirSync(join(dir, 'deep')), ['out'], 'no temporary left beside it');

  // a second build (another image) replaces the first copy whole
  const img2 = fakeOsImage(join(dir, 'cache', 'os-image', 'k2'), { version: '12.13-test2' });
  assert.equal(await imageCommand(['build', '-o', out, '-q'], io(fakeScript(dir, img2.dir)).io), 0);
  assert.equal(JSON.parse(readFileSync(join(out, 'os.json'), 'utf8')).version, '12.13-test2');
  assert.ok(readFileSync(join(out, 'vmlinuz')).equals(img2.bytes.get('vmlinuz')!));
  assert.deepEqual(readdirSync(join(dir, 'deep')), ['out']);

  // a directory of something else is not overwritten
  const other = join(dir, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'notes.txt'), 'mine\n');
  const z = io(fakeScript(dir, img2.dir));
  assert.equal(await imageCommand(['build', '-o', other], z.io), 1);
  assert.match(z.err.join('\n'), /slipway image build: -o .*other: exists and is not an OS image directory \(no os\.json\): not replacing it/);
  assert.deepEqual(readdirSync(other), ['notes.txt']);
}));

test('a failing script, or a damaged cached image, is exit 1 with the reason; -o gets nothing', withDir(async (dir) => {
  const img = fakeOsImage(join(dir, 'cache', 'os-image', 'k1'));
  const out = join(dir, 'out');
  const f = io(fakeScript(dir, img.dir, { exit: 3 }));
  assert.equal(await imageCommand(['build', '-o', out], f.io), 1);
  assert.match(f.err.join('\n'), /slipway image build: .*fake-build\.sh exited 3; its last lines:\n(?: {2}.*\n)* {2}build-os-image: disk image 3 MiB\n {2}build-os-image: error: no space left/);
  assert.ok(!existsSync(out));

  // same size, one byte changed: the digest os.json names no longer matches
  const disk = Buffer.from(img.bytes.get('disk.img.zst')!);
  disk[disk.length - 1] = disk[disk.length - 1]! ^ 1;
  writeFileSync(join(img.dir, 'disk.img.zst'), disk);
  const d = io(fakeScript(dir, img.dir));
  assert.equal(await imageCommand(['build', '-o', out], d.io), 1);
  assert.match(d.err.join('\n'), /printed .*k1\/, which is not a complete image: .*disk\.img\.zst: sha256 [0-9a-f]{64}, os\.json says [0-9a-f]{64}/);
  assert.ok(!existsSync(out));
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), []);
}));
