// Turns what the servers see and what machines report into state transitions, kept in
// the store, and tells listeners (SSE, the terminal view) about each one as it happens.
import { EventEmitter } from 'node:events';
import type { Store, StoredEvent, MachineRecord } from '../store/store.ts';
import { canMove, isInstalled, isTerminal, reached } from './states.ts';
import type { State } from '../store/states.ts';

/** events nobody awaited durable() for are synced (power-safe) within this long */
const SYNC_MS = 1000;

export interface LifecycleOptions {
  /** a machine stuck longer than this in one (non-terminal) state fails with "timeout in <state>"; 0 = never */
  timeoutSeconds?: number;
  now?: () => number;
}

export class Lifecycle extends EventEmitter<{ event: [StoredEvent] }> {
  readonly store: Store;
  private machines: Set<string>;
  private readonly opts: LifecycleOptions;
  /** events recorded this loop turn, told to listeners once committed */
  private unsent: StoredEvent[] = [];
  /**
   * Each machine's state as this Lifecycle last read or wrote it: every DHCP packet asks
   * for it (the boot action) and most observations (a REQUEST after its DISCOVER) move
   * nothing, so neither needs the database. This Lifecycle is its store's only writer of
   * states (src/store has no other caller of transition()), and the store still checks
   * every move it is asked for against its own row.
   */
  private readonly states = new Map<string, State>();
  private syncTimer?: NodeJS.Timeout;

  constructor(store: Store, machineNames: string[], opts: LifecycleOptions = {}) {
    super();
    this.store = store;
    this.machines = new Set(machineNames);
    this.opts = opts;
  }

  /** The cluster file changed (SIGHUP): machines added or removed; history is kept. */
  setMachines(names: string[]): void {
    this.machines = new Set(names);
  }

  has(name: string): boolean {
    return this.machines.has(name);
  }

  state(name: string): State {
    let s = this.states.get(name);
    if (s === undefined) this.states.set(name, (s = this.store.get(name)?.state ?? 'unknown'));
    return s;
  }

  /** How far the machine got: its state, or for `failed` the state it failed in (states.ts reached). */
  reached(name: string): State {
    const s = this.state(name);
    return s === 'failed' ? reached(this.store, name) : s;
  }

  /** Every machine of the cluster file, including those never seen (state unknown). */
  list(): MachineRecord[] {
    const known = new Map(this.store.list().map((r) => [r.name, r]));
    return [...this.machines].map((n) => known.get(n) ?? { name: n, state: 'unknown' as State, since: '' });
  }

  /** The servers or the machine saw progress: move forward if that is forward. */
  observe(name: string, to: State, source: string, extra: { reason?: string; detail?: Record<string, unknown> } = {}): StoredEvent | undefined {
    if (!this.machines.has(name)) return undefined;
    if (!canMove(this.state(name), to)) return undefined;
    const ev = this.store.transition(name, to, source, (from) => canMove(from, to), extra);
    this.states.delete(name); // read again when next asked (the move may have been refused)
    if (ev) {
      this.states.set(name, ev.to);
      this.tell(ev);
    }
    return ev;
  }

  /**
   * Listeners (SSE clients, the console) hear of an event at the end of this loop turn,
   * after the store committed it with the turn's others: what they are shown survives
   * kill -9, and whoever recorded it (a DHCP answer) never waits on them. Whoever
   * acknowledges an event (the report API) awaits store.durable() itself, and a failed
   * sync fails that from then on; the rest is made power-safe within SYNC_MS, one sync
   * for all (syncing after every turn kept the disk busy beside the DHCP leases' own
   * fsync before each ACK, and that doubled their wait in a storm).
   */
  private tell(ev: StoredEvent): void {
    this.unsent.push(ev);
    if (this.unsent.length > 1) return;
    setImmediate(() => {
      this.store.commit();
      this.syncTimer ??= setTimeout(() => {
        this.syncTimer = undefined;
        void this.store.durable().catch(() => {});
      }, SYNC_MS).unref(); // at exit, closing the store checkpoints and syncs it
      for (const e of this.unsent.splice(0)) this.emit('event', e);
    });
  }

  fail(name: string, reason: string, source: string, detail?: Record<string, unknown>): StoredEvent | undefined {
    return this.observe(name, 'failed', source, { reason, detail });
  }

  /**
   * The operator's way back: the next network boot installs the machine again. Its report
   * seq restarts (a fresh disk's counter starts at 1); the old install's reports cannot be
   * replayed because serve gives the machine a new token first (ServeContext.reprovision).
   */
  reprovision(name: string, by = 'operator'): StoredEvent | undefined {
    if (!this.machines.has(name)) return undefined;
    const ev = this.store.transition(name, 'unknown', by, () => true, { reason: 'reprovision' });
    this.states.set(name, 'unknown');
    this.store.resetSeq(name);
    this.store.forgetHostKey(name); // its new disk makes new host keys, pinned at its next install
    if (ev) this.tell(ev);
    return ev;
  }

  /** install unless the machine already installed (or failed): then it boots from its own disk. */
  bootAction(name: string): 'install' | 'local' {
    const s = this.state(name);
    // A failed machine is not installed again by itself: its disk may hold a working
    // system with one failing unit, or the installer's wiped disk; either way the
    // operator decides, with reprovision (no reinstall loop, no surprise wipe).
    return isInstalled(s) || s === 'failed' ? 'local' : 'install';
  }

  /** Why a machine is told to boot locally, for the loader's screen (never machine-reported text). */
  localReason(name: string): string {
    return this.state(name) === 'failed' ? `${name} failed: reprovision it to install again` : `${name} is installed`;
  }

  /** Fail every machine stuck too long in a non-terminal, seen state. Returns what it failed. */
  checkTimeouts(): StoredEvent[] {
    const limit = this.opts.timeoutSeconds ?? 0;
    if (!limit) return [];
    const now = this.opts.now?.() ?? Date.now();
    const out: StoredEvent[] = [];
    for (const r of this.store.list()) {
      if (isTerminal(r.state) || r.state === 'unknown' || !this.machines.has(r.name)) continue;
      if (now - Date.parse(r.since) > limit * 1000) {
        const ev = this.fail(r.name, `timeout in ${r.state}`, 'timeout', { limitSeconds: limit });
        if (ev) out.push(ev);
      }
    }
    return out;
  }
}
