// A MAC's facts as a history (issue 18): every report kept with its time and source,
// newest first, the last FACTS_HISTORY of them; stored with the token's use in one
// transaction; kept over a reopen; and a store written before the history existed
// (a facts table of newest reports only) migrated once, its reports the histories' first
// entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { SqliteStore } from './sqlite.ts';
import { FACTS_HISTORY } from './store.ts';

const MAC = '52:54:00:99:00:01';

test('factsHistory: every report with its time and source, newest first, bounded; facts() is the newest; kept over a reopen', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-facts-'));
  try {
    const file = join(dir, 'serve.db');
    let s = new SqliteStore(file);
    assert.deepEqual(s.factsHistory(MAC), []);
    s.recordFacts(MAC, { n: 0 }, 'enlist');
    s.recordFacts(MAC, { n: 1 }, 'installed', { machine: 'w9' });
    s.recordFacts('52:54:00:99:00:02', { n: 'other' }, 'enlist');
    const h = s.factsHistory(MAC);
    assert.deepEqual(h.map((f) => [f.facts.n, f.source, f.machine]), [[1, 'installed', 'w9'], [0, 'enlist', undefined]]);
    assert.ok(h.every((f) => f.mac === MAC && !Number.isNaN(Date.parse(f.at))));
    assert.ok(h[0]!.at >= h[1]!.at);
    assert.deepEqual(s.facts(MAC), h[0]);
    // a used token stores nothing, in the history neither
    s.issueEnlistToken(MAC, 'h1', { expireBefore: new Date(Date.now() - 3600_000).toISOString(), keep: 10 });
    assert.ok(s.recordFacts(MAC, { n: 2 }, 'enlist', { useToken: 'h1' }));
    assert.equal(s.recordFacts(MAC, { n: 3 }, 'enlist', { useToken: 'h1' }), undefined);
    assert.deepEqual(s.factsHistory(MAC).map((f) => f.facts.n), [2, 1, 0]);
    for (let i = 4; i < 4 + FACTS_HISTORY + 5; i++) s.recordFacts(MAC, { n: i }, 'enlist');
    const all = s.factsHistory(MAC);
    assert.equal(all.length, FACTS_HISTORY, 'the oldest beyond the bound are forgotten');
    assert.equal(all[0]!.facts.n, 3 + FACTS_HISTORY + 5);
    assert.equal(all.at(-1)!.facts.n, 3 + 5 + 1);
    assert.deepEqual(s.factsHistory(MAC, 2).map((f) => f.facts.n), [all[0]!.facts.n, all[1]!.facts.n]);
    assert.equal(s.factsHistory('52:54:00:99:00:02').length, 1, 'one MAC\'s bound leaves the others alone');
    s.close();
    s = new SqliteStore(file);
    assert.deepEqual(s.factsHistory(MAC), all, 'kept over a reopen');
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a store from before the history: each MAC\'s stored facts become its history\'s first entry, once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-facts-'));
  try {
    const file = join(dir, 'serve.db');
    // the facts table as slipway wrote it before (newest report per MAC only)
    const old = new DatabaseSync(file);
    old.exec('PRAGMA journal_mode = WAL; CREATE TABLE facts (mac TEXT PRIMARY KEY, machine TEXT, at TEXT NOT NULL, source TEXT NOT NULL, facts TEXT NOT NULL)');
    old.prepare('INSERT INTO facts VALUES (?, ?, ?, ?, ?)').run(MAC, null, '2026-01-02T03:04:05.000Z', 'enlist', '{"n":"old"}');
    old.prepare('INSERT INTO facts VALUES (?, ?, ?, ?, ?)').run('52:54:00:20:30:11', 'cp1', '2026-01-03T03:04:05.000Z', 'installed', '{"n":"cp1"}');
    old.close();
    let s = new SqliteStore(file);
    assert.deepEqual(s.factsHistory(MAC), [{ mac: MAC, at: '2026-01-02T03:04:05.000Z', source: 'enlist', facts: { n: 'old' } }]);
    assert.deepEqual(s.factsHistory('52:54:00:20:30:11'), [{ mac: '52:54:00:20:30:11', machine: 'cp1', at: '2026-01-03T03:04:05.000Z', source: 'installed', facts: { n: 'cp1' } }]);
    s.recordFacts(MAC, { n: 'new' }, 'enlist');
    s.close();
    s = new SqliteStore(file); // the migration does not run twice
    assert.deepEqual(s.factsHistory(MAC).map((f) => f.facts.n), ['new', 'old']);
    assert.equal(s.factsHistory('52:54:00:20:30:11').length, 1);
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pruneFacts: facts of MACs no machine claims are bounded (the newest kept), with their history; claimed and protected MACs are never forgotten', () => {
  const s = new SqliteStore(':memory:');
  try {
    const mac = (i: number) => `52:54:00:aa:00:${i.toString(16).padStart(2, '0')}`;
    for (let i = 0; i < 30; i++) s.recordFacts(mac(i), { n: i }, 'enlist');
    s.recordFacts(mac(0), { n: 'again' }, 'enlist'); // enlisted again: among the newest now
    s.recordFacts(mac(1), { n: 'installed' }, 'installed', { machine: 'w1' }); // claimed by an install
    // mac(2): adopted into the file, not installed yet
    // 29 unclaimed: the 10 newest (mac 0, then 29..21) and the protected one stay
    assert.equal(s.pruneFacts(10, [mac(2)]), 29 - 10 - 1);
    const left = Array.from({ length: 30 }, (_, i) => i).filter((i) => s.facts(mac(i)));
    assert.deepEqual(left, [0, 1, 2, 21, 22, 23, 24, 25, 26, 27, 28, 29]);
    assert.deepEqual(s.factsHistory(mac(5)), [], 'a forgotten MAC has no history left');
    assert.equal(s.factsHistory(mac(0)).length, 2);
    assert.equal(s.factsHistory(mac(1)).length, 2);
    assert.equal(s.pruneFacts(10, [mac(2)]), 0, 'nothing more to forget');
  } finally {
    s.close();
  }
});
