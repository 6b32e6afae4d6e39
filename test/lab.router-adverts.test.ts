// The VM lab's IPv6 router advertisements (src/rehearse/lab/router-adverts.ts), checked by
// their real consumers: radvd accepts the config, and a machine on the lab bridge that
// solicits a router (ndisc6's rdisc6, as iPXE does at every network boot) gets an answer
// at once, one that configures nothing: router lifetime 0, no M/O flags, no prefix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from '../src/rehearse/lab/lab.ts';
import { RADVD, radvdConf } from '../src/rehearse/lab/router-adverts.ts';
import { haSpec } from './helpers/spec.ts';
import { Netns } from './helpers/netns.ts';

const RDISC6 = '/usr/bin/rdisc6';
const missing = [RADVD, RDISC6].filter((p) => !existsSync(p));
const skip = missing.length ? `missing ${missing.join(', ')} (Debian radvd, ndisc6)` : false;

test('radvd accepts the lab\'s config', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-radvd-'));
  try {
    writeFileSync(join(dir, 'radvd.conf'), radvdConf('br0'));
    const r = spawnSync(RADVD, ['--configtest', '--config', join(dir, 'radvd.conf')], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /syntax ok/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a machine on the lab bridge that solicits a router gets an advertisement that configures nothing; close() stops radvd', { skip, timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-radvd-'));
  const lab = Lab.create(haSpec(), 'slipway-ra');
  // a machine wired to the bridge as Lab.attach does, in a namespace of this test's own
  // (the rehearsal tests count namespaces named like attach's)
  const m = Netns.create('slipway-ram');
  try {
    assert.equal(lab.advertiseRouter(dir), true);
    lab.hub.addVeth('m1', 'eth0', m);
    lab.hub.setMaster('m1', 'br0');
    // a solicitation needs the machine's link-local address, tentative for a moment
    // (duplicate address detection)
    await m.waitFor('eth0\'s link-local address', () => /inet6 fe80::\S+ scope link(?! tentative)/.test(m.ip('-6', 'addr', 'show', 'dev', 'eth0')), 10_000, 100);
    const r = await m.exec(RDISC6, ['-1', '-w', '1000', 'eth0'], { timeoutMs: 10_000 });
    assert.equal(r.code, 0, `no router advertisement:\n${r.out}`);
    assert.match(r.stdout, /Router lifetime\s*:\s*0 \(0x00000000\) seconds/, 'not a default router');
    assert.match(r.stdout, /Stateful address conf\.\s*:\s*No/, 'no DHCPv6 addresses (M off)');
    assert.match(r.stdout, /Stateful other conf\.\s*:\s*No/, 'no DHCPv6 options (O off)');
    assert.doesNotMatch(r.stdout, /Prefix\s*:/, 'no prefix to configure an address from');
  } finally {
    await m.close();
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const left = spawnSync('pgrep', ['-f', `radvd.*${dir}`], { encoding: 'utf8' }).stdout.trim();
  assert.equal(left, '', 'radvd still runs after the lab closed');
});
