// `slipway power` against a real BMC implementation: OpenIPMI's ipmi_sim on addresses
// inside this test's network namespace, whose chassis script really starts and stops a
// process standing for the machine. Every result is checked against ipmitool's own
// `chassis power status` and against the process itself. Bad BMCs (a wrong password, a
// cipher suite it lacks, one that never answers, nothing listening) each give a named
// error for their machine while the good one in the same run still answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Netns } from './helpers/netns.ts';
import { BIN, EXAMPLE_HA, ROOT } from './helpers/cli.ts';
import { pathToFileURL } from 'node:url';
import { haveIpmiSim, haveIpmitool, SimBmc } from './helpers/ipmi.ts';
import { ipmitoolArgs } from '../src/power/ipmi.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import { formatProblem } from '../src/spec/problems.ts';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root (network namespaces)' : !haveIpmiSim ? 'missing ipmi_sim (Debian openipmi)' : !haveIpmitool ? 'missing ipmitool (Debian ipmitool)' : false;

/** examples/lab.yaml with a bmc block added to the named machines. */
function withBmcs(bmcs: Record<string, string>): string {
  const text = readFileSync(EXAMPLE_HA, 'utf8');
  return text.replace(/^(\s+)- name: (\S+)\n/gm, (line, indent: string, name: string) => (bmcs[name] ? `${line}${indent}  bmc: ${bmcs[name]}\n` : line));
}

test('validate: a bmc password file must exist, not be readable by everyone; exactly one of file and env; each problem at FILE:LINE:COL', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-pw-'));
  try {
    writeFileSync(join(dir, 'open.pw'), 'secret\n', { mode: 0o644 });
    writeFileSync(join(dir, 'ok.pw'), 'secret\n', { mode: 0o600 });
    const file = join(dir, 'cluster.yaml');
    const text = withBmcs({
      cp1: '{address: 10.1.0.1, username: admin, passwordFile: missing.pw, protocol: ipmi}',
      cp2: '{address: 10.1.0.2, username: admin, passwordFile: open.pw, protocol: ipmi}',
      cp3: '{address: 10.1.0.3, username: admin, protocol: ipmi}',
      w1: '{address: 10.1.0.3, username: admin, passwordFile: ok.pw, protocol: ipmi, cipher: 8}',
      w2: '{address: 10.1.0.5, username: admin, passwordFile: ok.pw, passwordEnv: X, protocol: ipmi}',
    });
    writeFileSync(file, text);
    const { spec, problems } = parseClusterFile(text, file);
    assert.equal(spec, undefined);
    const lines = problems.map(formatProblem);
    // the shape first: the cipher suite is refused by the schema, so the file checks wait for a valid shape
    assert.ok(lines.some((l) => /spec\.machines\[3\]\.bmc\.cipher: must be one of: 3, 17/.test(l)), lines.join('\n'));
    const fixed = text.replace(', cipher: 8', '');
    writeFileSync(file, fixed);
    const second = parseClusterFile(fixed, file).problems.map(formatProblem);
    const lineOf = (needle: string) => fixed.split('\n').findIndex((l) => l.includes(needle)) + 1;
    const expect = [
      [`${file}:${lineOf('missing.pw')}:`, /spec\.machines\[0\]\.bmc\.passwordFile: cannot read .*missing\.pw: ENOENT/],
      [`${file}:${lineOf('open.pw')}:`, /spec\.machines\[1\]\.bmc\.passwordFile: .*open\.pw is readable by everyone \(mode 0644\): chmod 600 it/],
      [`${file}:${lineOf('10.1.0.3, username: admin, protocol')}:`, /spec\.machines\[2\]\.bmc: give exactly one of passwordFile and passwordEnv/],
      [`${file}:`, /spec\.machines\[3\]\.bmc\.address: the BMC 10\.1\.0\.3:623 is also spec\.machines\[2\]\.bmc's \(cp3\)/],
      [`${file}:${lineOf('passwordEnv: X')}:`, /spec\.machines\[4\]\.bmc: give exactly one of passwordFile and passwordEnv/],
    ] as const;
    for (const [prefix, re] of expect) assert.ok(second.some((l) => l.startsWith(prefix) && re.test(l)), `expected ${prefix} ${re} in:\n${second.join('\n')}`);
    // the password never appears in a problem
    assert.ok(!second.join('\n').includes('secret'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ipmitool never gets the password on its command line', () => {
  const args = ipmitoolArgs({ machine: 'cp1', address: '10.1.0.1', port: 623, username: 'admin', password: { env: 'PW' }, protocol: 'ipmi', cipher: 17 }, ['chassis', 'power', 'status']);
  assert.ok(args.includes('-E') && !args.includes('-P'), args.join(' '));
  assert.deepEqual(args.slice(args.indexOf('-C'), args.indexOf('-C') + 2), ['-C', '17']);
});

/** The machine process once it is another than `old` (at most ~15 s). */
async function newMachine(bmc: SimBmc, old: number | undefined): Promise<number | undefined> {
  for (let i = 0; i < 75; i++) {
    const pid = bmc.machinePid();
    if (pid && pid !== old) return pid;
    await new Promise((r) => setTimeout(r, 200));
  }
  return undefined;
}

test('slipway power against ipmi_sim: every result agrees with ipmitool and with the machine process; bad BMCs are named errors that stop no other machine', { skip, timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-power-'));
  const ns = Netns.create('slipway-pw');
  const sims: SimBmc[] = [];
  try {
    ns.addDummy('bmc0');
    for (const a of ['10.77.0.10', '10.77.0.11', '10.77.0.12', '10.77.0.13', '10.77.0.14']) ns.addAddress('bmc0', `${a}/24`);
    const pwA = randomBytes(8).toString('hex');
    const pwB = randomBytes(8).toString('hex');
    const A = new SimBmc(ns, { name: 'bmc-a', listen: [['10.77.0.10', 623]], username: 'admin', password: pwA, machine: 'exec sleep 600', dir });
    // B's user is an operator, not an administrator: power and boot options need no more
    // (ipmi_sim grants such a user an administrator session too if asked: this shows that
    // operator sessions do the work, not that a BMC refuses more)
    const B = new SimBmc(ns, { name: 'bmc-b', listen: [['10.77.0.11', 623]], username: 'root', password: pwB, privilege: 'operator', machine: 'exec sleep 600', dir });
    // C: only for the bad file's cipher suite 17, which ipmi_sim does not offer
    const C = new SimBmc(ns, { name: 'bmc-c', listen: [['10.77.0.14', 623]], username: 'admin', password: pwA, machine: 'exec sleep 600', dir });
    sims.push(A, B, C);
    await Promise.all([A.start(), B.start(), C.start()]);
    // a BMC that never answers: a UDP socket that reads and drops every datagram
    const sink = ns.spawn(process.execPath, ['-e', "const s=require('dgram').createSocket('udp4');s.on('message',()=>{});s.bind(623,'10.77.0.12');setTimeout(()=>{},600000)"]);
    writeFileSync(join(dir, 'a.pw'), `${pwA}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'wrong.pw'), 'not-the-password\n', { mode: 0o600 });

    const good = join(dir, 'good.yaml');
    writeFileSync(good, withBmcs({ cp1: '{address: 10.77.0.10, username: admin, passwordFile: a.pw, protocol: ipmi}', cp2: '{address: 10.77.0.11, username: root, passwordEnv: BMC_B_PASSWORD, protocol: ipmi, cipher: 3}' }));
    const env = { ...process.env, BMC_B_PASSWORD: pwB };
    const run = async (file: string, ...args: string[]) => {
      const r = await ns.exec(process.execPath, [BIN, ...args.slice(0, 1), '-f', file, ...args.slice(1)], { env, timeoutMs: 120_000 });
      for (const pw of [pwA, pwB]) assert.ok(!r.out.includes(pw), `the password appears in slipway's output:\n${r.out}`);
      return r;
    };
    const row = (out: string, name: string) => out.split('\n').find((l) => l.startsWith(`${name} `)) ?? '';
    const peer = async () => [await A.peerPower(), await B.peerPower()];

    let r = await run(good, 'power', 'status', '--all');
    assert.equal(r.code, 0, r.out);
    assert.match(row(r.stdout, 'cp1'), /^cp1\s+10\.77\.0\.10:623\s+off\s/);
    assert.match(row(r.stdout, 'cp2'), /^cp2\s+10\.77\.0\.11:623\s+off\s/);
    assert.deepEqual(await peer(), ['off', 'off']);
    assert.equal(A.machinePid(), undefined);

    r = await run(good, 'power', 'on', 'cp1', 'cp2');
    assert.equal(r.code, 0, r.out);
    assert.match(row(r.stdout, 'cp1'), /powered on/);
    assert.deepEqual(await peer(), ['on', 'on']);
    const a1 = A.machinePid();
    const b1 = B.machinePid();
    assert.ok(a1 && b1, `machine processes after power on: ${A.chassisLog()}${B.chassisLog()}`);
    r = await run(good, 'power', 'status', '--all');
    assert.match(row(r.stdout, 'cp1'), /\son\s/);
    assert.match(row(r.stdout, 'cp2'), /\son\s/);

    // cycle: the machine process is a new one (a BMC answers a cycle before it is done:
    // the power comes back after its own delay, so wait for it, bounded); reset likewise
    r = await run(good, 'power', 'cycle', 'cp1');
    assert.equal(r.code, 0, r.out);
    const a2 = await newMachine(A, a1);
    assert.ok(a2, `cycle: machine ${a1} → ${a2}\n${A.chassisLog()}`);
    assert.equal(await A.peerPower(), 'on');
    r = await run(good, 'power', 'reset', 'cp2');
    assert.equal(r.code, 0, r.out);
    const b2 = await newMachine(B, b1);
    assert.ok(b2, `reset: machine ${b1} → ${b2}\n${B.chassisLog()}`);

    r = await run(good, 'power', 'off', '--all');
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(await peer(), ['off', 'off']);
    assert.equal(A.machinePid(), undefined);
    assert.equal(B.machinePid(), undefined);
    // a reset of a machine that is off is refused, named, exit 1
    r = await run(good, 'power', 'reset', 'cp1');
    assert.equal(r.code, 1, r.out);
    assert.match(row(r.stdout, 'cp1'), /error: command failed\s+cp1: is off, a reset does nothing/);
    // cycle of a machine that is off powers it on
    r = await run(good, 'power', 'cycle', 'cp1');
    assert.equal(r.code, 0, r.out);
    assert.equal(await A.peerPower(), 'on');
    assert.ok(A.machinePid(), A.chassisLog());

    // the next boot device, through the driver (provision sets pxe once; test power.provision)
    // (in the namespace, where the BMC is: a Node process there runs the driver)
    const setNextBoot = async (device: string, once: boolean) => {
      const code = `import { driverFor } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/power/drivers.ts')).href)};
await driverFor({ machine: 'cp2', address: '10.77.0.11', port: 623, username: 'root', password: { env: 'BMC_B_PASSWORD' }, protocol: 'ipmi', cipher: 3 }).setNextBoot(${JSON.stringify(device)}, ${once});`;
      const r = await ns.exec(process.execPath, ['--input-type=module', '-e', code], { env });
      assert.equal(r.code, 0, r.out);
    };
    await setNextBoot('disk', false);
    let param = await B.ipmitool('10.77.0.11', 623, ['chassis', 'bootparam', 'get', '5']);
    // (ipmi_sim keeps the device selector but not byte 0's valid and persistent bits: it
    // reads back "Boot Flag Invalid" whatever ipmitool sent, so only the device is checked)
    assert.match(param.stdout, /Boot Device Selector : Force Boot from default Hard-Drive/, param.out);
    assert.notEqual(B.bootDevice(), 'pxe', B.chassisLog());
    await setNextBoot('pxe', true);
    param = await B.ipmitool('10.77.0.11', 623, ['chassis', 'bootparam', 'get', '5']);
    assert.match(param.stdout, /Boot Device Selector : Force PXE/, param.out);
    assert.equal(B.bootDevice(), 'pxe', B.chassisLog());

    // usage: an unknown machine, a machine without bmc: nothing is done, exit 2
    r = await run(good, 'power', 'off', 'cp1', 'nosuch');
    assert.equal(r.code, 2, r.out);
    assert.match(r.stderr, /no machine nosuch in the cluster file/);
    r = await run(good, 'power', 'off', 'w1');
    assert.equal(r.code, 2, r.out);
    assert.match(r.stderr, /w1: no bmc in the cluster file/);
    assert.equal(await A.peerPower(), 'on', 'a refused command line touched no BMC');

    // the bad file: each bad BMC its own named error; w2 (good) still answers in the same run
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      withBmcs({
        cp1: '{address: 10.77.0.10, username: admin, passwordFile: wrong.pw, protocol: ipmi}',
        cp2: '{address: 10.77.0.14, username: admin, passwordFile: a.pw, protocol: ipmi, cipher: 17}',
        cp3: '{address: 10.77.0.12, username: admin, passwordFile: a.pw, protocol: ipmi}',
        w1: '{address: 10.77.0.13, username: admin, passwordFile: a.pw, protocol: ipmi}',
        w2: '{address: 10.77.0.11, username: root, passwordEnv: BMC_B_PASSWORD, protocol: ipmi}',
      }),
    );
    const t0 = performance.now();
    r = await run(bad, 'power', 'status', '--all');
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(r.code, 1, r.out);
    assert.match(row(r.stdout, 'cp1'), /error: authentication refused\s+cp1: BMC 10\.77\.0\.10:623 refused user "admin" or its password/);
    assert.match(row(r.stdout, 'cp2'), /error: unsupported cipher\s+cp2: BMC 10\.77\.0\.14:623 does not offer cipher suite 17/);
    assert.match(row(r.stdout, 'cp3'), /error: timeout\s+cp3: BMC 10\.77\.0\.12:623: no answer .*\(3 attempts\)/);
    assert.match(row(r.stdout, 'w1'), /error: unreachable\s+w1: BMC 10\.77\.0\.13:623: nothing listens there/);
    assert.match(row(r.stdout, 'w2'), /^w2\s+10\.77\.0\.11:623\s+off\s/);
    assert.match(r.stderr, /4 of 5 machines failed/);
    // bounded: 3 attempts of ipmitool's own 3 tries plus a 1.5 s ping each, machines in parallel
    assert.ok(seconds < 60, `the bad BMCs took ${seconds.toFixed(1)} s`);
    console.log(`# power status over 5 BMCs, 4 of them bad: ${seconds.toFixed(1)} s`);
    await ns.kill(sink);
  } finally {
    for (const s of sims) await s.close();
    await ns.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
