// Every LAN channel of a BMC (issue 18): the installer's own bmc_lan (the part of
// scripts/os-image/init between its ">>> bmc_lan" and "<<< bmc_lan" lines, run by busybox
// sh as in the initramfs) against a real BMC: OpenIPMI's ipmi_sim with two LAN channels on
// loopback, configured with the real ipmitool. In the initramfs ipmitool talks to the BMC
// over KCS (-I open); here the same ipmitool reaches the same BMC over RMCP+ (a wrapper
// swaps the interface and nothing else), so what is parsed is ipmitool's real output,
// channels that are no LAN channel refused by the BMC included. The KCS path itself is
// test/power.vm.test.ts. Then what it reports passes checkFacts, and adopt takes the first
// channel with an address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkFacts } from '../src/serve/enlist.ts';
import { withFacts } from '../src/spec/adopt.ts';

const INIT = fileURLToPath(new URL('../scripts/os-image/init', import.meta.url));
const haveTools = existsSync('/usr/bin/ipmi_sim') && existsSync('/usr/bin/ipmitool');
const SH = existsSync('/bin/busybox') ? ['/bin/busybox', 'sh'] : ['sh'];
const PASSWORD = 'lan-test-pw';

/** The installer's bmc_lan and the helpers it calls (json, its own; say, to stderr). */
function bmcLanScript(runDir: string): string {
  const init = readFileSync(INIT, 'utf8');
  const part = /^# >>> bmc_lan[^\n]*\n([^]*?)^# <<< bmc_lan$/m.exec(init)?.[1];
  assert.ok(part, 'scripts/os-image/init has its bmc_lan part');
  const json = /^json\(\) \{.*\}$/m.exec(init)?.[0];
  assert.ok(json);
  return `say() { echo "$*" >&2; }\n${json}\nbmc_address= bmc_mac= bmc_channels=\n${part.replaceAll('/run/', `${runDir}/`)}\nbmc_lan\nprintf '%s\\n%s\\n[%s]\\n' "$bmc_address" "$bmc_mac" "$bmc_channels"\n`;
}

test('the installer reads every LAN channel of a real BMC (ipmi_sim) with ipmitool; adopt takes the first with an address', { skip: !haveTools && 'missing ipmi_sim/ipmitool (Debian openipmi, ipmitool)', timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-lan-'));
  let sim: ChildProcess | undefined;
  try {
    mkdirSync(join(dir, 'state'), { mode: 0o700 });
    mkdirSync(join(dir, 'run'));
    mkdirSync(join(dir, 'bin'));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const lan = (ch: number, p: number) => [`  startlan ${ch}`, `    addr 127.0.0.1 ${p}`, '    priv_limit admin', ...['callback', 'user', 'operator', 'admin'].map((x) => `    allowed_auths_${x} md5`), `    guid a123456789abcdefa123456789abcde${ch}`, '  endlan'];
    writeFileSync(join(dir, 'lan.conf'), ['name "lan-test"', 'set_working_mc 0x20', ...lan(1, port), ...lan(2, port + 1), `  user 2 true "admin" "${PASSWORD}" admin 10 md5`, ''].join('\n'), { mode: 0o600 });
    writeFileSync(join(dir, 'sim.emu'), 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n');
    sim = spawn('ipmi_sim', ['-c', join(dir, 'lan.conf'), '-f', join(dir, 'sim.emu'), '-s', join(dir, 'state'), '-n'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let simOut = '';
    sim.stdout!.on('data', (d: Buffer) => (simOut += d));
    sim.stderr!.on('data', (d: Buffer) => (simOut += d));
    const ipmitool = (...args: string[]) => spawnSync('ipmitool', ['-I', 'lanplus', '-C', '3', '-H', '127.0.0.1', '-p', String(port), '-U', 'admin', '-E', '-N', '1', '-R', '2', ...args], { encoding: 'utf8', timeout: 15_000, env: { PATH: process.env.PATH, IPMI_PASSWORD: PASSWORD } });
    let up = false;
    for (let i = 0; i < 50 && !up && sim.exitCode === null; i++) {
      up = ipmitool('chassis', 'power', 'status').status === 0;
      if (!up) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(up, `ipmi_sim did not answer on 127.0.0.1:${port}: ${simOut}`);
    // the installer's ipmitool, as it calls it (-I open over KCS), reaching this BMC over RMCP+ instead
    writeFileSync(join(dir, 'bin', 'ipmitool'), `#!/bin/sh\n[ "$1 $2" = "-I open" ] || { echo "unexpected: $*" >&2; exit 2; }\nshift 2\nexec /usr/bin/ipmitool -I lanplus -C 3 -H 127.0.0.1 -p ${port} -U admin -E -N 1 -R 2 "$@"\n`, { mode: 0o755 });
    const run = () => {
      const r = spawnSync(SH[0]!, [...SH.slice(1), '-c', bmcLanScript(join(dir, 'run'))], { encoding: 'utf8', timeout: 45_000, env: { PATH: `${join(dir, 'bin')}:${process.env.PATH}`, IPMI_PASSWORD: PASSWORD } });
      assert.equal(r.status, 0, r.stderr);
      const [address, mac, channels] = r.stdout.split('\n');
      return { address: address!, mac: mac!, channels: JSON.parse(channels!) as { channel: number; address: string; mac: string }[] };
    };
    const set = (ch: number, ...kv: string[][]) => {
      for (const x of kv) {
        const r = ipmitool('lan', 'set', String(ch), ...x);
        assert.equal(r.status, 0, r.stdout + r.stderr);
      }
    };
    // channel 1 unset (ipmi_sim starts with 0.0.0.0), channel 2 configured: the second is the BMC's address
    set(2, ['ipsrc', 'static'], ['ipaddr', '10.20.30.202'], ['netmask', '255.255.255.0'], ['macaddr', '52:54:00:aa:bb:02']);
    const t0 = performance.now();
    let got = run();
    console.log(`# bmc_lan over 11 channels of ipmi_sim (2 LAN channels): ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    assert.deepEqual(got.channels, [{ channel: 1, address: '', mac: '' }, { channel: 2, address: '10.20.30.202', mac: '52:54:00:aa:bb:02' }], 'channels 3-11 are none: the BMC refuses them');
    assert.equal(got.address, '10.20.30.202');
    assert.equal(got.mac, '52:54:00:aa:bb:02');
    // what the installer sends passes serve's checks, and adopt takes that channel's address
    const facts = { bootMac: '52:54:00:99:00:21', nics: [{ name: 'eth0', mac: '52:54:00:99:00:21', driver: 'virtio_net', link: true, speedMbps: null }], disks: [], cpu: { model: 'x', count: 1 }, memoryBytes: 1, dmi: { vendor: '', product: '', serial: '' }, bmc: { address: got.address, mac: got.mac, channels: got.channels } };
    const checked = checkFacts(facts);
    assert.ok('facts' in checked, JSON.stringify(checked));
    assert.deepEqual(checked.facts.bmc, facts.bmc);
    const { adoption } = withFacts({ mac: '52:54:00:99:00:21', name: 'w5', roles: ['worker'] }, checked.facts, { username: 'admin', passwordFile: 'w5.pw' });
    assert.deepEqual(adoption.bmc, { address: '10.20.30.202', username: 'admin', passwordFile: 'w5.pw' });
    // with channel 1 configured too, the first channel with an address is channel 1
    set(1, ['ipsrc', 'static'], ['ipaddr', '10.20.30.201'], ['netmask', '255.255.255.0'], ['macaddr', '52:54:00:aa:bb:01']);
    got = run();
    assert.deepEqual(got.channels.map((c) => [c.channel, c.address]), [[1, '10.20.30.201'], [2, '10.20.30.202']]);
    assert.deepEqual([got.address, got.mac], ['10.20.30.201', '52:54:00:aa:bb:01']);
    // a channel entry checkFacts refuses, naming it
    const bad = checkFacts({ ...facts, bmc: { ...facts.bmc, channels: [{ channel: 1, address: '10.20.30.300', mac: '' }] } });
    assert.deepEqual(bad, { error: 'facts.bmc.channels[0].address is not an IPv4 address' });
  } finally {
    if (sim && sim.exitCode === null) {
      sim.kill('SIGKILL');
      await new Promise((r) => sim!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
