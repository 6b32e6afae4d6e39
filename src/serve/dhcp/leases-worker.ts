// The lease database's own thread. node:sqlite is synchronous, and a commit with
// synchronous=FULL waits for the disk (2 ms typically here, 10+ ms under load): on the
// server's thread that would stop every DISCOVER behind it. Here it only delays the
// ACKs whose bindings it carries, and the server keeps answering meanwhile.
//
// Messages (one at a time, in order; each answered with {id, ok, …}):
//   {op: 'open'}            lock, create/migrate the table, return every row
//   {op: 'write', changes}  one transaction: [ip, row | null][] (null deletes)
//   {op: 'close'}           close the database
import { parentPort, workerData } from 'node:worker_threads';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { makeDbPrivate } from '../../store/sqlite.ts';

export const SCHEMA_VERSION = 1;

/** A row as it crosses threads: [ip as 32-bit number, mac or null, state, expires ms] */
export type StoredRow = [number, string | null, 'bound' | 'declined', number];
export type Change = [number, StoredRow | null];

export type WorkerRequest = { id: number } & ({ op: 'open' } | { op: 'write'; changes: Change[] } | { op: 'close' });
export type WorkerReply = { id: number } & ({ ok: true; rows?: StoredRow[] } | { ok: false; error: string });

let db: DatabaseSync | undefined;
let del: StatementSync | undefined;
let put: StatementSync | undefined;

/** Run fn in one IMMEDIATE transaction (it takes the write lock at once). */
function transaction(d: DatabaseSync, fn: () => void): void {
  d.exec('BEGIN IMMEDIATE');
  try {
    fn();
    d.exec('COMMIT');
  } catch (e) {
    if (d.isTransaction) d.exec('ROLLBACK');
    throw e;
  }
}

function open(file: string): StoredRow[] {
  mkdirSync(dirname(file), { recursive: true });
  makeDbPrivate(file); // 0600 before the first byte, like the rest of the state directory
  const d = new DatabaseSync(file);
  try {
    // EXCLUSIVE: a second server on the same state directory fails here instead of
    // handing out the same addresses. WAL: a kill -9 at any instant leaves a consistent file.
    d.exec('PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;');
    const version = Number(d.prepare('PRAGMA user_version').get()?.user_version ?? 0);
    if (version > SCHEMA_VERSION) throw new Error(`lease database schema ${version} is newer than this slipway (${SCHEMA_VERSION})`);
    transaction(d, () =>
      d.exec(`
        CREATE TABLE IF NOT EXISTS leases (
          ip INTEGER PRIMARY KEY,          -- the address as a 32-bit number: held at most once
          mac TEXT UNIQUE,                 -- at most one address per MAC; NULL when declined
          state TEXT NOT NULL CHECK (state IN ('bound', 'declined')),
          expires INTEGER NOT NULL         -- ms since the epoch
        ) STRICT;
        PRAGMA user_version = ${SCHEMA_VERSION};`),
    );
  } catch (e) {
    d.close();
    const msg = (e as Error).message;
    throw new Error(/locked|busy/i.test(msg) ? `${file} is in use by another process (is another slipway serve running?)` : `${file}: ${msg}`);
  }
  db = d;
  del = d.prepare('DELETE FROM leases WHERE ip = ?');
  put = d.prepare('INSERT INTO leases (ip, mac, state, expires) VALUES (?, ?, ?, ?)');
  return d.prepare('SELECT ip, mac, state, expires FROM leases').all().map((r) => [Number(r.ip), r.mac === null ? null : String(r.mac), r.state === 'declined' ? 'declined' : 'bound', Number(r.expires)]);
}

/**
 * Delete every changed address, then insert the current rows: the caller's model is
 * consistent (one MAC per address, one address per MAC), so no constraint can fire
 * midway whatever order the changes came in.
 */
function write(changes: Change[]): void {
  if (!db || !del || !put) throw new Error('lease database is not open');
  const [d, dl, pt] = [db, del, put];
  transaction(d, () => {
    for (const [ip] of changes) dl.run(ip);
    for (const [, row] of changes) if (row) pt.run(...row);
  });
}

function handle(m: WorkerRequest): WorkerReply {
  try {
    if (m.op === 'open') return { id: m.id, ok: true, rows: open((workerData as { file: string }).file) };
    if (m.op === 'write') write(m.changes);
    else {
      db?.close();
      db = undefined;
    }
    return { id: m.id, ok: true };
  } catch (e) {
    return { id: m.id, ok: false, error: (e as Error).message };
  }
}

parentPort?.on('message', (m: WorkerRequest) => parentPort!.postMessage(handle(m)));
