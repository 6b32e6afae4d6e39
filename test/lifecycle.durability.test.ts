// kill -9 while 500 machines report concurrently; after a restart no acknowledged event
// is lost and every machine's state is the last one it was acknowledged for (or, for a
// report the server committed but could not answer before dying, exactly the next one).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from './helpers/serve.ts';
import { bigClusterFile } from './helpers/spec.ts';

const STORM = fileURLToPath(new URL('./helpers/report-storm.ts', import.meta.url));
const ORDER = ['unknown', 'installing', 'installed', 'joined', 'ready'];
let lab: Lab;
after(async () => lab?.close());

test('kill -9 during a report storm loses no acknowledged event', { timeout: 180_000 }, async () => {
  lab = Lab.create(bigClusterFile(500));
  await lab.start(['--log-level', 'warn']);
  const tokens = join(lab.state, 'tokens.json');
  const storm = lab.hub.spawn(process.execPath, [STORM, 'http://10.20.30.2:8080', tokens, '100']);
  let out = '';
  storm.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  storm.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  // Let a good part of the storm through, then pull the plug.
  await lab.hub.waitFor('300 acknowledged reports', () => out.split('\n').filter((l) => l.includes('"status":200')).length >= 300, 60_000, 20);
  lab.serve!.kill('SIGKILL');
  await new Promise<void>((resolve) => (storm.exitCode !== null ? resolve() : storm.once('exit', () => resolve())));
  await lab.stop();

  const acked = new Map<string, { seq: number; state: string }>();
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as { name: string; seq: number; state: string; status: number; body?: string };
    assert.equal(r.status, 200, `a report was refused before the crash: ${line}`);
    const prev = acked.get(r.name);
    if (!prev || r.seq > prev.seq) acked.set(r.name, { seq: r.seq, state: r.state });
  }
  assert.ok(acked.size > 50, `only ${acked.size} machines got an acknowledgement`);

  await lab.start(['--log-level', 'warn']);
  const token = lab.apiToken();
  const res = await lab.hub.exec('curl', ['-fsS', '-m', '20', '-H', `Authorization: Bearer ${token}`, 'http://10.20.30.2:8080/api/v1/machines'], { timeoutMs: 30_000 });
  assert.equal(res.code, 0, res.out);
  const states = new Map((JSON.parse(res.stdout) as { machines: { name: string; state: string }[] }).machines.map((m) => [m.name, m.state]));
  let ahead = 0;
  for (const [name, a] of acked) {
    const now = states.get(name)!;
    const diff = ORDER.indexOf(now) - ORDER.indexOf(a.state);
    assert.ok(diff === 0 || diff === 1, `${name}: acknowledged ${a.state} (seq ${a.seq}) but the server says ${now}`);
    if (diff === 1) ahead++;
  }
  // Only reports in flight at the kill can be committed-but-unanswered: at most one per worker.
  assert.ok(ahead <= 100, `${ahead} machines are ahead of their acknowledgement`);
  // The store's own journal agrees: every acknowledged seq has its event.
  const ev = await lab.hub.exec('curl', ['-fsS', '-m', '20', '-N', '-H', `Authorization: Bearer ${token}`, '--max-time', '3', 'http://10.20.30.2:8080/api/v1/events?after=0'], { timeoutMs: 30_000 });
  const seqs = new Set<string>();
  for (const m of ev.stdout.matchAll(/^data: (.*)$/gm)) {
    const e = JSON.parse(m[1]!) as { machine: string; detail?: { seq?: number } };
    if (e.detail?.seq) seqs.add(`${e.machine}#${e.detail.seq}`);
  }
  for (const [name, a] of acked) for (let s = 1; s <= a.seq; s++) assert.ok(seqs.has(`${name}#${s}`), `${name} seq ${s} was acknowledged but its event is gone`);
  assert.ok(readFileSync(join(lab.state, 'serve.db')).length > 0);
});
