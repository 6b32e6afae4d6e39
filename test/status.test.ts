// `slipway status` against a running serve: the table, exit 1 while not all are ready,
// and --watch following live until every machine is ready (exit 0).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from './helpers/serve.ts';
import { BIN } from './helpers/cli.ts';

let lab: Lab;
after(async () => lab?.close());

const statusArgs = () => [BIN, 'status', '-f', lab.file, '--state', lab.state];

test('status prints every machine, and --watch follows until all are ready', { timeout: 120_000 }, async () => {
  lab = Lab.create();
  await lab.start();
  const once = await lab.hub.exec(process.execPath, statusArgs(), { timeoutMs: 30_000 });
  assert.equal(once.code, 1, `not all ready: exit 1\n${once.out}`);
  assert.match(once.stdout, /^NAME +MAC +IP +ROLES +STATE +ELAPSED +LAST EVENT$/m);
  for (const n of ['cp1', 'cp2', 'cp3', 'w1', 'w2']) assert.match(once.stdout, new RegExp(`^${n} .* unknown `, 'm'));

  const child = lab.hub.spawn(process.execPath, [...statusArgs(), '--watch', '--timeout', '60']);
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.resume();
  const watch = new Promise<{ code: number | null; out: string; stdout: string }>((resolve) => child.once('exit', (code) => resolve({ code, out: stdout, stdout })));
  // the reports go once the watch follows the event stream (bounded wait)
  for (let i = 0; i < 300 && !/^following 5 machines/m.test(stdout); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(stdout, /^following 5 machines until every one is ready or failed$/m, 'the watch says when it follows');
  const tokens = (JSON.parse(readFileSync(join(lab.state, 'tokens.json'), 'utf8')) as { machineTokens: Record<string, string> }).machineTokens;
  for (const token of Object.values(tokens)) {
    for (const [i, state] of ['installed', 'ready'].entries()) {
      const r = await lab.hub.exec('curl', ['-fsS', '-m', '5', '-X', 'POST', '-H', `Authorization: Bearer ${token}`, '--data', JSON.stringify({ state, seq: i + 1 }), 'http://10.20.30.2:8080/api/v1/report']);
      assert.equal(r.code, 0, r.out);
    }
  }
  const w = await watch;
  assert.equal(w.code, 0, `all ready: exit 0\n${w.out}`);
  assert.match(w.stdout, /cp1 installed \(machine\)/, 'a line per transition when not on a terminal');
  assert.match(w.stdout, /w2 ready \(machine\)/);
  assert.match(w.stdout, /^w2 .* ready /m, 'the final table');
});
