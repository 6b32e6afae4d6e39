// apply's progress in serve (issue 17): the real `slipway apply` (in the lab's hub, as the
// provisioner runs it) delivers a file of the operator's to w1 over SSH (a real sshd in w1's
// namespace, in a mount namespace of its own with an overlay on /etc, so the host is never
// written), waits for w1's health (its node is not Ready: there is no cluster here) and
// stops there; meanwhile the real `slipway serve` with the same state directory streams
// each step: a raw SSE client sees the run's events (start, plan, w1 started, its health
// wait, FAILED, the stop reason), `slipway status --watch` follows the running apply to its
// end and prints its lines, and the console in Chromium shows them live in its Day 2 panel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { Lab } from './helpers/serve.ts';
import { slipway, BIN, ROOT } from './helpers/cli.ts';
import type { Netns } from './helpers/netns.ts';
import { SqliteStore } from '../src/store/sqlite.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';
import { buildPlan } from '../src/plan/plan.ts';
import { planTree } from '../src/render/tree.ts';
import { givenOf, machineFiles, saveGiven } from '../src/render/given.ts';

const SSHD = '/usr/sbin/sshd';
const BASE = 'http://10.20.30.2:8080';
const SHOTS = join(ROOT, 'test-results');
const missing = ['ssh', 'ssh-keygen', 'unshare'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
if (!existsSync(SSHD)) missing.push('sshd (openssh-server)');
if (!existsSync('/usr/bin/chromium')) missing.push('chromium');
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : missing.length ? `missing ${missing.join(', ')}` : false;

let lab: Lab;
let w1: Netns;
let browser: Browser | undefined;
let changed: string;
const children: ChildProcess[] = [];

before(async () => {
  if (skip) return;
  lab = Lab.create();
  const out = join(lab.dir, 'out');
  const r = slipway(['render', '-f', lab.file, '-o', out, '--state', lab.state]);
  assert.equal(r.code, 0, r.stderr);
  // every machine installed and ready as serve's store says after a first install; w1's host key pinned, and what it was given
  const spec = parseClusterFile(readFileSync(lab.file, 'utf8'), lab.file).spec!;
  const hostKey = join(lab.dir, 'w1_host_ed25519');
  assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'root@w1', '-f', hostKey]).status, 0);
  const store = new SqliteStore(join(lab.state, 'serve.db'));
  try {
    for (const m of spec.machines) store.transition(m.name, 'ready', 'machine', () => true);
    store.pinHostKey('w1', readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' '));
    store.commit();
  } finally {
    store.close();
  }
  await saveGiven(lab.state, 'w1', givenOf(machineFiles(planTree(buildPlan(spec, await loadOrCreateSecrets(lab.state, spec))), 'w1')));
  await lab.start();

  // w1: its address, and sshd trusting the authorized_keys w1 was rendered with
  w1 = lab.host('52:54:00:20:30:21', '10.20.30.21');
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const conf = join(lab.dir, 'w1_sshd_config');
  writeFileSync(conf, [
    'ListenAddress 10.20.30.21:22', `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${join(out, 'machines/w1/root/root/.ssh/authorized_keys')}`,
    'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', 'PidFile none', '',
  ].join('\n'));
  // a mount namespace of its own: what apply writes lands on a tmpfs overlay of /etc; no systemd to talk to
  const upper = join(lab.dir, 'w1-etc');
  mkdirSync(upper);
  const sshd = w1.spawn('unshare', ['-m', 'sh', '-c', [
    'set -e', 'mount --make-rprivate /', `mount -t tmpfs tmpfs ${upper}`, `mkdir ${upper}/u ${upper}/w`,
    `mount -t overlay overlay -o lowerdir=/etc,upperdir=${upper}/u,workdir=${upper}/w /etc`,
    '{ [ ! -d /run/systemd ] || mount -t tmpfs tmpfs /run/systemd; }', 'mount -t tmpfs tmpfs /opt', 'mount -t tmpfs tmpfs /var/lib',
    `exec ${SSHD} -D -e -f ${conf}`,
  ].join(' && ')]);
  children.push(sshd);
  await w1.waitFor('w1 sshd listening', async () => /10\.20\.30\.21:22\b/.test((await w1.exec('ss', ['-Hltn'])).stdout), 15_000, 200);
  // the change: a file of the operator's on the workers (no unit reads it)
  changed = join(lab.dir, 'day2.yaml');
  writeFileSync(changed, readFileSync(lab.file, 'utf8').replace('  machines:\n', '  files:\n    - path: /etc/slipway-day2.txt\n      contents: "delivered by apply\\n"\n      roles: [worker]\n  machines:\n'));
});
after(async () => {
  await browser?.close();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) await lab.hub.kill(c).catch(() => {});
  await lab?.close();
});

test('apply\'s steps reach serve as they happen: an SSE client, status --watch and the console show them', { skip, timeout: 180_000 }, async () => {
  const t0 = performance.now();
  const token = lab.apiToken();
  // the console, logged in before apply starts: what it shows later came over its event stream
  mkdirSync(SHOTS, { recursive: true });
  const wrapper = join(lab.dir, 'chromium-in-lab');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${lab.hub.name} /usr/bin/chromium "$@"\n`);
  chmodSync(wrapper, 0o755);
  browser = await chromium.launch({ executablePath: wrapper, headless: true, timeout: 60_000, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(`${BASE}/`);
  await page.fill('#token', token);
  await page.click('button[type=submit]');
  await page.waitForSelector('#conn.on');
  assert.equal(await page.isVisible('#activity'), false, 'no apply yet: no panel');

  // a raw SSE client
  let sse = '';
  const stream = lab.hub.spawn('curl', ['-sS', '-N', '-m', '120', '-H', `Authorization: Bearer ${token}`, `${BASE}/api/v1/events`]);
  children.push(stream);
  stream.stdout!.on('data', (d: Buffer) => (sse += d.toString()));
  await lab.hub.waitFor('the event stream connected', () => sse.includes(': connected'), 10_000, 100);

  // apply, as the provisioner runs it; status --watch joins once the run is under way
  let applyOut = '';
  const apply = lab.hub.spawn(process.execPath, [BIN, 'apply', '-f', changed, '--state', lab.state, '--yes', '--health-timeout', '6']);
  children.push(apply);
  apply.stdout!.on('data', (d: Buffer) => (applyOut += d.toString()));
  apply.stderr!.on('data', (d: Buffer) => (applyOut += d.toString()));
  const applyDone = new Promise<number | null>((resolve) => apply.on('exit', (code) => resolve(code)));
  await lab.hub.waitFor('w1 started, as serve says', async () => JSON.stringify(await lab.net.api('/api/v1/activity', token) ?? {}).includes('w1: started (1 of 1)'), 30_000, 100);
  const status = await lab.hub.exec(process.execPath, [BIN, 'status', '-f', lab.file, '--state', lab.state, '--watch', '--timeout', '60'], { timeoutMs: 90_000 });
  const code = await applyDone;
  assert.equal(code, 1, applyOut);
  assert.match(applyOut, /^w1: started \(1 of 1\)$/m);
  assert.match(applyOut, /^w1: waiting for node Ready \(at most 6 s\)$/m);
  assert.match(applyOut, /^w1: FAILED at health: not healthy after 6 s: node w1 not Ready$/m);
  assert.match(applyOut, /^apply: not done: w1 \(stopped at w1: not healthy after 6 s: node w1 not Ready\); run apply again to continue$/m);
  assert.doesNotMatch(applyOut, /progress not shown/, 'serve took every post');
  assert.equal(await w1.exec('nsenter', ['-t', String(children[0]!.pid), '-m', 'cat', '/etc/slipway-day2.txt']).then((r) => r.stdout), 'delivered by apply\n', 'the file is on w1');

  // the SSE client saw the run, in order, with what each step marks
  const events = [...sse.matchAll(/^event: activity\ndata: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as { kind: string; machine?: string; text: string; ok?: boolean; run: string });
  assert.ok(events.length, sse);
  assert.equal(new Set(events.map((e) => e.run)).size, 1, 'one run');
  const kinds = events.filter((e) => e.kind !== 'heartbeat' && e.kind !== 'line').map((e) => `${e.kind}${e.machine ? ` ${e.machine}` : ''}`);
  assert.deepEqual(kinds.filter((k, i) => kinds.indexOf(k) === i), ['start', 'plan w1', 'machine w1', 'health w1', 'failed w1', 'end'], kinds.join(', '));
  assert.match(events.find((e) => e.kind === 'start')!.text, /^apply: started: w1$/);
  assert.ok(events.some((e) => e.kind === 'plan' && e.text === 'w1:   ~ /etc/slipway-day2.txt'), 'the plan, file by file');
  const end = events.find((e) => e.kind === 'end')!;
  assert.equal(end.ok, false);
  assert.match(end.text, /^apply: not done: w1 \(stopped at w1/);
  assert.doesNotMatch(sse, /id: [^\n]*\nevent: activity/, 'activity events carry no id: Last-Event-ID stays the transitions\'');

  // status --watch followed the running apply to its end (every machine ready: it stops there), its lines included
  assert.equal(status.code, 0, status.out);
  assert.match(status.stdout, /following 5 machines until every one is ready or failed, and the apply running until it ends/);
  assert.match(status.stdout, /Z apply: w1: waiting for node Ready \(at most 6 s\)$/m);
  assert.match(status.stdout, /Z apply: w1: FAILED at health: not healthy after 6 s/m);
  assert.match(status.stdout, /Z apply: not done: w1 \(stopped at w1/m);
  assert.ok(status.stdout.indexOf('apply: not done') < status.stdout.lastIndexOf('NAME'), 'the table after the run ended');

  // the console: the run in its Day 2 panel, live
  await page.waitForSelector('#activity .run[data-state="stopped"] li[data-kind="end"]', { timeout: 10_000 });
  assert.match((await page.textContent('#activity h3'))!, /^apply apply-\d+-[0-9a-f]{6} — stopped$/);
  assert.match((await page.textContent('#activity li[data-kind="failed"][data-machine="w1"]'))!, /w1: FAILED at health: not healthy after 6 s: node w1 not Ready/);
  assert.match((await page.textContent('#activity li[data-kind="health"]'))!, /w1: waiting for node Ready/);
  await page.screenshot({ path: join(SHOTS, 'console-apply-progress.png'), fullPage: true });

  // the run outlives serve: apply wrote every line to the state's journal, which a
  // restarted serve reads back (the same run, its end and why)
  const journal = readFileSync(join(lab.state, 'activity.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { run: string; kind: string; text: string });
  assert.equal((statSync(join(lab.state, 'activity.jsonl')).mode & 0o777), 0o600);
  assert.deepEqual(journal.map((e) => e.text), events.filter((e) => e.kind !== 'heartbeat').map((e) => e.text), 'the journal holds what serve was told, in order');
  await lab.stop();
  await lab.start();
  const after = (await lab.net.api('/api/v1/activity', token)) as { running: unknown[]; runs: { run: string; ended?: string; ok?: boolean }[]; events: { run: string; kind: string; text: string }[] };
  assert.deepEqual(after.running, []);
  assert.deepEqual(after.runs.map((r) => [r.run, !!r.ended, r.ok]), [[events[0]!.run, true, false]]);
  assert.deepEqual(after.events.map((e) => e.text), journal.map((e) => e.text));
  console.log(`# apply progress seen by SSE, status --watch and the console (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
});
