// Enlistment against the real `slipway serve --unknown enlist` (issue 18): an unknown MAC's
// iPXE script boots the installer in inventory mode with a one-use token; the facts it
// POSTs are checked strictly (hostile JSON, wrong or used token, oversize body: a clear
// 4xx and nothing stored); good facts are listed by `slipway machines --discovered`,
// survive a restart of serve, and `slipway adopt` takes the install disk and BMC from
// them. The installer's side (the facts of a real QEMU machine, its BMC over KCS) is
// test/power.vm.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BIN, EXAMPLE_HA } from './helpers/cli.ts';
import { Lab } from './helpers/serve.ts';
import { checkFacts, FACT_LIMITS, MAX_ENLIST_BYTES } from '../src/serve/enlist.ts';

const isRoot = process.getuid?.() === 0;
const MAC = '52:54:00:99:00:01';
const FACTS = {
  bootMac: MAC,
  nics: [
    { name: 'eth0', mac: MAC, driver: 'virtio_net', link: true, speedMbps: null },
    { name: 'eth1', mac: '52:54:00:99:00:02', driver: 'e1000e', link: false, speedMbps: 1000 },
  ],
  disks: [
    { path: '/dev/vda', ids: ['/dev/disk/by-id/virtio-ENL1', '/dev/disk/by-path/pci-0000:00:04.0'], model: 'virtio', serial: 'ENL1', size: 4294967296, rotational: true, removable: false },
    { path: '/dev/sr0', ids: [], model: 'QEMU DVD-ROM', serial: '', size: 1024, rotational: true, removable: true },
  ],
  cpu: { model: 'QEMU Virtual CPU version 2.5+', count: 2 },
  memoryBytes: 1073741824,
  dmi: { vendor: 'Slipway', product: 'enlist-test', serial: 'SN-0001' },
  bmc: { address: '10.20.30.201', mac: '52:54:00:aa:bb:01' },
};
const clone = () => JSON.parse(JSON.stringify(FACTS)) as typeof FACTS & Record<string, unknown>;

test('checkFacts: the facts shape, and what it refuses (naming the field)', () => {
  const ok = checkFacts(FACTS);
  assert.ok('facts' in ok);
  assert.deepEqual(ok.facts, FACTS);
  const refused = (mutate: (f: ReturnType<typeof clone>) => void, why: RegExp) => {
    const f = clone();
    mutate(f);
    const v = f;
    const r = checkFacts(v);
    assert.ok('error' in r, `accepted: ${JSON.stringify(v).slice(0, 200)}`);
    assert.match(r.error, why);
  };
  for (const v of [null, [FACTS], 'facts', 7]) assert.deepEqual(checkFacts(v), { error: 'facts must be an object' });
  refused((f) => void (f.extra = 1), /unknown field "extra"/);
  refused((f) => void delete (f as Record<string, unknown>).disks, /facts\.disks is missing/);
  refused((f) => void (f.nics[0]!.mac = 'zz:54:00:99:00:01'), /facts\.nics\[0\]\.mac is not a MAC/);
  refused((f) => void (f.nics[1]!.name = 'eth1; rm -rf /'), /facts\.nics\[1\]\.name is not of the form/);
  refused((f) => void (f.nics = Array.from({ length: FACT_LIMITS.nics + 1 }, () => FACTS.nics[0]!)), /facts\.nics has more than 64 items/);
  refused((f) => void (f.disks[0]!.size = -1), /facts\.disks\[0\]\.size must be a whole number/);
  refused((f) => void (f.disks[0]!.size = 1.5), /facts\.disks\[0\]\.size must be a whole number/);
  refused((f) => void (f.disks[0]!.size = '4294967296' as unknown as number), /facts\.disks\[0\]\.size must be a whole number/);
  refused((f) => void (f.disks[0]!.ids = ['/dev/disk/by-id/../../etc/passwd x']), /facts\.disks\[0\]\.ids\[0\] is not of the form/);
  refused((f) => void (f.disks[0]!.path = '/etc/passwd'), /facts\.disks\[0\]\.path is not of the form/);
  refused((f) => void (f.disks[0]!.model = 'x'.repeat(257)), /facts\.disks\[0\]\.model is longer than 256/);
  refused((f) => void (f.dmi.serial = 'a\u001b[2Jb'), /facts\.dmi\.serial has a control character/);
  refused((f) => void (f.disks[0]!.rotational = 'yes' as unknown as boolean), /rotational must be true or false/);
  refused((f) => void (f.cpu.count = 0), /facts\.cpu\.count must be a whole number from 1/);
  refused((f) => void (f.bmc.address = '10.20.30.300'), /facts\.bmc\.address is not an IPv4 address/);
  refused((f) => void (f.bootMac = '52:54:00:99:00:09'), /facts\.bootMac is none of facts\.nics/);
  refused((f) => void ((f.dmi as Record<string, unknown>).vendor = { a: { b: { c: 1 } } }), /facts\.dmi\.vendor must be a string/);
  refused((f) => void ((f.cpu as Record<string, unknown>).__proto__x = 1), /unknown field "__proto__x"/);
});

test('serve: --unknown and --enlist-then are checked before anything starts', () => {
  for (const [args, why] of [
    [['--unknown', 'enlistt'], /--unknown must be ignore, local or enlist/],
    [['--unknown', 'enlist', '--enlist-then', 'reboot'], /--enlist-then must be poweroff or wait/],
    [['--enlist-then', 'wait'], /--enlist-then needs --unknown enlist/],
  ] as const) {
    const r = spawnSync(process.execPath, [BIN, 'serve', '-f', EXAMPLE_HA, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, why);
  }
});

test('serve --unknown enlist: an unknown MAC gets the installer with a one-use token; its facts are checked, stored, listed, kept over a restart and adopted', { skip: !isRoot && 'needs root (network namespaces)', timeout: 120_000 }, async () => {
  const lab = Lab.create(readFileSync(EXAMPLE_HA, 'utf8'));
  let browser: Browser | undefined;
  try {
    await lab.start(['--unknown', 'enlist']);
    const base = 'http://10.20.30.2:8080';
    const curl = (...args: string[]) => lab.hub.exec('curl', ['-sS', '-w', '\n%{http_code}', ...args], { timeoutMs: 20_000 });
    const status = (r: { stdout: string }) => Number(r.stdout.trim().split('\n').pop());
    const cli = (...args: string[]) => lab.hub.exec(process.execPath, [BIN, ...args], { timeoutMs: 60_000 });

    // the boot script: the OS image's kernel + installer, inventory mode, a token for this MAC
    const script = await curl(`${base}/ipxe/mac/52-54-00-99-00-01.ipxe`);
    assert.equal(status(script), 200, script.out);
    assert.match(script.stdout, /^kernel http:\/\/10\.20\.30\.2:8080\/assets\/os\/vmlinuz initrd=initrd\.img slipway\.enlist=http:\/\/10\.20\.30\.2:8080\/api\/v1\/enlist slipway\.enlist\.token=[A-Za-z0-9_-]{43} console=tty0 console=ttyS0,115200n8 \|\| goto failed$/m);
    assert.match(script.stdout, /^initrd http:\/\/10\.20\.30\.2:8080\/assets\/os\/initrd\.img \|\| goto failed$/m);
    const token = /slipway\.enlist\.token=(\S+)/.exec(script.stdout)![1]!;
    // a known machine still gets its own chain, not enlistment
    assert.match((await curl(`${base}/ipxe/mac/52-54-00-20-30-11.ipxe`)).stdout, /chain .*\/ipxe\/cp1\.ipxe/);

    const post = (body: string, tok: string | null = token) => {
      const f = join(lab.dir, 'body.json');
      writeFileSync(f, body);
      return curl('-X', 'POST', '-H', 'Content-Type: application/json', ...(tok === null ? [] : ['-H', `Authorization: Bearer ${tok}`]), '--data-binary', `@${f}`, `${base}/api/v1/enlist`);
    };
    const good = JSON.stringify({ facts: FACTS });
    const refusals: [string, string | null, number, RegExp][] = [
      ['no token', null, 401, /enlistment token/],
      ['a wrong token', 'A'.repeat(43), 401, /enlistment token/],
      ['an operator token', lab.apiToken(), 401, /enlistment token/],
      ['an oversize body', token, 413, /larger than 65536 bytes/],
      ['not JSON', token, 400, /not JSON/],
      ['an extra top-level field', token, 400, /unknown field \\"state\\"/],
      ['a hostile facts field', token, 400, /facts\.disks\[0\]\.ids\[0\] is not of the form/],
      ['a deep nest', token, 400, /facts\.dmi\.vendor must be a string/],
      ["facts without the token's MAC", token, 403, /issued to 52:54:00:99:00:01/],
    ];
    const bodies: Record<string, string> = {
      'no token': good, 'a wrong token': good, 'an operator token': good,
      'an oversize body': JSON.stringify({ facts: { ...FACTS, pad: 'x'.repeat(MAX_ENLIST_BYTES) } }),
      'not JSON': '{"facts": ',
      'an extra top-level field': JSON.stringify({ facts: FACTS, state: 'ready' }),
      'a hostile facts field': JSON.stringify({ facts: { ...FACTS, disks: [{ ...FACTS.disks[0], ids: ['/dev/disk/by-id/x;reboot'] }] } }),
      'a deep nest': JSON.stringify({ facts: { ...FACTS, dmi: { ...FACTS.dmi, vendor: 'NEST' } } }).replace('"NEST"', '['.repeat(5000) + ']'.repeat(5000)),
      "facts without the token's MAC": JSON.stringify({ facts: { ...FACTS, bootMac: '52:54:00:99:00:02', nics: [FACTS.nics[1]] } }),
    };
    for (const [what, tok, code, why] of refusals) {
      const r = await post(bodies[what]!, tok);
      assert.equal(status(r), code, `${what}: ${r.out}`);
      assert.match(r.stdout, why, what);
    }
    const listed = async () => {
      const r = await cli('machines', '-f', lab.file, '--state', lab.state, '--discovered', '-o', 'json');
      assert.equal(r.code, 0, r.out);
      return (JSON.parse(r.stdout) as { discovered: { mac: string; facts?: { source: string; facts: typeof FACTS } }[] }).discovered.find((d) => d.mac === MAC);
    };
    assert.equal((await listed())?.facts, undefined, 'nothing stored by a refused enlistment');

    // the real thing, once
    let r = await post(good);
    assert.equal(status(r), 200, r.out);
    assert.match(r.stdout, /"mac": "52:54:00:99:00:01"/);
    r = await post(good);
    assert.equal(status(r), 401, `a used token: ${r.out}`);
    let d = await listed();
    assert.equal(d?.facts?.source, 'enlist');
    assert.deepEqual(d?.facts?.facts, FACTS);
    // the token is kept only as its hash
    assert.ok(!readFileSync(join(lab.state, 'serve.db')).includes(token), 'the token itself is not in serve.db');
    assert.ok(!readFileSync(join(lab.state, 'serve.db-wal')).includes(token), 'the token itself is not in serve.db-wal');
    const table = await cli('machines', '-f', lab.file, '--state', lab.state, '--discovered');
    assert.match(table.stdout, /^52:54:00:99:00:01\s+http\s+\S+\s+\S+\s+\S+\s+Slipway enlist-test #SN-0001, 2 CPUs, 1\.0 GiB\s+\/dev\/vda 4\.0 GiB ENL1; \/dev\/sr0 0\.0 GiB\s+10\.20\.30\.201$/m, table.out);

    // kept over a restart of serve (now with --enlist-then wait: the installer is told to wait)
    await lab.stop();
    await lab.start(['--unknown', 'enlist', '--enlist-then', 'wait']);
    d = await listed();
    assert.deepEqual(d?.facts?.facts, FACTS, 'the facts survive a restart');
    assert.match((await curl(`${base}/ipxe/mac/52-54-00-99-00-03.ipxe`)).stdout, /slipway\.enlist\.token=\S+ slipway\.enlist\.then=wait console=tty0/);

    // adopt takes the install disk (a stable by-id name) and the BMC from them
    writeFileSync(join(lab.dir, 'e1.pw'), 'secret\n', { mode: 0o600 });
    r = await cli('adopt', '-f', lab.file, '--state', lab.state, MAC, '--name', 'e1', '--roles', 'worker', '--bmc-username', 'admin', '--bmc-password-file', 'e1.pw');
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /adopted 52:54:00:99:00:01 as e1 \(worker, 10\.20\.30\.\d+\/24, disk \/dev\/disk\/by-id\/virtio-ENL1, bmc 10\.20\.30\.201\)/);
    const text = readFileSync(lab.file, 'utf8');
    assert.match(text, /^ {4}- name: e1\n {6}mac: "52:54:00:99:00:01"\n {6}ip: 10\.20\.30\.\d+\/24\n {6}roles: \[worker\]\n {6}disk: "\/dev\/disk\/by-id\/virtio-ENL1"\n {6}bmc: \{address: "10\.20\.30\.201", username: "admin", passwordFile: "e1\.pw", protocol: ipmi\}\n/m, text);
    const v = await cli('validate', '-f', lab.file);
    assert.equal(v.code, 0, v.out);
    // serve takes e1 on SIGHUP; status shows its facts
    lab.serve!.kill('SIGHUP');
    let st = '';
    for (let i = 0; i < 50 && !/^e1 /m.test(st); i++) {
      st = (await cli('status', '-f', lab.file, '--state', lab.state)).stdout;
      if (!/^e1 /m.test(st)) await new Promise((res) => setTimeout(res, 300));
    }
    assert.match(st, /^hardware \(as the machines reported it\):\n(?:.*\n)*e1 {2}Slipway enlist-test #SN-0001, 2 CPUs, 1\.0 GiB; disks \/dev\/vda 4\.0 GiB ENL1; \/dev\/sr0 0\.0 GiB; bmc 10\.20\.30\.201 \(enlist /m, st);

    // an installed machine's report carries the same facts: stored by its MAC, shown by status
    const tokens = (JSON.parse(readFileSync(join(lab.state, 'tokens.json'), 'utf8')) as { machineTokens: Record<string, string> }).machineTokens;
    const report = (token: string, seq: number, facts: unknown) =>
      curl('-X', 'POST', '-H', `Authorization: Bearer ${token}`, '--data', JSON.stringify({ state: 'installed', seq, reason: 'done', detail: { step: 'reboot', facts } }), `${base}/api/v1/report`);
    const cp1Facts = { ...FACTS, bootMac: '52:54:00:20:30:11', nics: [{ ...FACTS.nics[0], mac: '52:54:00:20:30:11' }], bmc: undefined, dmi: { vendor: 'Slipway', product: 'cp1-box', serial: 'CP1' } };
    r = await report(tokens.cp1!, 1, cp1Facts);
    assert.equal(status(r), 200, r.out);
    // facts it refuses are dropped, not the report (cp2 is installed all the same)
    r = await report(tokens.cp2!, 1, { ...cp1Facts, disks: 'all of them' });
    assert.equal(status(r), 200, r.out);
    const view = async (name: string) => JSON.parse((await curl('-H', `Authorization: Bearer ${lab.apiToken()}`, `${base}/api/v1/machines/${name}`)).stdout.replace(/\n\d+$/, '')) as { state: string; facts?: { source: string; machine: string; facts: unknown }; events: { detail?: { facts?: string } }[] };
    const cp1 = await view('cp1');
    assert.equal(cp1.state, 'installed');
    assert.deepEqual(cp1.facts && { source: cp1.facts.source, machine: cp1.facts.machine, facts: cp1.facts.facts }, { source: 'installed', machine: 'cp1', facts: JSON.parse(JSON.stringify(cp1Facts)) });
    assert.equal(cp1.events.at(-1)?.detail?.facts, 'stored');
    const cp2 = await view('cp2');
    assert.equal(cp2.state, 'installed');
    assert.equal(cp2.facts, undefined);
    assert.equal(cp2.events.at(-1)?.detail?.facts, 'refused: facts.disks must be a list');
    st = (await cli('status', '-f', lab.file, '--state', lab.state)).stdout;
    assert.match(st, /^cp1 {2}Slipway cp1-box #CP1, 2 CPUs, 1\.0 GiB; disks \/dev\/vda 4\.0 GiB ENL1; \/dev\/sr0 0\.0 GiB \(installed /m, st);

    // a second unknown machine enlists twice (two boots, two tokens): both reports are kept,
    // newest first, each with its time and source (machines --history and /api/v1/facts)
    const MAC2 = '52:54:00:99:00:11';
    const facts2 = (serial: string) => ({ ...FACTS, bootMac: MAC2, nics: [{ ...FACTS.nics[0], mac: MAC2 }], disks: [{ ...FACTS.disks[0], ids: ['/dev/disk/by-id/virtio-ENL2'], serial: 'ENL2' }], dmi: { ...FACTS.dmi, serial }, bmc: { address: '10.20.30.202', mac: '52:54:00:aa:bb:02' } });
    for (const serial of ['SN-A', 'SN-B']) {
      const tok = /slipway\.enlist\.token=(\S+)/.exec((await curl(`${base}/ipxe/mac/52-54-00-99-00-11.ipxe`)).stdout)![1]!;
      r = await post(JSON.stringify({ facts: facts2(serial) }), tok);
      assert.equal(status(r), 200, r.out);
    }
    const hist = await cli('machines', '-f', lab.file, '--state', lab.state, '--discovered', '--history', '-o', 'json');
    assert.equal(hist.code, 0, hist.out);
    const d2 = (JSON.parse(hist.stdout) as { discovered: { mac: string; facts?: { facts: { dmi: { serial: string } } }; factsHistory?: { source: string; at: string; facts: { dmi: { serial: string } } }[] }[] }).discovered.find((x) => x.mac === MAC2)!;
    assert.equal(d2.facts?.facts.dmi.serial, 'SN-B', 'the newest report is the one shown');
    assert.deepEqual(d2.factsHistory?.map((f) => [f.source, f.facts.dmi.serial]), [['enlist', 'SN-B'], ['enlist', 'SN-A']]);
    assert.ok(d2.factsHistory![0]!.at >= d2.factsHistory![1]!.at);
    const histTable = await cli('machines', '-f', lab.file, '--state', lab.state, '--discovered', '--history');
    assert.match(histTable.stdout, /^facts history \(newest first, the last 20 per MAC\):\n(?:.*\n)*52:54:00:99:00:11 {2}\S+Z {2}enlist {5}Slipway enlist-test #SN-B, 2 CPUs, 1\.0 GiB; disks \/dev\/vda 4\.0 GiB ENL2; bmc 10\.20\.30\.202\n52:54:00:99:00:11 {2}\S+Z {2}enlist {5}Slipway enlist-test #SN-A/m, histTable.out);

    // POST /api/v1/adopt (the console's): the operator's only; a refusal names the field and writes nothing
    const unchanged = readFileSync(lab.file);
    const adoptApi = (body: unknown, auth = true) => curl('-X', 'POST', ...(auth ? ['-H', `Authorization: Bearer ${lab.apiToken()}`] : []), '-H', 'Content-Type: application/json', '--data', JSON.stringify(body), `${base}/api/v1/adopt`);
    for (const [body, code, re, auth] of [
      [{ mac: MAC2, name: 'e2', roles: 'worker' }, 401, /missing or wrong bearer token/, false],
      [{ mac: MAC2, name: 'e2', roles: 'worker', disk: '/dev/sda' }, 400, /"error": "unknown field \\"disk\\"",\n\s+"field": "file"/, true],
      [{ mac: MAC2, name: 'e2', roles: 'worker', ip: '10.99.0.5/24' }, 400, /machine address 10\.99\.0\.5 is outside the DHCP subnet[^]*"field": "ip"/, true],
      [{ mac: MAC2, name: 'e2', roles: 'workr' }, 400, /spec\.machines\[6\]\.roles\[0\]: unknown role \\"workr\\"[^]*"field": "roles"/, true],
      [{ mac: MAC2, name: 'e2\n      bmc: {}', roles: 'worker' }, 400, /spec\.machines\[6\]\.name: [^]*"field": "name"/, true],
      [{ mac: 'nope', name: 'e2', roles: 'worker' }, 400, /"field": "mac"/, true],
      [{ mac: MAC2, name: 'e2', roles: 'worker', bmcUsername: 'admin', bmcPasswordEnv: 'X', bmcPasswordFile: 'y' }, 400, /give one of bmcPasswordFile and bmcPasswordEnv[^]*"field": "bmc"/, true],
    ] as const) {
      const a = await adoptApi(body, auth);
      assert.equal(status(a), code, `${JSON.stringify(body)}: ${a.out}`);
      assert.match(a.stdout, re, a.out);
      assert.ok(readFileSync(lab.file).equals(unchanged), `${JSON.stringify(body)} left the file as it was`);
    }

    // the console shows them: an installed machine's in its view (browser in the lab)
    if (!existsSync('/usr/bin/chromium')) {
      assert.ok(!process.env.CI, 'chromium (Debian chromium) is needed for the console part');
      return;
    }
    const wrapper = join(lab.dir, 'chromium-in-lab');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${lab.hub.name} /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({ executablePath: wrapper, headless: true, timeout: 60_000, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    await page.fill('#token', lab.apiToken());
    await page.click('button[type=submit]');
    await page.click('#machines tbody tr[data-name="cp1"]');
    await page.waitForFunction(() => /Hardware \(installed/.test(document.querySelector('#facts')?.textContent ?? ''));
    const shown = (await page.textContent('#facts'))!;
    assert.match(shown, /Slipway cp1-box #CP1, 2 × QEMU Virtual CPU version 2\.5\+, 1\.0 GiB/);
    assert.match(shown, /disks: \/dev\/vda 4\.0 GiB ENL1 \(\/dev\/disk\/by-id\/virtio-ENL1\)/);
    assert.match(shown, /NICs: eth0 52:54:00:20:30:11 virtio_net link/);
    await page.click('#facts button.history');
    await page.waitForFunction(() => /1 report /.test(document.querySelector('#facts .facts-history')?.textContent ?? ''));
    assert.match((await page.textContent('#facts .facts-history'))!, /installed \(cp1\): Slipway cp1-box #CP1/);
    await page.click('#machines tbody tr[data-name="w1"]');
    await page.waitForFunction(() => document.querySelector('#detail-title')?.textContent?.startsWith('w1'));
    assert.equal(await page.textContent('#facts'), '', 'a machine without facts shows none');

    // adopt from the console: the discovered machine's history, then its adoption by the
    // API's adopt (slipway adopt's code); refusals name the field and leave the file as it was
    const row = `#discovered .discovered[data-mac="${MAC2}"]`;
    assert.match((await page.textContent(row))!, /52:54:00:99:00:11 \(enlisted .*\): Slipway enlist-test #SN-B/);
    assert.equal(await page.$(`#discovered .discovered[data-mac="${MAC}"]`), null, 'a MAC the file names now (e1) is not listed as unknown');
    await page.click(`${row} button.history`);
    await page.waitForFunction((sel) => /2 reports/.test(document.querySelector(`${sel} .facts-history`)?.textContent ?? ''), row);
    assert.match((await page.textContent(`${row} .facts-history`))!, /enlist: Slipway enlist-test #SN-B[^]*enlist: Slipway enlist-test #SN-A/);
    await page.click(`${row} button.adopt`);
    const before = readFileSync(lab.file);
    const submit = async (name: string, expect: RegExp) => {
      await page.fill(`${row} input[name=name]`, name);
      await page.click(`${row} form button[type=submit]`);
      await page.waitForFunction(([sel, re]) => new RegExp(re).test(document.querySelector(`${sel} .adopt-error`)?.textContent ?? ''), [row, expect.source] as const);
      return (await page.textContent(`${row} .adopt-error`))!;
    };
    let shownError = await submit('Bad_Name', /^name: /);
    assert.match(shownError, /^name: the file would not be valid with Bad_Name:\n.*cluster\.yaml:\d+:\d+: spec\.machines\[6\]\.name: /, shownError);
    assert.equal(await page.getAttribute(`${row} input[name=name]`, 'aria-invalid'), 'true');
    assert.ok(readFileSync(lab.file).equals(before), 'a bad name leaves the file byte for byte as it was');
    shownError = await submit('cp1', /^name: the name cp1 is already used/);
    assert.ok(readFileSync(lab.file).equals(before), 'a name in use leaves the file byte for byte as it was');
    // a MAC adopted already (e1's), through the same API the form uses
    const dup = await page.evaluate(async (mac) => {
      const res = await fetch('/api/v1/adopt', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ mac, name: 'e9', roles: 'worker' }) });
      return { status: res.status, body: await res.json() };
    }, MAC);
    assert.deepEqual(dup, { status: 409, body: { error: '52:54:00:99:00:01 is already adopted: it is e1', field: 'mac' } });
    assert.ok(readFileSync(lab.file).equals(before), 'a MAC adopted twice leaves the file byte for byte as it was');
    await page.fill(`${row} input[name=name]`, 'e2');
    await page.click(`${row} form button[type=submit]`);
    await page.waitForFunction(() => /^Adopted /.test(document.querySelector('#adopt-result')?.textContent ?? ''));
    assert.match((await page.textContent('#adopt-result'))!, /^Adopted 52:54:00:99:00:11 as e2 \(worker, 10\.20\.30\.\d+\/24, disk \/dev\/disk\/by-id\/virtio-ENL2\); serve re-read the file/);
    // the file: every byte as it was, plus e2's entry (its BMC from the facts as a comment) after e1's
    const after = readFileSync(lab.file, 'utf8');
    const entry = /^ {4}- name: e2\n {6}mac: "52:54:00:99:00:11"\n {6}ip: 10\.20\.30\.\d+\/24\n {6}roles: \[worker\]\n {6}disk: "\/dev\/disk\/by-id\/virtio-ENL2"\n {6}# its BMC \(enlisted\): 10\.20\.30\.202 \(52:54:00:aa:bb:02\)[^\n]*\n/m.exec(after);
    assert.ok(entry, after);
    assert.equal(after.replace(entry[0], ''), before.toString('utf8'), 'only the new entry was added');
    const valid = await cli('validate', '-f', lab.file);
    assert.equal(valid.code, 0, valid.out);
    // serve re-read the file: e2 is a machine of the cluster now, in the console's table too
    await page.waitForSelector('#machines tbody tr[data-name="e2"]');
    assert.equal(await page.$(row), null, 'e2 is no longer listed as unknown');
  } finally {
    await browser?.close();
    await lab.close();
  }
});
