// The rehearsal's web console from the operator's side: the real `slipway serve` runs in
// a rehearsal lab (its own network namespace, as `slipway rehearse` makes it), the
// console forwarder makes it reachable at http://127.0.0.1:PORT on the host, and
// everything here runs in the host namespace: fetch with the operator token, a client
// that resets its connection, Debian chromium (playwright-core) logging in and following
// a machine's state live, the rehearsal's terminal view (Progress) printing status's table.
// Closing leaves no namespace, process, socket or listening port. The lab's namespace has
// a prefix of its own, so rehearse.test.ts's leftovers checks never see it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { EXAMPLE_HA, ROOT } from './helpers/cli.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import type { Spec } from '../src/spec/types.ts';
import { Lab } from '../src/rehearse/lab/lab.ts';
import { exposeConsole, type ExposedConsole } from '../src/rehearse/lab/console.ts';
import { Progress } from '../src/rehearse/progress.ts';

const CHROMIUM = '/usr/bin/chromium';
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const SKIP = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : (['ip', 'curl', 'setpriv'].find((c) => !has(c)) ?? false) && 'missing ip, curl or setpriv';
const SHOTS = join(ROOT, 'test-results');

let dir: string;
let spec: Spec;
let lab: Lab | undefined;
let web: ExposedConsole;
let token: string;
const logs: string[] = [];
const log = (l: string) => logs.push(l);

const alive = (pid: number | undefined) => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const netnsList = () => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
/** Does something accept TCP connections on 127.0.0.1:port? */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.setTimeout(3_000, () => (s.destroy(), resolve(false)));
  });

/** A machine's report, sent from the host through the console port (the API checks the machine's token, not where it comes from). */
async function report(machine: string, body: object): Promise<void> {
  const tokens = (JSON.parse(readFileSync(join(dir, 'state', 'tokens.json'), 'utf8')) as { machineTokens: Record<string, string> }).machineTokens;
  const res = await fetch(`${web.url}api/v1/report`, { method: 'POST', headers: { Authorization: `Bearer ${tokens[machine]}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.text());
}

before(async () => {
  if (SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'slipway-console-'));
  const file = join(dir, 'cluster.yaml');
  copyFileSync(EXAMPLE_HA, file);
  const parsed = parseClusterFile(readFileSync(file, 'utf8'), file);
  assert.ok(parsed.spec);
  spec = parsed.spec;
  lab = Lab.create(spec, 'slipway-rc-lab');
  await lab.startServe({ file, state: join(dir, 'state'), logFile: join(dir, 'serve.log'), timeoutMs: 30_000 });
  token = readFileSync(join(dir, 'state', 'api-token'), 'utf8').trim();
  web = await exposeConsole({ lab, run: dir, log, tokenFile: join(dir, 'state', 'api-token') });
  lab.own(web);
});

after(async () => {
  await lab?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the console URL is printed with where the login token is', { skip: SKIP }, () => {
  assert.match(web.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.ok(web.port > 0);
  assert.ok(logs.includes(`web console: ${web.url} (log in with the API token in ${join(dir, 'state', 'api-token')})`), logs.join('\n'));
  assert.ok(alive(web.pid), 'the forwarder runs');
  assert.ok(existsSync(web.socket));
});

test('from the host namespace: the API lists the file\'s machines with the token, 401 without', { skip: SKIP, timeout: 30_000 }, async () => {
  const res = await fetch(`${web.url}api/v1/machines`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  const { machines } = (await res.json()) as { machines: { name: string; ip: string }[] };
  assert.deepEqual(machines.map((m) => m.name), spec.machines.map((m) => m.name));
  assert.deepEqual(machines.map((m) => m.ip), spec.machines.map((m) => m.ip));
  assert.equal((await fetch(`${web.url}api/v1/machines`)).status, 401);
  const page = await fetch(web.url);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /Operator login/);
});

test('clients that reset or hang up mid-request do not take the console down', { skip: SKIP, timeout: 30_000 }, async () => {
  for (let i = 0; i < 20; i++) {
    await new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: web.port });
      s.on('error', () => resolve());
      s.once('connect', () => {
        s.write('GET /api/v1/machines HTTP/1.1\r\nHost: x\r\n');
        if (i % 2) s.resetAndDestroy();
        else s.destroy();
        resolve();
      });
    });
  }
  // a request for a large body read slowly, then abandoned
  const ctrl = new AbortController();
  const res = await fetch(`${web.url}api/v1/events`, { headers: { Authorization: `Bearer ${token}` }, signal: ctrl.signal });
  assert.equal(res.status, 200);
  ctrl.abort();
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(alive(web.pid), 'the forwarder survived');
  assert.equal((await fetch(`${web.url}readyz`)).status, 200);
});

test('the terminal view: transitions as lines, status\'s table at the start, on a failure and at the end', { skip: SKIP, timeout: 30_000 }, async () => {
  const out: string[] = [];
  const progress = new Progress(lab!, token, spec.machines.map((m) => m.name), (l) => out.push(l));
  await progress.poll();
  assert.match(out.join('\n'), /^status: 5 machines/m);
  assert.match(out.join('\n'), /^ {2}NAME +MAC +IP +ROLES +STATE +ELAPSED +LAST EVENT$/m);
  for (const m of spec.machines) assert.match(out.join('\n'), new RegExp(`^  ${m.name} +${m.mac} +${m.ip} .* unknown `, 'm'));
  const tables = () => out.filter((l) => l.startsWith('  NAME ')).length;
  assert.equal(tables(), 1);

  await report('cp1', { state: 'installed', seq: 1 });
  await progress.poll();
  assert.match(out.join('\n'), /s\] cp1 +installed \(machine\)$/m);
  assert.equal(progress.installed('cp1'), true);
  assert.equal(progress.states.get('cp1')?.state, 'installed');
  assert.equal(tables(), 1, 'no table for a single transition');

  await report('w2', { state: 'failed', seq: 1, reason: 'unit kubelet.service failed' });
  await progress.poll();
  assert.match(out.join('\n'), /s\] w2 +failed \(machine\): unit kubelet\.service failed$/m);
  assert.equal(tables(), 2, 'a table when a machine fails');
  assert.match(out.join('\n'), /^status: w2 failed$/m);

  await progress.stop();
  assert.equal(tables(), 2, 'nothing changed since: no final table');
  await report('w1', { state: 'installed', seq: 1 });
  await progress.poll();
  await progress.stop();
  assert.equal(tables(), 3, 'the final table');
  assert.match(out.at(-1)!, /^ {2}w2 .* failed .* machine: failed \(unit kubelet\.service failed\)$/);
});

test('Debian chromium on the host logs in and follows the machines live', { skip: SKIP || (!existsSync(CHROMIUM) && `no ${CHROMIUM}`), timeout: 90_000 }, async () => {
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(web.url);
    await page.waitForSelector('#login-form', { state: 'visible' });
    await page.fill('#token', token);
    await page.click('button[type=submit]');
    await page.waitForSelector('#machines tbody tr');
    const names = await page.locator('#machines tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.name));
    assert.deepEqual(names, spec.machines.map((m) => m.name));
    await page.waitForSelector('#conn.on'); // the event stream, through both hops
    await report('cp2', { state: 'installed', seq: 1 });
    await page.waitForFunction(() => document.querySelector('tr[data-name="cp2"] .state')?.textContent === 'installed', undefined, { timeout: 10_000 });
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'console-rehearsal.png') });
  } finally {
    await browser?.close();
  }
});

test('a port already taken is refused with a clear message; closeNow (rehearse --keep) stops a console at once', { skip: SKIP, timeout: 30_000 }, async () => {
  await assert.rejects(exposeConsole({ lab: lab!, run: dir, port: web.port, log }), /127\.0\.0\.1:\d+ is already in use/);
  assert.ok(existsSync(web.socket), 'the refused console did not remove the live socket');
  assert.equal((await fetch(`${web.url}readyz`)).status, 200, 'the first console still works');

  const run2 = join(dir, 'second');
  mkdirSync(run2);
  const second = await exposeConsole({ lab: lab!, run: run2, log });
  assert.equal((await fetch(`${second.url}readyz`)).status, 200);
  second.closeNow();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(alive(second.pid), false);
  assert.equal(existsSync(second.socket), false);
  assert.equal(await listening(second.port), false);
});

test('closing the lab closes the console: no namespace, process, socket or port left', { skip: SKIP, timeout: 30_000 }, async () => {
  const hub = lab!.hub.name;
  const serve = lab!.serve?.pid;
  const { pid, socket, port } = web;
  await lab!.close();
  lab = undefined;
  assert.equal(alive(pid), false, 'the forwarder is gone');
  assert.equal(alive(serve), false, 'serve is gone');
  assert.equal(existsSync(socket), false, 'the socket is removed');
  assert.equal(await listening(port), false, 'nothing listens on the console port');
  assert.doesNotMatch(netnsList(), new RegExp(`^${hub}\\b`, 'm'), 'the lab namespace is deleted');
});
