// The embedded store: Node's built-in SQLite (no server to install), WAL journal. A
// commit is in the WAL (it survives kill -9) as soon as it returns; durable() makes every
// commit so far power-safe with an fdatasync of the WAL on libuv's thread pool, so what
// serve acknowledges survives power loss too, and no fsync ever waits on serve's thread
// (one can take hundreds of ms on a busy disk, and DHCP, TFTP and HTTP share that thread).
//
// Group commit for events: transitions and discovered MACs recorded in one turn of the
// event loop share one transaction, committed (into the WAL) at the end of that turn or
// before anything else reads that promise: commit(), durable(), close() and every other
// write. A DHCP storm then costs one commit per batch of packets, not one per packet.
// Nothing is lost that anyone was told about: an event reaches listeners only after its
// commit (Lifecycle), and whoever acknowledges one awaits durable().
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { State } from './states.ts';
import { FACTS_HISTORY, type Discovered, type MachineRecord, type Store, type StoredEvent, type StoredFacts } from './store.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS machines (
  name  TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  reason TEXT,
  since TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  machine TEXT NOT NULL,
  "from"  TEXT NOT NULL,
  "to"    TEXT NOT NULL,
  at      TEXT NOT NULL,
  source  TEXT NOT NULL,
  reason  TEXT,
  detail  TEXT
);
CREATE INDEX IF NOT EXISTS events_machine ON events(machine, id);
CREATE TABLE IF NOT EXISTS report_seq (
  machine TEXT PRIMARY KEY,
  seq     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS discovered (
  mac        TEXT PRIMARY KEY,
  first_seen TEXT NOT NULL,
  last_seen  TEXT NOT NULL,
  via        TEXT NOT NULL,
  detail     TEXT
);
CREATE INDEX IF NOT EXISTS discovered_last_seen ON discovered(last_seen);
CREATE TABLE IF NOT EXISTS enlist_tokens (
  hash   TEXT PRIMARY KEY,
  mac    TEXT NOT NULL UNIQUE,
  issued TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS facts (
  mac     TEXT PRIMARY KEY,
  machine TEXT,
  at      TEXT NOT NULL,
  source  TEXT NOT NULL,
  facts   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS facts_history (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  mac     TEXT NOT NULL,
  machine TEXT,
  at      TEXT NOT NULL,
  source  TEXT NOT NULL,
  facts   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_history_mac ON facts_history(mac, id);
CREATE TABLE IF NOT EXISTS host_keys (
  machine TEXT PRIMARY KEY,
  key     TEXT NOT NULL,
  at      TEXT NOT NULL
);
`;

/** how long unknown MACs' sightings wait in memory to be written together */
const SIGHTINGS_MS = 1000;

interface EventRow { id: number; machine: string; from: string; to: string; at: string; source: string; reason: string | null; detail: string | null }
interface MachineRow { name: string; state: string; reason: string | null; since: string }

const toEvent = (r: EventRow): StoredEvent => ({
  id: r.id, machine: r.machine, from: r.from as State, to: r.to as State, at: r.at, source: r.source,
  ...(r.reason ? { reason: r.reason } : {}),
  ...(r.detail ? { detail: JSON.parse(r.detail) as Record<string, unknown> } : {}),
});
interface FactsRow { mac: string; machine: string | null; at: string; source: string; facts: string }
const toFacts = (r: FactsRow): StoredFacts => ({ mac: r.mac, ...(r.machine ? { machine: r.machine } : {}), at: r.at, source: r.source, facts: JSON.parse(r.facts) as Record<string, unknown> });
const toMachine = (r: MachineRow): MachineRecord => ({ name: r.name, state: r.state as State, since: r.since, ...(r.reason ? { reason: r.reason } : {}) });

/**
 * A database in the state directory and its journals are 0600 like every other file
 * there: created 0600 before SQLite opens it (SQLite gives -wal/-shm the database's own
 * mode when it creates them), and tightened when an older slipway left them 0644.
 */
export function makeDbPrivate(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) if (existsSync(f)) chmodSync(f, 0o600);
}

export class SqliteStore implements Store {
  private readonly db: DatabaseSync;
  private readonly q: Record<string, StatementSync>;
  private readonly path: string;
  private wal?: FileHandle;
  /** the sync running now, and the one that will follow it for commits made meanwhile */
  private syncing?: Promise<void>;
  private next?: Promise<void>;
  /** a failed sync: data may be lost, so every later durable() fails too */
  private syncError?: Error;
  /** the open group-commit transaction's end, scheduled for the end of this loop turn */
  private batch?: NodeJS.Immediate;
  /** unknown MACs seen since the last write of them: MAC → first and last sighting */
  private sightings = new Map<string, { first: string; last: string; via: string; detail: string | null }>();
  private sightingsTimer?: NodeJS.Timeout;

  constructor(path: string) {
    this.path = path;
    if (path !== ':memory:') makeDbPrivate(path);
    this.db = new DatabaseSync(path);
    // NORMAL: SQLite syncs only at checkpoints; durable() syncs what must be power-safe.
    this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
    this.db.exec(SCHEMA);
    // A store from before the history (issue 18) has each MAC's newest facts only: they
    // become the first entry of its history, once (a MAC with a history is left alone).
    this.db.exec('INSERT INTO facts_history(mac, machine, at, source, facts) SELECT mac, machine, at, source, facts FROM facts WHERE mac NOT IN (SELECT mac FROM facts_history) ORDER BY at');
    this.q = {
      get: this.db.prepare('SELECT name, state, reason, since FROM machines WHERE name = ?'),
      list: this.db.prepare('SELECT name, state, reason, since FROM machines ORDER BY name'),
      upsert: this.db.prepare('INSERT INTO machines(name, state, reason, since) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = excluded.state, reason = excluded.reason, since = excluded.since'),
      insertEvent: this.db.prepare('INSERT INTO events(machine, "from", "to", at, source, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      acceptSeq: this.db.prepare('INSERT INTO report_seq(machine, seq) VALUES (?, ?) ON CONFLICT(machine) DO UPDATE SET seq = excluded.seq WHERE excluded.seq > report_seq.seq'),
      resetSeq: this.db.prepare('DELETE FROM report_seq WHERE machine = ?'),
      discover: this.db.prepare('INSERT INTO discovered(mac, first_seen, last_seen, via, detail) VALUES (?, ?, ?, ?, ?) ON CONFLICT(mac) DO UPDATE SET last_seen = excluded.last_seen, via = excluded.via, detail = excluded.detail'),
      discovered: this.db.prepare('SELECT mac, first_seen, last_seen, via, detail FROM discovered WHERE last_seen >= ? AND mac > ? ORDER BY mac LIMIT ?'),
      pruneOld: this.db.prepare('DELETE FROM discovered WHERE last_seen < ?'),
      pruneExtra: this.db.prepare('DELETE FROM discovered WHERE mac IN (SELECT mac FROM discovered ORDER BY last_seen DESC, mac LIMIT -1 OFFSET ?)'),
      issueToken: this.db.prepare('INSERT INTO enlist_tokens(hash, mac, issued) VALUES (?, ?, ?) ON CONFLICT(mac) DO UPDATE SET hash = excluded.hash, issued = excluded.issued'),
      pruneTokens: this.db.prepare('DELETE FROM enlist_tokens WHERE issued < ? OR hash IN (SELECT hash FROM enlist_tokens ORDER BY issued DESC LIMIT -1 OFFSET ?)'),
      token: this.db.prepare('SELECT mac FROM enlist_tokens WHERE hash = ? AND issued >= ?'),
      useToken: this.db.prepare('DELETE FROM enlist_tokens WHERE hash = ? AND mac = ?'),
      putFacts: this.db.prepare('INSERT INTO facts(mac, machine, at, source, facts) VALUES (?, ?, ?, ?, ?) ON CONFLICT(mac) DO UPDATE SET machine = excluded.machine, at = excluded.at, source = excluded.source, facts = excluded.facts'),
      facts: this.db.prepare('SELECT mac, machine, at, source, facts FROM facts WHERE mac = ?'),
      addFactsHistory: this.db.prepare('INSERT INTO facts_history(mac, machine, at, source, facts) VALUES (?, ?, ?, ?, ?)'),
      pruneFactsHistory: this.db.prepare('DELETE FROM facts_history WHERE mac = ? AND id NOT IN (SELECT id FROM facts_history WHERE mac = ? ORDER BY id DESC LIMIT ?)'),
      pruneFacts: this.db.prepare(
        // newest by their last report's id (times tie within a millisecond)
        'DELETE FROM facts WHERE machine IS NULL AND mac NOT IN (SELECT value FROM json_each(?)) AND mac NOT IN ' +
          '(SELECT h.mac FROM facts_history h JOIN facts f ON f.mac = h.mac WHERE f.machine IS NULL GROUP BY h.mac ORDER BY max(h.id) DESC LIMIT ?)',
      ),
      pruneOrphanHistory: this.db.prepare('DELETE FROM facts_history WHERE mac NOT IN (SELECT mac FROM facts)'),
      factsHistory: this.db.prepare('SELECT mac, machine, at, source, facts FROM facts_history WHERE mac = ? ORDER BY id DESC LIMIT ?'),
      hostKey: this.db.prepare('SELECT key FROM host_keys WHERE machine = ?'),
      pinHostKey: this.db.prepare('INSERT INTO host_keys(machine, key, at) VALUES (?, ?, ?) ON CONFLICT(machine) DO NOTHING'),
      forgetHostKey: this.db.prepare('DELETE FROM host_keys WHERE machine = ?'),
      recentSizes: this.db.prepare('SELECT id, length(detail) AS size FROM events WHERE machine = ? AND id < ? ORDER BY id DESC LIMIT ?'),
      eventsFrom: this.db.prepare('SELECT id, machine, "from", "to", at, source, reason, detail FROM events WHERE machine = ? AND id >= ? AND id < ? ORDER BY id'),
      eventsFromBare: this.db.prepare('SELECT id, machine, "from", "to", at, source, reason, NULL AS detail FROM events WHERE machine = ? AND id >= ? AND id < ? ORDER BY id'),
    };
  }

  get(name: string): MachineRecord | undefined {
    const r = this.q.get!.get(name) as MachineRow | undefined;
    return r ? toMachine(r) : undefined;
  }

  list(): MachineRecord[] {
    this.commit(); // what the API shows is committed
    return (this.q.list!.all() as unknown as MachineRow[]).map(toMachine);
  }

  transition(name: string, to: State, source: string, allowed: (from: State) => boolean, extra: { reason?: string; detail?: Record<string, unknown>; at?: string } = {}): StoredEvent | undefined {
    const at = extra.at ?? new Date().toISOString();
    // In the batch's transaction (BEGIN IMMEDIATE: the write lock is held), so the read of
    // the current state and the write are one unit: two reports cannot both move the
    // machine from the same state. A savepoint undoes this move alone if it fails half-way.
    this.openBatch();
    const from = this.get(name)?.state ?? 'unknown';
    if (!allowed(from)) return undefined;
    this.db.exec('SAVEPOINT move');
    try {
      const detail = extra.detail ? JSON.stringify(extra.detail) : null;
      const res = this.q.insertEvent!.run(name, from, to, at, source, extra.reason ?? null, detail);
      this.q.upsert!.run(name, to, to === 'failed' ? (extra.reason ?? null) : null, at);
      this.db.exec('RELEASE move');
      return { id: Number(res.lastInsertRowid), machine: name, from, to, at, source, ...(extra.reason ? { reason: extra.reason } : {}), ...(extra.detail ? { detail: extra.detail } : {}) };
    } catch (e) {
      this.db.exec('ROLLBACK TO move; RELEASE move');
      throw e;
    }
  }

  /** Starts the batch's transaction unless one is open; it commits at the end of this loop turn. */
  private openBatch(): void {
    if (this.batch) return;
    this.db.exec('BEGIN IMMEDIATE');
    this.batch = setImmediate(() => this.commit());
  }

  /** Commits what this loop turn recorded (into the WAL: it survives kill -9 from here on). */
  commit(): void {
    if (!this.db.isOpen) return; // closed: close() committed everything
    if (this.sightings.size) this.writeSightings();
    if (!this.batch) return;
    clearImmediate(this.batch);
    this.batch = undefined;
    this.db.exec('COMMIT');
  }

  events(opts: { machine?: string; afterId?: number; limit?: number } = {}): StoredEvent[] {
    this.commit(); // what the API shows is committed
    const where: string[] = ['id > ?'];
    const args: (string | number)[] = [opts.afterId ?? 0];
    if (opts.machine) {
      where.push('machine = ?');
      args.push(opts.machine);
    }
    const sql = `SELECT id, machine, "from", "to", at, source, reason, detail FROM events WHERE ${where.join(' AND ')} ORDER BY id LIMIT ?`;
    return (this.db.prepare(sql).all(...args, opts.limit ?? 10_000) as unknown as EventRow[]).map(toEvent);
  }

  recentEvents(machine: string, opts: { beforeId?: number; limit: number; maxDetailBytes: number; withDetail?: boolean }): { events: StoredEvent[]; more: boolean } {
    this.commit(); // what the API shows is committed
    const before = opts.beforeId ?? Number.MAX_SAFE_INTEGER;
    // Sizes first (no detail read), newest first, one more than asked to tell whether older ones exist.
    const sizes = this.q.recentSizes!.all(machine, before, opts.limit + 1) as unknown as { id: number; size: number | null }[];
    let bytes = 0;
    let n = 0;
    for (const r of sizes.slice(0, opts.limit)) {
      if (opts.withDetail !== false) bytes += r.size ?? 0;
      if (n > 0 && bytes > opts.maxDetailBytes) break;
      n++;
    }
    if (n === 0) return { events: [], more: false };
    const events = ((opts.withDetail === false ? this.q.eventsFromBare! : this.q.eventsFrom!).all(machine, sizes[n - 1]!.id, before) as unknown as EventRow[]).map(toEvent);
    return { events, more: sizes.length > n };
  }

  acceptSeq(machine: string, seq: number): boolean {
    this.commit(); // its own commit, as before: the batch goes first, in order
    return Number(this.q.acceptSeq!.run(machine, seq).changes) === 1;
  }

  durable(): Promise<void> {
    this.commit();
    if (this.path === ':memory:' || !this.db.isOpen) return Promise.resolve();
    if (this.syncError) return Promise.reject(this.syncError);
    // Group commit: a sync already running may have started before the caller's commit,
    // so callers wait for the next one, which all who arrive meanwhile share.
    if (!this.syncing) return (this.syncing = this.sync().finally(() => (this.syncing = undefined)));
    this.next ??= this.syncing.catch(() => {}).then(() => {
      this.next = undefined;
      return this.durable();
    });
    return this.next;
  }

  private async sync(): Promise<void> {
    try {
      // The WAL keeps its inode while the database is open (a checkpoint rewinds it, never
      // replaces it), so one handle serves every sync; fsync works on a read-only one.
      this.wal ??= await open(`${this.path}-wal`, 'r');
      await this.wal.datasync();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !this.wal) return; // no WAL: nothing written yet
      this.syncError = new Error(`${this.path}: could not make the store durable (${(e as Error).message}); restart serve`);
      throw this.syncError;
    }
  }

  resetSeq(machine: string): void {
    this.commit(); // its own commit, as before: the batch goes first, in order
    this.q.resetSeq!.run(machine);
  }

  hostKey(machine: string): string | undefined {
    return (this.q.hostKey!.get(machine) as { key: string } | undefined)?.key;
  }

  pinHostKey(machine: string, key: string): string {
    this.commit(); // its own commit, as before: the batch goes first, in order
    // One statement: the first key wins, whatever arrives at the same time.
    this.q.pinHostKey!.run(machine, key, new Date().toISOString());
    return this.hostKey(machine)!;
  }

  forgetHostKey(machine: string): void {
    this.commit(); // its own commit, as before: the batch goes first, in order
    this.q.forgetHostKey!.run(machine);
  }

  /**
   * Sightings are kept in memory and written together at most SIGHTINGS_MS later (or at
   * the next commit(): durable(), any read the API makes, any other write, close()): a
   * PXE client's DISCOVER and REQUEST then cost one row write, not two, and a storm of
   * unknown MACs one transaction a second. Nobody is told of a sighting before it is
   * committed; kill -9 loses at most the last second of them.
   */
  recordDiscovered(mac: string, via: string, detail?: Record<string, unknown>): void {
    const now = new Date().toISOString();
    this.sightings.set(mac, { first: this.sightings.get(mac)?.first ?? now, last: now, via, detail: detail ? JSON.stringify(detail) : null });
    this.sightingsTimer ??= setTimeout(() => this.commit(), SIGHTINGS_MS);
  }

  private writeSightings(): void {
    clearTimeout(this.sightingsTimer);
    this.sightingsTimer = undefined;
    this.openBatch();
    // first_seen is kept by the upsert for a MAC already stored
    for (const [mac, s] of this.sightings) this.q.discover!.run(mac, s.first, s.last, s.via, s.detail);
    this.sightings.clear();
  }

  discovered(opts: { seenSince?: string; after?: string; limit?: number } = {}): Discovered[] {
    this.commit(); // what the API shows is committed
    return (this.q.discovered!.all(opts.seenSince ?? '', opts.after ?? '', opts.limit ?? -1) as unknown as { mac: string; first_seen: string; last_seen: string; via: string; detail: string | null }[]).map((r) => ({
      mac: r.mac, firstSeen: r.first_seen, lastSeen: r.last_seen, via: r.via, ...(r.detail ? { detail: JSON.parse(r.detail) as Record<string, unknown> } : {}),
    }));
  }

  pruneDiscovered(seenBefore: string, keep: number): number {
    this.commit(); // its own commit, as before: the batch goes first, in order
    return Number(this.q.pruneOld!.run(seenBefore).changes) + Number(this.q.pruneExtra!.run(keep).changes);
  }

  issueEnlistToken(mac: string, hash: string, opts: { expireBefore: string; keep: number }): void {
    this.commit(); // its own commit, as before: the batch goes first, in order
    this.q.issueToken!.run(hash, mac, new Date().toISOString());
    this.q.pruneTokens!.run(opts.expireBefore, opts.keep);
  }

  enlistTokenMac(hash: string, issuedSince: string): string | undefined {
    return (this.q.token!.get(hash, issuedSince) as { mac: string } | undefined)?.mac;
  }

  recordFacts(mac: string, facts: Record<string, unknown>, source: string, opts: { machine?: string; useToken?: string } = {}): StoredFacts | undefined {
    const at = new Date().toISOString();
    // the token used and the facts stored together, or neither
    return this.ownTransaction(() => {
      // single use: whoever deletes the token's row first stores; a second use stores nothing
      if (opts.useToken !== undefined && Number(this.q.useToken!.run(opts.useToken, mac).changes) !== 1) return undefined;
      const text = JSON.stringify(facts);
      this.q.putFacts!.run(mac, opts.machine ?? null, at, source, text);
      this.q.addFactsHistory!.run(mac, opts.machine ?? null, at, source, text);
      this.q.pruneFactsHistory!.run(mac, mac, FACTS_HISTORY);
      return { mac, ...(opts.machine ? { machine: opts.machine } : {}), at, source, facts };
    });
  }

  pruneFacts(keep: number, protect: Iterable<string>): number {
    // a MAC's facts and their history go together
    return this.ownTransaction(() => {
      const gone = Number(this.q.pruneFacts!.run(JSON.stringify([...protect]), keep).changes);
      if (gone) this.q.pruneOrphanHistory!.run();
      return gone;
    });
  }

  /** `f` in a transaction of its own, after the batch's: all it writes is committed, or none. */
  private ownTransaction<T>(f: () => T): T {
    this.commit();
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const r = f();
      this.db.exec('COMMIT');
      return r;
    } catch (e) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw e;
    }
  }

  facts(mac: string): StoredFacts | undefined {
    const r = this.q.facts!.get(mac) as FactsRow | undefined;
    return r ? toFacts(r) : undefined;
  }

  factsHistory(mac: string, limit = FACTS_HISTORY): StoredFacts[] {
    return (this.q.factsHistory!.all(mac, Math.max(0, Math.min(limit, FACTS_HISTORY))) as unknown as FactsRow[]).map(toFacts);
  }

  close(): void {
    if (this.db.isOpen) this.commit();
    void this.wal?.close().catch(() => {});
    this.wal = undefined;
    if (this.db.isOpen) this.db.close();
  }
}
