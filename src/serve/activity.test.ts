// serve's day-2 activity (issue 17): what a post may carry (each field named when wrong),
// which runs are running (not ended, heard of within the minute), and the bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Activity, ACTIVITY_JOURNAL, ACTIVITY_KEEP, checkActivity, journalLine, parseJournal, readJournal } from './activity.ts';

test('a posted event is checked field by field', () => {
  assert.deepEqual(checkActivity({ run: 'apply-1', command: 'apply', kind: 'machine', machine: 'w1', text: 'w1: started (1 of 1)' }), { event: { run: 'apply-1', command: 'apply', kind: 'machine', machine: 'w1', text: 'w1: started (1 of 1)' } });
  for (const [body, why] of [
    [[], /JSON object/],
    [{ run: 'a b', command: 'apply', kind: 'line', text: '' }, /^run must be/],
    [{ run: 'r', command: 'rm', kind: 'line', text: '' }, /^command must be "apply"/],
    [{ run: 'r', command: 'apply', kind: 'explode', text: '' }, /^kind must be one of start, plan/],
    [{ run: 'r', command: 'apply', kind: 'line', machine: 'W1!', text: '' }, /^machine must be a machine name/],
    [{ run: 'r', command: 'apply', kind: 'line', text: 'a\u001b[2Jb' }, /^text must be a string of at most 4,000 characters without control characters/],
    [{ run: 'r', command: 'apply', kind: 'line', text: 'x'.repeat(4001) }, /^text must be/],
    [{ run: 'r', command: 'apply', kind: 'end', text: '', ok: 'yes' }, /^ok must be true or false/],
  ] as const) {
    const r = checkActivity(body);
    assert.ok('error' in r && why.test(r.error), JSON.stringify(r));
  }
});

test('a run is running until its end, or a minute of silence; lines are bounded; heartbeats only keep it alive', () => {
  let now = Date.parse('2026-12-07T12:00:00Z');
  const a = new Activity(() => now);
  const told: string[] = [];
  a.on('activity', (e) => told.push(e.kind));
  a.record({ run: 'r1', command: 'apply', kind: 'start', text: 'apply: started: w1' });
  assert.deepEqual(a.running().map((r) => r.run), ['r1']);
  now += 50_000;
  a.record({ run: 'r1', command: 'apply', kind: 'heartbeat', text: '' });
  now += 50_000;
  assert.deepEqual(a.running().map((r) => r.run), ['r1'], 'the heartbeat kept it alive');
  assert.deepEqual(a.view().events.map((e) => e.kind), ['start'], 'heartbeats are not lines');
  now += 61_000;
  assert.deepEqual(a.running(), [], 'silent for a minute: not running (apply died)');
  a.record({ run: 'r2', command: 'apply', kind: 'start', text: 'apply: started: w2' });
  const end = a.record({ run: 'r2', command: 'apply', kind: 'end', text: 'apply: done: w2', ok: true });
  assert.deepEqual(a.running(), []);
  assert.equal(a.view().runs.find((r) => r.run === 'r2')!.ok, true);
  assert.equal(end.seq, 4);
  assert.deepEqual(told, ['start', 'heartbeat', 'start', 'end'], 'every event is told (SSE)');
  for (let i = 0; i < ACTIVITY_KEEP + 10; i++) a.record({ run: 'r3', command: 'apply', kind: 'line', text: `line ${i}` });
  assert.equal(a.view().events.length, ACTIVITY_KEEP);
  assert.equal(a.view().events.at(-1)!.text, `line ${ACTIVITY_KEEP + 9}`);
});

test("the journal: serve restores apply's runs from it as they were (times, ends), skips and counts what it cannot read, and tells nobody", () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-journal-'));
  try {
    const ev = (run: string, kind: string, text: string, at: string, extra: Record<string, unknown> = {}) => journalLine({ run, command: 'apply', kind: kind as 'line', text, at, ...extra });
    writeFileSync(join(dir, `${ACTIVITY_JOURNAL}.1`), ev('r1', 'start', 'apply: started', '2026-12-07T11:00:00.000Z') + ev('r1', 'end', 'apply: done: w1', '2026-12-07T11:01:00.000Z', { ok: true }));
    writeFileSync(
      join(dir, ACTIVITY_JOURNAL),
      ev('r2', 'machine', 'w2: started (1 of 1)', '2026-12-07T11:59:30.000Z', { machine: 'w2' }) +
        '{"run": "r2", "command": "apply", "kind": "line", "text": "half a line' + // a line cut by a crash
        '\n' +
        ev('r2', 'line', 'x', 'not a time') +
        ev('r3', 'start', 'apply: started', '2026-12-07T10:00:00.000Z'),
    );
    const j = readJournal(dir);
    assert.equal(j.skipped, 2);
    assert.deepEqual(j.events.map((e) => `${e.run} ${e.kind}`), ['r1 start', 'r1 end', 'r2 machine', 'r3 start']);
    const now = Date.parse('2026-12-07T12:00:00Z');
    const a = new Activity(() => now);
    let told = 0;
    a.on('activity', () => told++);
    a.restore(j.events);
    assert.equal(told, 0, 'restored, not told: no client sees old lines as news');
    const v = a.view();
    assert.deepEqual(v.runs.map((r) => [r.run, r.started, r.ended ?? null, r.ok ?? null]), [['r1', '2026-12-07T11:00:00.000Z', '2026-12-07T11:01:00.000Z', true], ['r2', '2026-12-07T11:59:30.000Z', null, null], ['r3', '2026-12-07T10:00:00.000Z', null, null]]);
    // r2 was heard of 30 s ago and has not ended: running; r3 fell silent long ago
    assert.deepEqual(a.running().map((r) => r.run), ['r2']);
    assert.deepEqual(v.events.map((e) => e.seq), [1, 2, 3, 4]);
    // the last `keep` only
    assert.deepEqual(readJournal(dir, 2).events.map((e) => e.run), ['r2', 'r3']);
    assert.deepEqual(readJournal(join(dir, 'none')), { events: [], skipped: 0 });
    assert.deepEqual(parseJournal('[]\n{}\n').skipped, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
