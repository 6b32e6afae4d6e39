// What the API reads from the store is bounded: a machine's newest events within a
// detail budget, unknown MACs a page at a time, aged out and capped; durable() syncs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from './sqlite.ts';

test('recentEvents: newest first cut to the limit and the detail budget, oldest first in the answer', () => {
  const s = new SqliteStore(':memory:');
  const big = { logs: 'x'.repeat(10_000) };
  for (let i = 1; i <= 30; i++) s.transition('w1', i % 2 ? 'installing' : 'installed', 'machine', () => true, { detail: { ...big, seq: i } });
  s.transition('w2', 'dhcp', 'dhcp', () => true);
  const byLimit = s.recentEvents('w1', { limit: 5, maxDetailBytes: 1e9 });
  assert.deepEqual(byLimit.events.map((e) => e.detail?.seq), [26, 27, 28, 29, 30]);
  assert.equal(byLimit.more, true);
  const byBytes = s.recentEvents('w1', { limit: 100, maxDetailBytes: 25_000 });
  assert.deepEqual(byBytes.events.map((e) => e.detail?.seq), [29, 30], 'two 10 KB details fit in 25 KB, three do not');
  const older = s.recentEvents('w1', { beforeId: byBytes.events[0]!.id, limit: 100, maxDetailBytes: 1 });
  assert.deepEqual(older.events.map((e) => e.detail?.seq), [28], 'always at least one');
  const bare = s.recentEvents('w1', { limit: 1, maxDetailBytes: 0, withDetail: false });
  assert.equal(bare.events[0]?.detail, undefined);
  assert.equal(bare.events[0]?.machine, 'w1');
  assert.deepEqual(s.recentEvents('w2', { limit: 100, maxDetailBytes: 0 }), { events: [s.events({ machine: 'w2' })[0]!], more: false });
  assert.deepEqual(s.recentEvents('nobody', { limit: 100, maxDetailBytes: 0 }), { events: [], more: false });
  s.close();
});

test('discovered: pages by MAC, only those seen recently; prune ages out and caps', () => {
  const s = new SqliteStore(':memory:');
  const macs = Array.from({ length: 7 }, (_, i) => `02:00:00:00:00:0${i}`);
  for (const m of macs) s.recordDiscovered(m, 'dhcp');
  const p1 = s.discovered({ limit: 3 });
  assert.deepEqual(p1.map((d) => d.mac), macs.slice(0, 3));
  assert.deepEqual(s.discovered({ after: p1.at(-1)!.mac, limit: 3 }).map((d) => d.mac), macs.slice(3, 6));
  assert.equal(s.discovered({ seenSince: new Date(Date.now() + 60_000).toISOString() }).length, 0, 'nothing seen in the future');
  assert.equal(s.pruneDiscovered(new Date(Date.now() - 60_000).toISOString(), 100), 0, 'all seen just now');
  assert.equal(s.pruneDiscovered(new Date(Date.now() - 60_000).toISOString(), 4), 3, 'capped at 4');
  assert.equal(s.discovered().length, 4);
  assert.equal(s.pruneDiscovered(new Date(Date.now() + 60_000).toISOString(), 100), 4, 'aged out');
  s.close();
});

test('durable(): syncs the WAL off the thread; callers arriving meanwhile share the next sync', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-durable-'));
  try {
    const s = new SqliteStore(join(dir, 'serve.db'));
    await s.durable();
    s.transition('w1', 'installing', 'machine', () => true);
    const all = [s.durable(), s.durable(), s.durable()];
    s.transition('w1', 'installed', 'machine', () => true);
    all.push(s.durable());
    await Promise.all(all);
    s.close();
    const again = new SqliteStore(join(dir, 'serve.db'));
    assert.equal(again.get('w1')?.state, 'installed');
    again.close();
    await new SqliteStore(':memory:').durable();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('discovered sightings wait in memory, are written together on the next commit, and keep the first sighting', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-sightings-'));
  try {
    const s = new SqliteStore(join(dir, 'serve.db'));
    s.recordDiscovered('02:00:00:00:00:01', 'dhcp', { type: 'DISCOVER' });
    const peek = new SqliteStore(join(dir, 'serve.db')); // another connection sees only what is committed
    assert.equal(peek.discovered().length, 0, 'not written yet');
    await new Promise((r) => setTimeout(r, 5));
    s.recordDiscovered('02:00:00:00:00:01', 'dhcp', { type: 'REQUEST' });
    await s.durable();
    const [d] = peek.discovered();
    assert.equal(d?.detail?.type, 'REQUEST', 'the last sighting is what is kept');
    assert.ok(d!.firstSeen < d!.lastSeen, 'and the first one when it was first seen');
    s.recordDiscovered('02:00:00:00:00:01', 'tftp');
    s.close();
    assert.equal(peek.discovered()[0]?.via, 'tftp', 'close() writes what is pending');
    assert.equal(peek.discovered()[0]?.firstSeen, d!.firstSeen);
    peek.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
