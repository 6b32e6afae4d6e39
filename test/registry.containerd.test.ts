// containerd pulls through the bundle registry with the hosts.toml files Slipway renders
// for every machine, unchanged: `slipway serve --bundle` on the lab network, containerd
// (Debian's) in a machine's namespace, `ctr images pull --hosts-dir <rendered certs.d>`
// of the upstream names. The digests containerd records are the upstream ones.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { bundleContents } from '../src/bundle/contents.ts';
import { createBundle } from '../src/bundle/create.ts';
import { parseMirrors } from '../src/bundle/mirror.ts';
import { progressFor } from '../src/bundle/progress.ts';
import { haSpec } from './helpers/spec.ts';
import { has, slipwayAsync, startUpstream, type Upstream } from './helpers/oci-upstream.ts';
import { Lab } from './helpers/serve.ts';
import type { Netns } from './helpers/netns.ts';

const skip = !has('docker-registry') || !has('skopeo') ? 'needs docker-registry and skopeo'
  : !has('containerd') || !has('ctr') ? 'needs containerd (apt-get install containerd)' : false;
let up: Upstream;
let dir: string;
let lab: Lab;
let w1: Netns;
let containerd: ChildProcess;
const sock = () => join(dir, 'containerd', 'containerd.sock');

before(async () => {
  if (skip) return;
  const contents = bundleContents(haSpec());
  up = await startUpstream(contents);
  dir = mkdtempSync(join(tmpdir(), 'slipway-containerd-'));
  const bundle = join(dir, 'bundle.tar');
  await createBundle({ contents, osImage: up.osImage, output: bundle, mirrors: parseMirrors(up.mirrorArgs), platforms: [{ os: 'linux', architecture: 'amd64' }], progress: progressFor(process.stderr, true) });
  lab = Lab.create();
  await lab.start(['--bundle', bundle]);
  // the files a machine receives, rendered with the lab's own cluster file and state
  const r = await slipwayAsync(['render', '-f', lab.file, '-o', join(dir, 'out'), '--state', lab.state]);
  assert.equal(r.code, 0, r.stderr);
  w1 = lab.host('52:54:00:20:30:21', '10.20.30.21');
  const c = join(dir, 'containerd');
  mkdirSync(c);
  writeFileSync(join(c, 'config.toml'), [
    'version = 2',
    `root = "${join(c, 'root')}"`,
    `state = "${join(c, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${sock()}"`,
    '',
  ].join('\n'));
  containerd = w1.spawn('containerd', ['--config', join(c, 'config.toml')]);
  let log = '';
  containerd.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-10_000)));
  await w1.waitFor('containerd', async () => {
    if (containerd.exitCode !== null) throw new Error(`containerd exited: ${log}`);
    return (await w1.exec('ctr', ['--address', sock(), 'version'], { timeoutMs: 5_000 })).code === 0;
  }, 30_000, 250);
});
after(async () => {
  if (containerd) await w1.kill(containerd);
  await lab?.close();
  await up?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('ctr pulls registry.k8s.io and docker.io images through the rendered mirror config', { skip, timeout: 180_000 }, async () => {
  const certs = join(dir, 'out/machines/w1/root/etc/containerd/certs.d');
  for (const ref of ['registry.k8s.io/pause:3.10.1', 'docker.io/library/nginx:1.27-alpine', 'registry.k8s.io/coredns/coredns:v1.12.1']) {
    const pull = await w1.exec('ctr', ['--address', sock(), 'images', 'pull', '--hosts-dir', certs, '--snapshotter', 'native', ref], { timeoutMs: 120_000 });
    assert.equal(pull.code, 0, `${ref}: ${pull.out}`);
  }
  const ls = await w1.exec('ctr', ['--address', sock(), 'images', 'ls'], { timeoutMs: 30_000 });
  assert.equal(ls.code, 0, ls.out);
  for (const [ref, img] of up.images) {
    if (ref.includes('flannel')) continue;
    const line = ls.stdout.split('\n').find((l) => l.startsWith(ref + ' '));
    assert.ok(line, `${ref} not in ctr images ls:\n${ls.stdout}`);
    assert.ok(line.includes(img.top.digest), `${ref}: containerd recorded another digest:\n${line}`);
  }
  // a name the bundle does not hold fails at the mirror (and, offline, upstream)
  const miss = await w1.exec('ctr', ['--address', sock(), 'images', 'pull', '--hosts-dir', certs, 'registry.k8s.io/etcd:3.6.4-0'], { timeoutMs: 60_000 });
  assert.notEqual(miss.code, 0);
});
