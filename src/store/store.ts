// The one storage interface Slipway's long-running parts use (Matchbox's idea): machine
// states, their event history, and machines discovered on the network. The embedded
// backend (sqlite.ts) is the default; a distributed one (etcd) can implement the same
// interface without touching the rest.
import type { State } from './states.ts';

export interface MachineRecord {
  name: string;
  state: State;
  /** why it failed, for `failed` */
  reason?: string;
  /** ISO time the machine entered its state */
  since: string;
}

export interface StoredEvent {
  id: number;
  machine: string;
  from: State;
  to: State;
  /** ISO time */
  at: string;
  /** who saw it: dhcp, tftp, http, machine, operator, timeout */
  source: string;
  reason?: string;
  /** extra facts: failing unit, last log lines, addresses */
  detail?: Record<string, unknown>;
}

export interface Discovered {
  mac: string;
  firstSeen: string;
  lastSeen: string;
  via: string;
  detail?: Record<string, unknown>;
}

/** A machine's hardware facts as it reported them (enlistment or its installed report; issue 18). */
export interface StoredFacts {
  mac: string;
  /** the cluster file's machine, when a known machine reported them */
  machine?: string;
  /** ISO time they were stored */
  at: string;
  /** enlist or installed */
  source: string;
  facts: Record<string, unknown>;
}

/** a MAC's facts reports kept (newest first); older ones are forgotten as new ones come */
export const FACTS_HISTORY = 20;

export interface Store {
  get(name: string): MachineRecord | undefined;
  list(): MachineRecord[];
  /**
   * Move `name` to `to` if `allowed(current)` says so, recording the event, atomically:
   * either both the state and its event are stored, or neither (a crash of the process
   * loses only what commit() has not covered yet, which happens by the end of this loop
   * turn; a power cut only what durable() has not covered yet). Returns the
   * event, or undefined when the move was not allowed.
   */
  transition(name: string, to: State, source: string, allowed: (from: State) => boolean, extra?: { reason?: string; detail?: Record<string, unknown>; at?: string }): StoredEvent | undefined;
  /** events in id order, optionally for one machine and/or after an id; at most `limit` (default 10,000) */
  events(opts?: { machine?: string; afterId?: number; limit?: number }): StoredEvent[];
  /**
   * A machine's newest events before `beforeId` (all when unset), in id order: at most
   * `limit`, and no more than fit in `maxDetailBytes` of stored detail (always at least
   * one), so what an API response carries is bounded. `more`: older ones exist.
   * `withDetail: false` leaves every detail out (and unread).
   */
  recentEvents(machine: string, opts: { beforeId?: number; limit: number; maxDetailBytes: number; withDetail?: boolean }): { events: StoredEvent[]; more: boolean };
  /**
   * Accept a machine report's sequence number only if it is higher than every one that
   * machine used before (replay protection); atomic.
   */
  acceptSeq(machine: string, seq: number): boolean;
  /** forget a machine's report sequence (reprovisioned: its new install counts from 1) */
  resetSeq(machine: string): void;
  /**
   * Resolves once every write so far would survive a power cut (synced off the caller's
   * thread; concurrent callers share one sync). Call it before acknowledging a write.
   * Rejects, from then on, once a sync failed.
   */
  durable(): Promise<void>;
  /**
   * Commits the writes of this loop turn now (they would be at its end): transitions and
   * discovered MACs share one transaction per turn. After it, they survive kill -9.
   */
  commit(): void;
  /** the SSH host key (public line) pinned for a machine at install, if any */
  hostKey(machine: string): string | undefined;
  /**
   * Pins `key` as the machine's SSH host key unless one is pinned already; returns the
   * pinned one (so a caller sees a mismatch). `slipway apply` trusts only the pinned key.
   */
  pinHostKey(machine: string, key: string): string;
  /** forget a machine's host key (reprovisioned: its new disk makes new keys) */
  forgetHostKey(machine: string): void;
  recordDiscovered(mac: string, via: string, detail?: Record<string, unknown>): void;
  /** unknown MACs seen at or after `seenSince` (ISO time), by MAC, after the MAC `after`; at most `limit` */
  discovered(opts?: { seenSince?: string; after?: string; limit?: number }): Discovered[];
  /** forget MACs last seen before `seenBefore` (ISO time), then all but the `keep` seen most recently; returns how many went */
  pruneDiscovered(seenBefore: string, keep: number): number;
  /**
   * An enlistment token for a MAC's network boot, stored as its hash (never the token):
   * it replaces the MAC's earlier one (a token per boot); tokens issued before
   * `expireBefore`, and all but the `keep` newest, are forgotten.
   */
  issueEnlistToken(mac: string, hash: string, opts: { expireBefore: string; keep: number }): void;
  /** the MAC a token's hash was issued to, if it was issued at or after `issuedSince` and is unused */
  enlistTokenMac(hash: string, issuedSince: string): string | undefined;
  /**
   * Stores a MAC's facts: its newest, and one more report in its history (of which the
   * oldest beyond FACTS_HISTORY are forgotten), together. With `useToken`, only if that token
   * hash is still unused for this MAC, which it uses up in the same transaction
   * (undefined: used already, nothing stored).
   */
  recordFacts(mac: string, facts: Record<string, unknown>, source: string, opts?: { machine?: string; useToken?: string }): StoredFacts | undefined;
  /**
   * Bounds facts of MACs no machine claims (enlisted, never installed as one of the file's):
   * anyone on the segment can make up MACs and enlist them. Keeps the `keep` newest of them
   * and every MAC in `protect` (the cluster file's, adopted before they installed); the
   * rest go with their history. Returns how many MACs went.
   */
  pruneFacts(keep: number, protect: Iterable<string>): number;
  /** the MAC's newest facts */
  facts(mac: string): StoredFacts | undefined;
  /** the MAC's facts as reported, each with its time and source, newest first: the last FACTS_HISTORY (at most `limit`) */
  factsHistory(mac: string, limit?: number): StoredFacts[];
  close(): void;
}
