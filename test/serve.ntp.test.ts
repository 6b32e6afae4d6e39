// serve answers time (SNTP, RFC 4330) on the provisioner address: real NTP clients in a
// machine's namespace read it — chrony (chronyd -Q, which measures and sets nothing) and
// NTPsec's ntpdig — and find the provisioner's clock (the same kernel clock: offset ~0).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from './helpers/serve.ts';
import type { Netns } from './helpers/netns.ts';
import { which } from '../src/rehearse/preflight.ts';

const PROV = '10.20.30.2';
const MISSING = ['chronyd', 'ntpdig'].filter((t) => !which(t));
const skip = MISSING.length ? `missing ${MISSING.join(', ')} (Debian chrony, ntpsec-ntpdig)` : false;

let lab: Lab;
let machine: Netns;

before(async () => {
  if (skip) return;
  lab = Lab.create();
  await lab.start();
  machine = lab.host('52:54:00:20:30:21', '10.20.30.21');
});
after(async () => {
  if (skip) return;
  await lab.close();
});

test('chronyd -Q reads serve\'s time: offset well under a second', { skip, timeout: 60_000 }, async () => {
  const r = await machine.exec('chronyd', ['-Q', '-f', '/dev/null', '-t', '20', `server ${PROV} iburst maxsamples 4`], { timeoutMs: 40_000 });
  assert.equal(r.code, 0, r.out);
  const m = /System clock wrong by (-?[\d.]+) seconds/.exec(r.out);
  assert.ok(m, `no measurement in chronyd's output:\n${r.out}`);
  assert.ok(Math.abs(Number(m[1])) < 0.5, `offset ${m[1]} s`);
});

test('ntpdig reads serve\'s time: stratum 10 (a local clock), offset well under a second', { skip, timeout: 60_000 }, async () => {
  const r = await machine.exec('ntpdig', ['-j', '-t', '5', PROV], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.out);
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { stratum: number; offset: number; host: string };
  assert.equal(j.stratum, 10);
  assert.ok(Math.abs(j.offset) < 0.5, `offset ${j.offset} s`);
  const metrics = await lab.hub.exec('curl', ['-sS', `http://${PROV}:8080/metrics`]);
  assert.match(metrics.stdout, /slipway_ntp_requests_total\{outcome="answered"\} [1-9]/);
});
