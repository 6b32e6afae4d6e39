// Group commit for events (src/store/sqlite.ts): transitions and discovered MACs of one
// loop turn share a transaction. kill -9 must lose nothing that was acknowledged: every
// event a listener was told of (SSE, the console) and everything recorded before a
// durable() that resolved is in the database when it is opened again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '../src/store/sqlite.ts';

const CHILD = fileURLToPath(new URL('./helpers/group-commit-child.ts', import.meta.url));

test('kill -9 mid-storm: every event told to listeners and everything before a resolved durable() survive', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-group-commit-'));
  try {
    const db = join(dir, 'serve.db');
    const child = spawn(process.execPath, [CHILD, db, '200'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Until well into the storm (events told and syncs resolved), then pull the plug.
    const t0 = Date.now();
    while (((out.match(/"told"/g)?.length ?? 0) < 400 || (out.match(/"durable"/g)?.length ?? 0) < 20) && Date.now() - t0 < 30_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    await exited;
    assert.equal(child.signalCode, 'SIGKILL', `the child ended by itself: ${err}`);

    const lines = out.split('\n').filter((l) => l.endsWith('}')).map((l) => JSON.parse(l) as { told?: number; machine?: string; to?: string; durable?: number; macs?: string[]; moved?: string[] });
    const told = lines.filter((l) => l.told !== undefined);
    const synced = lines.filter((l) => l.durable !== undefined);
    assert.ok(told.length >= 400 && synced.length >= 20, `too little happened before the kill: ${told.length} events told, ${synced.length} syncs\n${err}`);

    const store = new SqliteStore(db);
    try {
      const events = new Map(store.events({ limit: 1_000_000 }).map((e) => [e.id, e]));
      for (const t of told) {
        const e = events.get(t.told!);
        assert.ok(e, `event ${t.told} (${t.machine} → ${t.to}) was told to a listener but is gone`);
        assert.equal(`${e.machine}:${e.to}`, `${t.machine}:${t.to}`);
      }
      const seen = new Set(store.discovered().map((d) => d.mac));
      const moves = new Set([...events.values()].map((e) => `${e.machine}:${e.to}`));
      for (const s of synced) {
        for (const m of s.macs!) assert.ok(seen.has(m), `${m} was recorded before durable() #${s.durable} resolved, but is gone`);
        for (const m of s.moved!) assert.ok(moves.has(m), `${m} was recorded before durable() #${s.durable} resolved, but is gone`);
      }
      // and the state agrees with the newest surviving event of each machine
      for (const r of store.list()) {
        const last = [...events.values()].filter((e) => e.machine === r.name).at(-1);
        assert.equal(r.state, last?.to, `${r.name}: state ${r.state}, newest event ${last?.to}`);
      }
    } finally {
      store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
