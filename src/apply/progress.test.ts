// apply's progress posts are best effort (issue 17): with no serve to take them, every
// line is still printed, the failure is said once, and the run's end does not wait long;
// a state serve never ran with (no api-token) posts nothing and says nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveProgress } from './progress.ts';
import { ACTIVITY_JOURNAL, readJournal } from '../serve/activity.ts';

const closedPort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

test('no serve listening: every line printed, the failure said once, the end quick', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-progress-'));
  try {
    writeFileSync(join(dir, 'api-token'), 'token\n', { mode: 0o600 });
    const port = await closedPort();
    const printed: string[] = [];
    const warned: string[] = [];
    const p = serveProgress({ stateDir: dir, server: `http://127.0.0.1:${port}`, print: (l) => printed.push(l), warn: (l) => warned.push(l) });
    p.tell('plan', 'w1: 1 file to write, 0 files to remove', 'w1');
    p.say('machine', 'w1: started (1 of 1)', 'w1');
    p.say('failed', 'w1: FAILED at health: not healthy after 6 s', 'w1');
    const t0 = performance.now();
    await p.end(false, 'apply: not done: w1');
    assert.ok(performance.now() - t0 < 7_000);
    assert.deepEqual(printed, ['w1: started (1 of 1)', 'w1: FAILED at health: not healthy after 6 s', 'apply: not done: w1'], 'told-only lines (the plan, printed already) are not printed again');
    assert.equal(warned.length, 1, warned.join('\n'));
    assert.match(warned[0]!, new RegExp(`^apply: progress not shown in serve at http://127\\.0\\.0\\.1:${port} \\(.*\\): only here$`));
    // a state serve never ran with: nothing to tell, nothing said
    const quiet: string[] = [];
    mkdirSync(join(dir, 'none'));
    const q = serveProgress({ stateDir: join(dir, 'none'), server: `http://127.0.0.1:${port}`, print: () => {}, warn: (l) => quiet.push(l) });
    q.say('line', 'x');
    await q.end(true, 'apply: done: none');
    assert.deepEqual(quiet, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("every line goes to the state's journal (0600), serve or not, rotated past its size; a journal that cannot be written is said once", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-progress-'));
  try {
    const port = await closedPort();
    const warned: string[] = [];
    const p = serveProgress({ stateDir: dir, server: `http://127.0.0.1:${port}`, print: () => {}, warn: (l) => warned.push(l) });
    p.tell('plan', 'w1: 1 file to write, 0 files to remove', 'w1');
    p.say('machine', 'w1: started (1 of 1)', 'w1');
    await p.end(true, 'apply: done: w1');
    assert.deepEqual(warned, [], 'no api-token: serve is not told, and nothing is said about it');
    const file = join(dir, ACTIVITY_JOURNAL);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const j = readJournal(dir);
    assert.equal(j.skipped, 0);
    assert.deepEqual(j.events.map((e) => [e.kind, e.machine ?? null, e.text, e.ok ?? null]), [['plan', 'w1', 'w1: 1 file to write, 0 files to remove', null], ['machine', 'w1', 'w1: started (1 of 1)', null], ['end', null, 'apply: done: w1', true]]);
    assert.equal(new Set(j.events.map((e) => e.run)).size, 1);
    assert.ok(j.events.every((e) => Math.abs(Date.parse(e.at) - Date.now()) < 60_000));
    // past its size, the journal is rotated to .1 (one kept) and goes on
    const q = serveProgress({ stateDir: dir, server: `http://127.0.0.1:${port}`, print: () => {}, warn: () => {}, journalMaxBytes: 200 });
    for (let i = 0; i < 6; i++) q.say('line', `line ${i}`);
    await q.end(true, 'apply: done');
    assert.ok(statSync(`${file}.1`).size > 0 && statSync(file).size <= 200 + 200);
    const all = readJournal(dir).events.map((e) => e.text);
    assert.deepEqual(all.slice(-3), ['line 4', 'line 5', 'apply: done']);
    assert.ok(!readFileSync(file, 'utf8').includes('w1: started'), 'the first run went to .1 (or further)');
    // a journal that cannot be written (a directory in its place: refused to root too): said once, the run goes on
    const ro = join(dir, 'ro');
    mkdirSync(join(ro, ACTIVITY_JOURNAL), { recursive: true });
    const w: string[] = [];
    const printed: string[] = [];
    const r = serveProgress({ stateDir: ro, server: `http://127.0.0.1:${port}`, print: (l) => printed.push(l), warn: (l) => w.push(l) });
    r.say('line', 'a');
    r.say('line', 'b');
    await r.end(true, 'c');
    assert.equal(w.length, 1, w.join('\n'));
    assert.match(w[0]!, /^apply: cannot write the journal .*activity\.jsonl \(EISDIR.*\): these lines are only here$/);
    assert.deepEqual(printed, ['a', 'b', 'c']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
