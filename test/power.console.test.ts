// The web console's power buttons in a real browser (Debian chromium driven by
// playwright-core, inside the lab namespace next to `slipway serve`), against an
// ipmi_sim BMC on the lab bridge: On, Status and Off do what ipmitool then sees; a
// machine without a bmc gets the API's reason, not a silent failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { Lab } from './helpers/serve.ts';
import { EXAMPLE_HA } from './helpers/cli.ts';
import { clusterWithBmcs, haveIpmiSim, haveIpmitool, SimBmc } from './helpers/ipmi.ts';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root (network namespaces)' : !haveIpmiSim ? 'missing ipmi_sim (Debian openipmi)' : !haveIpmitool ? 'missing ipmitool (Debian ipmitool)' : !existsSync('/usr/bin/chromium') ? 'missing chromium (Debian chromium)' : false;

test('console: power a machine through its BMC with the buttons; ipmitool agrees; a machine without bmc says why', { skip, timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-power-console-'));
  const { yaml, passwords: { w1: pw } } = clusterWithBmcs(readFileSync(EXAMPLE_HA, 'utf8'), dir, { w1: '10.20.30.202' });
  const lab = Lab.create(yaml);
  let bmc: SimBmc | undefined;
  let browser: Browser | undefined;
  try {
    await lab.start();
    lab.hub.addAddress('br0', '10.20.30.202/24');
    bmc = new SimBmc(lab.hub, { name: 'bmc-w1', listen: [['10.20.30.202', 623]], username: 'admin', password: pw, machine: 'exec sleep 600', dir });
    await bmc.start();
    const wrapper = join(dir, 'chromium-in-lab');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${lab.hub.name} /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({ executablePath: wrapper, headless: true, timeout: 60_000, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('dialog', (d) => void d.accept());
    await page.goto('http://10.20.30.2:8080/');
    await page.fill('#token', lab.apiToken());
    await page.click('button[type=submit]');
    await page.click('#machines tbody tr[data-name="w1"]');
    await page.waitForSelector('#detail', { state: 'visible' });
    const result = async (action: string, want: RegExp) => {
      await page.click(`[data-power="${action}"]`);
      await page.waitForFunction((re) => new RegExp(re).test(document.querySelector('#power-result')?.textContent ?? ''), want.source, { timeout: 60_000 });
      return (await page.textContent('#power-result'))!;
    };
    assert.equal(await result('status', /^w1: (on|off)$/), 'w1: off');
    assert.equal(await result('on', /^w1: powered on$/), 'w1: powered on');
    assert.equal(await bmc.peerPower(), 'on');
    assert.ok(bmc.machinePid());
    assert.equal(await result('status', /^w1: on$/), 'w1: on');
    assert.equal(await result('off', /^w1: powered off$/), 'w1: powered off');
    assert.equal(await bmc.peerPower(), 'off');
    assert.equal(bmc.machinePid(), undefined);
    // a machine without a bmc: the API's reason, shown
    await page.click('#machines tbody tr[data-name="cp1"]');
    await page.waitForFunction(() => document.querySelector('#detail-title')?.textContent?.startsWith('cp1'));
    assert.match(await result('on', /^cp1: /), /cp1: .*cp1 has no bmc in the cluster file/);
    await page.screenshot({ path: join(dir, 'power.png') });
    assert.ok(!lab.log.includes(pw), 'the password is in serve\'s log');
  } finally {
    await browser?.close();
    await bmc?.close();
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
