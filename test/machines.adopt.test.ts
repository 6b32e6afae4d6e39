// Discover, then adopt, against the real `slipway serve`: a machine the file does not
// name network-boots (busybox udhcpc dressed as a BIOS PXE client, from its own
// namespace on the lab bridge); `slipway machines --discovered` lists its MAC; `slipway
// adopt` adds it to the file; serve re-reads the file on SIGHUP; the machine's next DHCP
// request is now a known machine's (state dhcp), and `slipway machines` shows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { BIN } from './helpers/cli.ts';
import { Lab } from './helpers/serve.ts';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root (network namespaces)' : !['/sbin/udhcpc', '/usr/sbin/udhcpc'].some((p) => existsSync(p)) ? 'missing udhcpc (Debian udhcpc)' : false;

test('a MAC seen network-booting is listed by slipway machines --discovered, adopted into the file, and known to serve after SIGHUP', { skip, timeout: 120_000 }, async () => {
  const lab = Lab.create();
  try {
    await lab.start();
    const mac = '52:54:00:20:30:23';
    const host = lab.host(mac, '10.20.30.23');
    const dhcp = () => host.exec('udhcpc', ['-i', 'eth0', '-n', '-q', '-f', '-t', '3', '-T', '1', '-s', '/bin/true', '-V', 'PXEClient:Arch:00000'], { timeoutMs: 20_000 });
    await dhcp(); // unknown: serve records it and, with --unknown ignore, answers nothing
    const cli = (...args: string[]) => lab.hub.exec(process.execPath, [BIN, ...args], { timeoutMs: 60_000 });
    let r = await cli('machines', '-f', lab.file, '--state', lab.state, '--discovered', '-o', 'json');
    assert.equal(r.code, 0, r.out);
    const seen = (JSON.parse(r.stdout) as { discovered: { mac: string; via: string }[] }).discovered;
    assert.ok(seen.some((d) => d.mac === mac), r.stdout);
    r = await cli('machines', '-f', lab.file, '--state', lab.state, '--discovered');
    assert.match(r.stdout, new RegExp(`^${mac}\\s+dhcp\\s`, 'm'), r.out);

    r = await cli('adopt', '-f', lab.file, mac, '--name', 'w3', '--roles', 'worker');
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /adopted 52:54:00:20:30:23 as w3 \(worker, 10\.20\.30\.23\/24\)/);
    lab.serve!.kill('SIGHUP');
    let known = false;
    for (let i = 0; i < 50 && !known; i++) {
      r = await cli('machines', '-f', lab.file, '--state', lab.state, '-o', 'json');
      known = (JSON.parse(r.stdout) as { machines: { name: string }[] }).machines.some((m) => m.name === 'w3');
      if (!known) await new Promise((res) => setTimeout(res, 300));
    }
    assert.ok(known, `serve did not take w3 after SIGHUP:\n${lab.log.slice(-3000)}`);
    const again = await dhcp();
    assert.equal(again.code, 0, `w3's DHCP request is answered now: ${again.out}`);
    r = await cli('machines', '-f', lab.file, '--state', lab.state);
    assert.match(r.stdout, /^w3\s+52:54:00:20:30:23\s+10\.20\.30\.23\s+worker\s+dhcp\s/m, r.out);
  } finally {
    await lab.close();
  }
});
