// apply's progress posts are best effort (issue 17): with no serve to take them, every
// line is still printed, the failure is said once, and the run's end does not wait long;
// a state serve never ran with (no api-token) posts nothing and says nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveProgress } from './progress.ts';

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
    const q = serveProgress({ stateDir: join(dir, 'none'), server: `http://127.0.0.1:${port}`, print: () => {}, warn: (l) => quiet.push(l) });
    q.say('line', 'x');
    await q.end(true, 'apply: done: none');
    assert.deepEqual(quiet, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
