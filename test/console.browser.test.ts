// The web console in a real browser (Debian chromium driven by playwright-core), inside
// the lab namespace next to `slipway serve`. Machines are driven through their states by
// real HTTP requests and their own report script, never by writing the store; the page
// must update live, show timelines with failure reasons and logs, mask secrets, and show
// nothing without the operator's token. Screenshots land in test-results/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Lab } from './helpers/serve.ts';
import { slipway, ROOT } from './helpers/cli.ts';
import type { Netns } from './helpers/netns.ts';

const BASE = 'http://10.20.30.2:8080';
const SHOTS = join(ROOT, 'test-results');
let lab: Lab;
let browser: Browser;
let page: Page;
let rendered: string;

const curl = (ns: Netns, args: string[]) => ns.exec('curl', ['-sS', '-m', '10', ...args], { timeoutMs: 15_000 });

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  lab = Lab.create();
  await lab.start();
  rendered = join(lab.dir, 'out');
  assert.equal(slipway(['render', '-f', lab.file, '-o', rendered, '--state', lab.state]).code, 0);
  // Chromium runs inside the lab namespace, where the provisioner's address lives.
  const wrapper = join(lab.dir, 'chromium-in-lab');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${lab.hub.name} /usr/bin/chromium "$@"\n`);
  chmodSync(wrapper, 0o755);
  browser = await chromium.launch({
    executablePath: wrapper,
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
});
after(async () => {
  await browser?.close();
  await lab?.close();
});

const report = (ns: Netns, machine: string, ...args: string[]) =>
  ns.exec('unshare', ['-m', 'sh', '-c', `mount --make-rprivate / && mount --bind ${join(rendered, 'machines', machine, 'root/etc')} /etc && mount -t tmpfs tmpfs /var/lib && sh /etc/slipway/report.sh "$@"`, 'report', ...args], { timeoutMs: 60_000 });

test('without the token the console shows a login and the API answers 401', { timeout: 60_000 }, async () => {
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#login-form', { state: 'visible' });
  assert.equal(await page.isVisible('#machines'), false);
  const status = await page.evaluate(async () => (await fetch('/api/v1/machines')).status);
  assert.equal(status, 401);
  await page.fill('#token', 'not-the-token');
  await page.click('button[type=submit]');
  await page.waitForSelector('#login-error', { state: 'visible' });
  await page.screenshot({ path: join(SHOTS, 'console-login.png') });
});

test('after login the table lists every machine and follows their states live', { timeout: 120_000 }, async () => {
  await page.fill('#token', lab.apiToken());
  await page.click('button[type=submit]');
  await page.waitForSelector('#machines tbody tr');
  assert.equal(await page.locator('#machines tbody tr').count(), 5);
  await page.waitForSelector('#conn.on');
  const stateOf = (name: string) => page.locator(`#machines tbody tr[data-name="${name}"] .state`);
  assert.equal(await stateOf('cp1').textContent(), 'unknown');

  // cp1 boots for real: DHCP, iPXE script, its Ignition (from its own IP and MAC), then reports.
  const cp1 = lab.host('52:54:00:20:30:11', '10.20.30.11');
  const dhcp = await cp1.exec('udhcpc', ['-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', '/bin/true', '-V', 'PXEClient:Arch:00000'], { timeoutMs: 20_000 });
  assert.equal(dhcp.code, 0, dhcp.out);
  await page.waitForFunction(() => document.querySelector('tr[data-name="cp1"] .state')?.textContent === 'dhcp', undefined, { timeout: 10_000 });
  await curl(cp1, [`${BASE}/ipxe/mac/52-54-00-20-30-11.ipxe`]);
  await page.waitForFunction(() => document.querySelector('tr[data-name="cp1"] .state')?.textContent === 'booting', undefined, { timeout: 10_000 });
  assert.equal((await curl(cp1, ['-f', '-o', '/dev/null', '-w', '%{http_code}', `${BASE}/machines/cp1/ignition.json`])).stdout, '200');
  await page.waitForFunction(() => document.querySelector('tr[data-name="cp1"] .state')?.textContent === 'config-fetched', undefined, { timeout: 10_000 });
  assert.equal((await report(cp1, 'cp1', 'installed')).code, 0);
  await page.waitForFunction(() => document.querySelector('tr[data-name="cp1"] .state')?.textContent === 'installed', undefined, { timeout: 10_000 });

  // w1 fails with a reason and the failing unit's log lines.
  const w1 = lab.host('52:54:00:20:30:21', '10.20.30.21');
  const token = readFileSync(join(rendered, 'machines/w1/root/etc/slipway/report-token'), 'utf8').trim();
  const body = JSON.stringify({ state: 'failed', seq: 1, reason: 'unit kubelet.service failed', detail: { unit: 'kubelet.service', logs: 'E1125 kubelet: failed to run Kubelet: running with swap on is not supported' } });
  const r = await curl(w1, ['-f', '-X', 'POST', '-H', `Authorization: Bearer ${token}`, '-H', 'Content-Type: application/json', '--data-binary', body, `${BASE}/api/v1/report`]);
  assert.equal(r.code, 0, r.out);
  await page.waitForFunction(() => document.querySelector('tr[data-name="w1"] .state')?.textContent === 'failed', undefined, { timeout: 10_000 });
  assert.match((await page.textContent('#summary'))!, /failed/);
  await page.screenshot({ path: join(SHOTS, 'console-table.png'), fullPage: true });
});

test('a machine\'s timeline shows reasons and logs; its artifacts are shown with secrets masked', { timeout: 60_000 }, async () => {
  await page.click('tr[data-name="w1"]');
  await page.waitForSelector('#timeline li');
  const timeline = (await page.textContent('#timeline'))!;
  assert.match(timeline, /unit kubelet\.service failed/);
  assert.match(timeline, /running with swap on is not supported/);
  await page.screenshot({ path: join(SHOTS, 'console-timeline.png'), fullPage: true });

  await page.click('tr[data-name="cp1"]');
  await page.waitForFunction(() => document.querySelector('#detail-title')?.textContent?.startsWith('cp1'));
  const cpTimeline = (await page.textContent('#timeline'))!;
  assert.match(cpTimeline, /unknown → dhcp \(dhcp\)/);
  assert.match(cpTimeline, /config-fetched → installed \(machine\)/);
  const key = page.locator('#artifacts li', { hasText: '/etc/kubernetes/pki/ca.key' });
  assert.match((await key.getAttribute('class'))!, /secret/);
  await key.click();
  const shown = (await page.textContent('#artifact'))!;
  assert.doesNotMatch(shown, /PRIVATE KEY/);
  assert.match(shown, /masked/);
  await page.locator('#artifacts li', { hasText: '/etc/systemd/system/kubelet.service' }).first().click();
  assert.match((await page.textContent('#artifact'))!, /ExecStart=\/opt\/bin\/kubelet/);
  const html = await page.content();
  assert.doesNotMatch(html, /BEGIN (EC |RSA )?PRIVATE KEY/, 'no private key anywhere in the page');
  await page.screenshot({ path: join(SHOTS, 'console-artifacts.png'), fullPage: true });
});
