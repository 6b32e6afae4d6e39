// The state machine only moves forward; failed is reachable from anywhere; reprovision
// is the way back; timeouts fail stuck machines. Runs on the real SQLite store in memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canMove, isInstalled, PROGRESS_STATES } from './states.ts';
import { STATES } from '../store/states.ts';
import { Lifecycle } from './lifecycle.ts';
import { SqliteStore } from '../store/sqlite.ts';

test('forward only (installing and installed also repeat, as progress); failed from anywhere; nothing leaves failed but reprovision', () => {
  for (const [i, from] of STATES.entries())
    for (const [j, to] of STATES.entries()) assert.equal(canMove(from, to), j > i || (i === j && PROGRESS_STATES.includes(to)), `${from} → ${to}`);
  assert.deepEqual([...PROGRESS_STATES], ['installing', 'installed']);
  for (const s of STATES) assert.equal(canMove(s, 'failed'), true);
  for (const s of STATES) assert.equal(canMove('failed', s), false);
  assert.equal(isInstalled('installed'), true);
  assert.equal(isInstalled('config-fetched'), false);
});

test('observations move machines forward and are recorded as events with their source', async () => {
  const store = new SqliteStore(':memory:');
  const lc = new Lifecycle(store, ['cp1', 'w1']);
  const seen: string[] = [];
  lc.on('event', (e) => seen.push(`${e.machine}:${e.from}>${e.to}`));
  lc.observe('cp1', 'dhcp', 'dhcp');
  lc.observe('cp1', 'booting', 'http');
  assert.equal(lc.observe('cp1', 'dhcp', 'dhcp'), undefined, 'a second DHCP (reboot) does not move it back');
  lc.observe('cp1', 'installed', 'machine');
  assert.equal(lc.bootAction('cp1'), 'local');
  assert.equal(lc.observe('nobody', 'dhcp', 'dhcp'), undefined, 'unknown names are ignored');
  lc.fail('w1', 'unit kubelet.service failed', 'machine', { logs: 'x' });
  assert.equal(lc.observe('w1', 'ready', 'machine'), undefined);
  assert.equal(lc.bootAction('w1'), 'local', 'a failed machine is not reinstalled by itself');
  assert.equal(lc.localReason('w1'), 'w1 failed: reprovision it to install again');
  assert.equal(lc.localReason('cp1'), 'cp1 is installed');
  assert.deepEqual(seen, [], 'listeners hear of events at the end of the loop turn, once committed');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, ['cp1:unknown>dhcp', 'cp1:dhcp>booting', 'cp1:booting>installed', 'w1:unknown>failed']);
  assert.equal(store.get('w1')?.reason, 'unit kubelet.service failed');
  lc.reprovision('w1');
  assert.equal(lc.state('w1'), 'unknown');
  assert.equal(lc.bootAction('w1'), 'install');
  assert.deepEqual(store.events({ machine: 'w1' }).map((e) => e.to), ['failed', 'unknown']);
  store.close();
});

test("the installer's progress is recorded within installing; the installed system's report within installed", () => {
  const store = new SqliteStore(':memory:');
  const lc = new Lifecycle(store, ['w1']);
  lc.observe('w1', 'installing', 'machine', { reason: 'installing to /dev/vda', detail: { step: 'disk' } });
  const since = store.get('w1')!.since;
  assert.ok(lc.observe('w1', 'installing', 'machine', { reason: 'writing image 40%', detail: { step: 'write', percent: 40 } }));
  assert.equal(lc.bootAction('w1'), 'install', 'still being installed: the next network boot installs again');
  assert.ok(lc.observe('w1', 'installed', 'machine', { reason: 'image written to /dev/vda, Ignition applied: rebooting from disk' }));
  assert.equal(lc.bootAction('w1'), 'local');
  assert.ok(lc.observe('w1', 'installed', 'machine', { reason: 'binaries in place' }));
  assert.equal(lc.observe('w1', 'installing', 'machine'), undefined, 'never back');
  assert.deepEqual(store.events({ machine: 'w1' }).map((e) => `${e.from}>${e.to}`), ['unknown>installing', 'installing>installing', 'installing>installed', 'installed>installed']);
  assert.ok(store.get('w1')!.since >= since);
  store.close();
});

test('a machine stuck too long fails with "timeout in <state>"', () => {
  const store = new SqliteStore(':memory:');
  let now = Date.now();
  const lc = new Lifecycle(store, ['cp1', 'cp2'], { timeoutSeconds: 60, now: () => now });
  lc.observe('cp1', 'booting', 'http');
  lc.observe('cp2', 'ready', 'machine');
  assert.deepEqual(lc.checkTimeouts(), []);
  now += 61_000;
  const failed = lc.checkTimeouts();
  assert.deepEqual(failed.map((e) => [e.machine, e.reason]), [['cp1', 'timeout in booting']]);
  store.close();
});

test('report sequence numbers refuse replays and restart after reprovision', () => {
  const store = new SqliteStore(':memory:');
  assert.equal(store.acceptSeq('cp1', 1), true);
  assert.equal(store.acceptSeq('cp1', 1), false);
  assert.equal(store.acceptSeq('cp1', 5), true);
  assert.equal(store.acceptSeq('cp1', 3), false);
  new Lifecycle(store, ['cp1']).reprovision('cp1');
  assert.equal(store.acceptSeq('cp1', 1), true);
  store.close();
});
