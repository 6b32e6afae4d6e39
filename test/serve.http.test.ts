// `slipway serve` over HTTP, from machines in their own namespaces: per-MAC iPXE
// decisions, credentials only to their own machine (IP and MAC) while it is being
// provisioned, the report flow with the rendered report.sh, the operator API and SSE,
// assets with Range/ETag/sha256, the installer's install.env, and binaries pinned by sha256.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from './helpers/serve.ts';
import { slipway } from './helpers/cli.ts';
import type { Netns } from './helpers/netns.ts';

const BASE = 'http://10.20.30.2:8080';
let lab: Lab;
let rendered: string;
let cp1: Netns;
const blob = Buffer.alloc(3 * 1024 * 1024 + 17, 7).map((_, i) => (i * 31) & 255);
const disk = Buffer.alloc(64 * 1024, 1).map((_, i) => (i * 7) & 255);
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

const curl = (ns: Netns, args: string[]) => ns.exec('curl', ['-sS', '-m', '10', ...args], { timeoutMs: 15_000 });
const status = async (ns: Netns, url: string, extra: string[] = []) => (await curl(ns, ['-o', '/dev/null', '-w', '%{http_code}', ...extra, url])).stdout;

before(async () => {
  lab = Lab.create();
  mkdirSync(join(lab.dir, 'assets/os'), { recursive: true });
  mkdirSync(join(lab.dir, 'assets/bin/cni'), { recursive: true });
  writeFileSync(join(lab.dir, 'assets/os/vmlinuz'), blob);
  writeFileSync(join(lab.dir, 'assets/bin/kubelet'), 'kubelet-binary');
  writeFileSync(join(lab.dir, 'assets/bin/cni/bridge'), 'bridge-binary');
  // an OS image as `slipway image build` lays it out: the compressed disk and its manifest
  writeFileSync(join(lab.dir, 'assets/os/disk.img.zst'), disk);
  writeFileSync(join(lab.dir, 'assets/os/os.json'), JSON.stringify({
    name: 'slipway-debian-12', version: 'test', packages: [],
    kernel: { file: 'vmlinuz', sha256: sha256(blob), size: blob.length },
    initrd: { file: 'initrd.img', sha256: sha256(''), size: 0 },
    disk: { file: 'disk.img.zst', sha256: sha256(disk), size: disk.length, rawSize: 1 << 30, rawSha256: sha256('raw') },
  }));
  await lab.start(['--assets', join(lab.dir, 'assets')]);
  // the same state dir: render gives the files serve serves
  rendered = join(lab.dir, 'out');
  const r = slipway(['render', '-f', lab.file, '-o', rendered, '--state', lab.state, '--assets', join(lab.dir, 'assets')]);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => lab?.close());

test('an impostor with cp1\'s IP but another MAC, or another machine, gets no credentials', { timeout: 60_000 }, async () => {
  const impostor = lab.host('52:54:00:66:66:66', '10.20.30.11');
  assert.equal(await status(impostor, `${BASE}/machines/cp1/ignition.json`), '403');
  await lab.removeHost(impostor);
  const w1 = lab.host('52:54:00:20:30:21', '10.20.30.21');
  assert.equal(await status(w1, `${BASE}/machines/cp1/ignition.json`), '403');
  assert.equal(await status(w1, `${BASE}/machines/cp1/cloud-config.yml`), '403');
  const metrics = (await curl(w1, [`${BASE}/metrics`])).stdout;
  assert.match(metrics, /slipway_http_refused_total\{reason="wrong-mac"\} 1/);
  assert.match(metrics, /slipway_http_refused_total\{reason="wrong-ip"\} 2/);
  assert.match(lab.log, /refused \/machines\/cp1\/ignition\.json/);
});

test('cp1 gets its iPXE chain and exactly its own Ignition and cloud-config', { timeout: 60_000 }, async () => {
  cp1 = lab.host('52:54:00:20:30:11', '10.20.30.11');
  assert.match((await curl(cp1, [`${BASE}/boot.ipxe`])).stdout, /^#!ipxe/);
  const chain = (await curl(cp1, [`${BASE}/ipxe/mac/52-54-00-20-30-11.ipxe`])).stdout;
  assert.match(chain, /cp1\.ipxe/);
  const script = (await curl(cp1, [`${BASE}/ipxe/cp1.ipxe`])).stdout;
  assert.match(script, /ignition\.config\.url=http:\/\/10\.20\.30\.2:8080\/machines\/cp1\/ignition\.json/);
  const ign = await curl(cp1, ['-f', `${BASE}/machines/cp1/ignition.json`]);
  assert.equal(ign.code, 0, ign.out);
  assert.equal(ign.stdout, readFileSync(join(rendered, 'machines/cp1/ignition.json'), 'utf8'));
  const cc = await curl(cp1, ['-f', `${BASE}/machines/cp1/cloud-config.yml`]);
  assert.equal(cc.stdout, readFileSync(join(rendered, 'machines/cp1/cloud-config.yml'), 'utf8'));
});

test("the installer's install.env goes only to its machine, pinned to the image serve serves", { timeout: 60_000 }, async () => {
  const env = await curl(cp1, ['-f', `${BASE}/machines/cp1/install.env`]);
  assert.equal(env.code, 0, env.out);
  assert.equal(env.stdout, readFileSync(join(rendered, 'machines/cp1/install.env'), 'utf8'), 'render --assets gives what serve serves');
  const values = Object.fromEntries(env.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.equal(values.SLIPWAY_MACHINE, 'cp1');
  assert.equal(values.SLIPWAY_IMAGE_URL, `${BASE}/assets/os/disk.img.zst`);
  assert.equal(values.SLIPWAY_IMAGE_SHA256, sha256(disk));
  assert.equal(values.SLIPWAY_IMAGE_SIZE, String(1 << 30));
  assert.equal(values.SLIPWAY_REPORT_URL, `${BASE}/api/v1/report`);
  assert.equal(values.SLIPWAY_TOKEN, readFileSync(join(rendered, 'machines/cp1/root/etc/slipway/report-token'), 'utf8').trim());
  const script = (await curl(cp1, [`${BASE}/ipxe/cp1.ipxe`])).stdout;
  assert.match(script, /slipway\.install=http:\/\/10\.20\.30\.2:8080\/machines\/cp1\/install\.env/);
  const w1 = lab.host('52:54:00:20:30:21', '10.20.30.21');
  assert.equal(await status(w1, `${BASE}/machines/cp1/install.env`), '403');
  await lab.removeHost(w1);
});

test('a machine installs only the binaries it was rendered for: a changed one on the provisioner is refused', { timeout: 90_000 }, async () => {
  const w2 = lab.host('52:54:00:20:30:22', '10.20.30.22');
  // w2's own rendered /etc over the host's (awk is an /etc/alternatives link), and empty /opt and /var/lib, as on a fresh install
  const fetchBinaries = () =>
    w2.exec('unshare', ['-m', 'sh', '-c', `mount --make-rprivate / && mount -t overlay overlay -o lowerdir=${join(rendered, 'machines/w2/root/etc')}:/etc /etc && mount -t tmpfs tmpfs /opt && mount -t tmpfs tmpfs /var/lib && sh /etc/slipway/fetch-binaries.sh; echo "exit=$?"; ls /opt/bin 2>/dev/null; cat /var/lib/slipway/binaries-missing 2>/dev/null`], { timeoutMs: 60_000 });
  const list = readFileSync(join(rendered, 'machines/w2/root/etc/slipway/binaries.list'), 'utf8');
  assert.match(list, new RegExp(`^/opt/bin/kubelet kubelet ${sha256('kubelet-binary')}$`, 'm'), 'pinned by sha256');
  assert.match(list, /^\/opt\/bin\/kube-proxy kube-proxy$/m, 'not offered when rendered: no pin');
  const ok = await fetchBinaries();
  assert.match(ok.stdout, /exit=0/, ok.out);
  assert.match(ok.stdout, /^kubelet$/m);
  assert.match(ok.out, /the provisioner has no kube-proxy/);
  // The provisioner's kubelet changes (a different build dropped into the assets): refused.
  writeFileSync(join(lab.dir, 'assets/bin/kubelet'), 'another kubelet build');
  const refused = await fetchBinaries();
  assert.match(refused.stdout, /exit=1/, refused.out);
  assert.match(refused.out, new RegExp(`REFUSED kubelet: the provisioner offers sha256 ${sha256('another kubelet build')}, this machine was rendered for ${sha256('kubelet-binary')}`));
  assert.doesNotMatch(refused.stdout, /^kubelet$/m, 'never installed');
  writeFileSync(join(lab.dir, 'assets/bin/kubelet'), 'kubelet-binary');
  await lab.removeHost(w2);
});

/** Run the machine's own rendered report.sh inside its namespace, with its /etc. */
const report = (ns: Netns, machine: string, ...args: string[]) =>
  ns.exec('unshare', ['-m', 'sh', '-c', `mount --make-rprivate / && mount --bind ${join(rendered, 'machines', machine, 'root/etc')} /etc && mount -t tmpfs tmpfs /var/lib && sh /etc/slipway/report.sh "$@" && cat /var/lib/slipway/report-seq`, 'report', ...args], { timeoutMs: 60_000 });

test('the machine reports with its own script and token; the API and SSE show it', { timeout: 60_000 }, async () => {
  const token = lab.apiToken();
  const auth = ['-H', `Authorization: Bearer ${token}`];
  const sse = curl(cp1, ['-N', '-m', '8', ...auth, `${BASE}/api/v1/events?after=0`]);
  const r = await report(cp1, 'cp1', 'installed');
  assert.equal(r.code, 0, r.out);
  const machine = JSON.parse((await curl(cp1, [...auth, `${BASE}/api/v1/machines/cp1`])).stdout) as { state: string; events: { to: string; source: string }[]; artifacts: { path: string; contents?: string }[] };
  assert.equal(machine.state, 'installed');
  assert.deepEqual(machine.events.map((e) => `${e.source}:${e.to}`), ['http:booting', 'http:config-fetched', 'machine:installed']);
  const key = machine.artifacts.find((a) => a.path === '/etc/kubernetes/pki/ca.key');
  assert.ok(key && !key.contents!.includes('PRIVATE KEY'), 'secrets are masked in the API');
  const stream = (await sse).stdout;
  assert.match(stream, /event: transition\ndata: \{[^\n]*"to":"installed"/);
  // no token / wrong token: 401 and nothing changes
  assert.equal(await status(cp1, `${BASE}/api/v1/machines`), '401');
  assert.equal(await status(cp1, `${BASE}/api/v1/machines`, ['-H', 'Authorization: Bearer nope']), '401');
  assert.equal(await status(cp1, `${BASE}/api/v1/report`, ['-X', 'POST', '-H', 'Authorization: Bearer nope', '--data', '{"state":"ready","seq":99}']), '401');
});

test('malformed, oversized and replayed reports are refused and change nothing', { timeout: 60_000 }, async () => {
  const mtoken = readFileSync(join(rendered, 'machines/cp1/root/etc/slipway/report-token'), 'utf8').trim();
  const post = (body: string) => status(cp1, `${BASE}/api/v1/report`, ['-X', 'POST', '-H', `Authorization: Bearer ${mtoken}`, '-H', 'Content-Type: application/json', '--data-binary', body]);
  assert.equal(await post('{"state":"ready","seq":1}'), '400', 'seq 1 was used already: replay');
  assert.equal(await post('not json'), '400');
  assert.equal(await post('{"state":"exploded","seq":50}'), '400');
  assert.equal(await post('{"state":"failed","seq":51}'), '400', 'failed needs a reason');
  assert.equal(await post(JSON.stringify({ state: 'ready', seq: 52, detail: { logs: 'x'.repeat(70_000) } })), '413');
  // Nested 4,300 levels under 64 KiB: refused up front, naming the limit, and its seq stays unused.
  const deep = `{"state":"installed","seq":60,"detail":${'{"a":'.repeat(4300)}1${'}'.repeat(4300)}}`;
  const refused = await curl(cp1, ['-w', '\n%{http_code}', '-X', 'POST', '-H', `Authorization: Bearer ${mtoken}`, '--data-binary', deep, `${BASE}/api/v1/report`]);
  assert.match(refused.stdout, /detail is nested deeper than 8 levels"\n\}\n+400$/);
  assert.equal(await post('{"state":"installed","seq":60,"detail":{"unit":"a.service","logs":"fine"}}'), '200', 'seq 60 was not used by the refused report');
  const state = JSON.parse((await curl(cp1, ['-H', `Authorization: Bearer ${lab.apiToken()}`, `${BASE}/api/v1/machines/cp1`])).stdout) as { state: string };
  assert.equal(state.state, 'installed');
});

test('an installed machine boots from disk and is not served its config; reprovision re-opens it with a new report token', { timeout: 60_000 }, async () => {
  assert.match((await curl(cp1, [`${BASE}/ipxe/mac/52-54-00-20-30-11.ipxe`])).stdout, /^#!ipxe\n.*local disk\nexit\n$/s);
  assert.equal(await status(cp1, `${BASE}/machines/cp1/ignition.json`), '404');
  const tokenFile = join(rendered, 'machines/cp1/root/etc/slipway/report-token');
  const oldToken = readFileSync(tokenFile, 'utf8').trim();
  const auth = ['-H', `Authorization: Bearer ${lab.apiToken()}`];
  // `slipway remove` recorded a window token for cp1 (its first one was used): the
  // reprovisioned render must carry it, read from the state, not the one serve started with
  const window = { id: 'win001', secret: 'windowsecret0001', expires: new Date(Date.now() + 3600_000).toISOString() };
  writeFileSync(join(lab.state, 'bootstrap-tokens.json'), JSON.stringify({ machines: { cp1: window }, retired: [] }), { mode: 0o600 });
  assert.equal(await status(cp1, `${BASE}/api/v1/machines/cp1/reprovision`, ['-X', 'POST', ...auth]), '200');
  const ign = await curl(cp1, ['-f', `${BASE}/machines/cp1/ignition.json`]);
  assert.equal(ign.code, 0, ign.out);
  assert.match((await curl(cp1, [`${BASE}/ipxe/mac/52-54-00-20-30-11.ipxe`])).stdout, /cp1\.ipxe/);
  // The configuration served now carries a new token, the one tokens.json (and so a render) has.
  const files = (JSON.parse(ign.stdout) as { storage: { files: { path: string; contents: { source: string } }[] } }).storage.files;
  const served = Buffer.from(files.find((f) => f.path === '/etc/slipway/report-token')!.contents.source.split(',')[1]!, 'base64').toString().trim();
  const saved = (JSON.parse(readFileSync(join(lab.state, 'tokens.json'), 'utf8')) as { machineTokens: Record<string, string> }).machineTokens.cp1;
  assert.notEqual(served, oldToken);
  assert.equal(served, saved);
  const bootstrap = Buffer.from(files.find((f) => f.path === '/etc/kubernetes/bootstrap-kubelet.conf')!.contents.source.split(',')[1]!, 'base64').toString();
  assert.match(bootstrap, /token: win001\.windowsecret0001$/m, "the reprovisioned machine's bootstrap kubeconfig has its window token");
  // The previous install's token is refused: its reports cannot be replayed into this one.
  const post = (token: string, body: string) => status(cp1, `${BASE}/api/v1/report`, ['-X', 'POST', '-H', `Authorization: Bearer ${token}`, '--data', body]);
  assert.equal(await post(oldToken, '{"state":"installing","seq":1}'), '401');
  const r = slipway(['render', '-f', lab.file, '-o', rendered, '--state', lab.state, '--assets', join(lab.dir, 'assets')]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(tokenFile, 'utf8').trim(), served, 'a render gives the machine the token serve serves');
});

test('a failure report carries its reason', { timeout: 60_000 }, async () => {
  const reason = 'disk "/dev/sda" not found\n\tback\\slash';
  const r = await report(cp1, 'cp1', 'failed', reason);
  assert.equal(r.code, 0, r.out);
  const m = JSON.parse((await curl(cp1, ['-H', `Authorization: Bearer ${lab.apiToken()}`, `${BASE}/api/v1/machines/cp1`])).stdout) as { state: string; reason: string };
  assert.equal(m.state, 'failed');
  assert.equal(m.reason, 'disk "/dev/sda" not found\n back\\slash', 'escaped by report.sh, tab → space');
  // A failed machine is not installed again by itself (no reinstall loop, no surprise
  // wipe of a disk with one failing unit): it boots locally until the operator reprovisions.
  assert.match((await curl(cp1, [`${BASE}/ipxe/cp1.ipxe`])).stdout, /^#!ipxe\necho Slipway: cp1 failed: reprovision it to install again: booting from local disk\nexit\n$/);
  assert.equal(await status(cp1, `${BASE}/machines/cp1/install.env`), '404');
  const auth = ['-H', `Authorization: Bearer ${lab.apiToken()}`];
  assert.equal(await status(cp1, `${BASE}/api/v1/machines/cp1/reprovision`, ['-X', 'POST', ...auth]), '200');
  // A new install numbers its reports from 1: fetching install.env starts it (also after a power loss mid-install).
  const token = (await curl(cp1, ['-f', `${BASE}/machines/cp1/install.env`])).stdout.match(/^SLIPWAY_TOKEN=(.*)$/m)![1]!;
  const post = (seq: number) => status(cp1, `${BASE}/api/v1/report`, ['-X', 'POST', '-H', `Authorization: Bearer ${token}`, '--data', `{"state":"installing","seq":${seq},"reason":"writing image 10%","detail":{"step":"write","percent":10}}`]);
  assert.equal(await post(1), '200');
  assert.equal(await post(2), '200');
  assert.equal(await status(cp1, `${BASE}/machines/cp1/install.env`), '200', 'powered off mid-install: the installer starts again');
  assert.equal(await post(1), '200', 'seq 1 again is the new attempt, not a replay');
  const after = JSON.parse((await curl(cp1, [...auth, `${BASE}/api/v1/machines/cp1`])).stdout) as { state: string; events: { to: string; reason?: string }[] };
  assert.equal(after.state, 'installing');
  assert.equal(after.events.filter((e) => e.reason === 'writing image 10%').length, 3, 'each progress report is an event');
});

test('assets: sha256, ETag, Range, and SHA256SUMS the fetch script checks against', { timeout: 60_000 }, async () => {
  const sha = createHash('sha256').update(blob).digest('hex');
  const head = (await curl(cp1, ['-I', `${BASE}/assets/os/vmlinuz`])).stdout;
  assert.match(head, new RegExp(`x-checksum-sha256: ${sha}`, 'i'));
  const etag = /etag: (\S+)/i.exec(head)![1]!;
  assert.equal(await status(cp1, `${BASE}/assets/os/vmlinuz`, ['-H', `If-None-Match: ${etag}`]), '304');
  const part = await cp1.exec('sh', ['-c', `curl -sS -r 1000-1999 ${BASE}/assets/os/vmlinuz | sha256sum`]);
  assert.equal(part.stdout.split(' ')[0], createHash('sha256').update(blob.subarray(1000, 2000)).digest('hex'));
  assert.equal(await status(cp1, `${BASE}/assets/os/vmlinuz`, ['-r', '99999999-']), '416');
  assert.equal(await status(cp1, `${BASE}/assets/../cluster.yaml`, ['--path-as-is']), '404');
  const sums = (await curl(cp1, [`${BASE}/assets/bin/SHA256SUMS`])).stdout;
  assert.match(sums, new RegExp(`^${createHash('sha256').update('kubelet-binary').digest('hex')}  kubelet$`, 'm'));
  assert.match(sums, /  cni\/bridge$/m);
});

test('issue 17: a reprovision while the cluster runs but its API cannot take a bootstrap token is refused (502, naming why), and changes nothing', { timeout: 60_000 }, async () => {
  // cp2 joined: the cluster runs; nothing answers on the VIP or cp2's apiserver in this lab
  const cp2Token = readFileSync(join(rendered, 'machines/cp2/root/etc/slipway/report-token'), 'utf8').trim();
  assert.equal(await status(cp1, `${BASE}/api/v1/report`, ['-X', 'POST', '-H', `Authorization: Bearer ${cp2Token}`, '--data', '{"state":"installed","seq":1}']), '200');
  assert.equal(await status(cp1, `${BASE}/api/v1/report`, ['-X', 'POST', '-H', `Authorization: Bearer ${cp2Token}`, '--data', '{"state":"joined","seq":2}']), '200');
  const tokensBefore = readFileSync(join(lab.state, 'tokens.json'), 'utf8');
  const windowsBefore = readFileSync(join(lab.state, 'bootstrap-tokens.json'), 'utf8');
  const auth = ['-H', `Authorization: Bearer ${lab.apiToken()}`];
  const before = JSON.parse((await curl(cp1, [...auth, `${BASE}/api/v1/machines/w2`])).stdout) as { state: string; events: unknown[] };
  const r = await curl(cp1, ['-m', '30', '-w', '\n%{http_code}', '-X', 'POST', ...auth, `${BASE}/api/v1/machines/w2/reprovision`]);
  assert.match(r.stdout, /\n502$/, r.out);
  const error = (JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('\n'))) as { error: string }).error;
  assert.match(error, /^reprovision of w2 failed: the cluster runs \(control-plane machines joined\), but its bootstrap token could not be created: no apiserver answered \(https:\/\/10\.20\.30\.10:6443: .*; https:\/\/10\.20\.30\.12:6443: .*\)\. Without one it would install with a token the cluster refuses/);
  assert.equal(readFileSync(join(lab.state, 'tokens.json'), 'utf8'), tokensBefore, 'no new report token');
  assert.equal(readFileSync(join(lab.state, 'bootstrap-tokens.json'), 'utf8'), windowsBefore, 'no window recorded');
  const after = JSON.parse((await curl(cp1, [...auth, `${BASE}/api/v1/machines/w2`])).stdout) as { state: string; events: unknown[] };
  assert.deepEqual([after.state, after.events.length], [before.state, before.events.length], 'w2 was not sent back to the start');
});
