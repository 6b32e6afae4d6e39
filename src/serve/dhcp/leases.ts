// Who holds which address. The DHCP policy asks this narrow interface and nothing else,
// so the backend can be swapped (memory for tests and proxy mode, SQLite in the state
// directory for `slipway serve`).
//
// Invariants, whatever the backend:
//   - an address is held by at most one MAC (the SQLite table's primary key is the
//     address) and a MAC holds at most one address (UNIQUE on mac);
//   - a reservation (a machine of the cluster file) always wins: binding it evicts
//     whoever held the address, and pool allocation never hands out a reserved address
//     (the caller's `exclude` says which those are);
//   - an expired lease keeps its MAC until the address is needed by someone else, so a
//     returning client gets its old address back (RFC 2131 §4.3.1), and never-used
//     addresses are handed out before expired ones.
//
// Offers are promises of seconds and live in memory only: losing them in a crash costs a
// client one retry. Bindings are what a client configures its interface with, so
// `flush()` makes them durable and the server awaits it before any ACK leaves; one flush
// covers every ACK decided meanwhile (group commit), so a storm costs one fsync per
// batch, not per client. Reads never touch the disk: the model lives in memory, loaded
// at open.
import { Worker } from 'node:worker_threads';
import type { Change, WorkerReply, WorkerRequest } from './leases-worker.ts';
import { formatIp } from '../../lib/ipv4.ts';
import { parseIp } from '../../lib/ipv4.ts';

export type LeaseState = 'offered' | 'bound' | 'declined';

export interface Lease {
  ip: string;
  /** undefined for a declined address: some unknown host answers ARP for it */
  mac?: string;
  state: LeaseState;
  /** ms since the epoch */
  expires: number;
}

export interface Pool {
  start: string;
  end: string;
}

export interface AllocateOptions {
  /** the address the client asked for (option 50), used when free */
  requested?: string;
  /** addresses never to hand out from the pool: reservations, the server, the router… */
  exclude: (ip: string) => boolean;
  now: number;
  /** how long the offer holds the address */
  holdMs: number;
}

export interface LeaseStore {
  /** this MAC's offer or lease, expired or not */
  byMac(mac: string): Lease | undefined;
  /** the offer or lease on this address, expired or not */
  byIp(ip: string): Lease | undefined;
  /** choose a pool address for an offer and hold it for holdMs; undefined when the pool is exhausted */
  allocate(mac: string, pool: Pool, opts: AllocateOptions): string | undefined;
  /**
   * Bind ip to mac until `expires` (ms). False when another MAC holds the address, unless
   * `evict` (reservations), which takes it from them.
   */
  bind(mac: string, ip: string, expires: number, opts: { now: number; evict?: boolean }): boolean;
  /** forget an offer: the client chose another server */
  cancelOffer(mac: string): void;
  /** the client gave the address back; it stays associated with the MAC, expired */
  release(mac: string, ip: string, now: number): void;
  /** an address some other host uses (the client saw it in ARP): keep it out of use until `until` */
  decline(ip: string, until: number): void;
  /** make every change so far durable; resolves when it is */
  flush(): Promise<void>;
  close(): Promise<void>;
}

interface Row {
  mac?: string;
  state: 'bound' | 'declined';
  expires: number;
}

interface OfferHold {
  ip: number;
  expires: number;
}

const toInt = (ip: string): number => {
  const n = parseIp(ip);
  if (n === undefined) throw new RangeError(`not an IPv4 address: ${ip}`);
  return n;
};

/** Leases in memory: the model every backend keeps, and the whole store when nothing must survive a restart. */
export class MemoryLeaseStore implements LeaseStore {
  protected readonly rows = new Map<number, Row>();
  private readonly rowByMac = new Map<string, number>();
  private readonly offers = new Map<string, OfferHold>();
  private readonly offerByIp = new Map<number, string>();
  /** addresses whose row changed since the last flush */
  protected readonly touched = new Set<number>();
  /** where the next scan for a never-used address starts, per pool */
  private readonly cursors = new Map<string, number>();

  byMac(mac: string): Lease | undefined {
    const offer = this.offers.get(mac);
    if (offer) return { ip: formatIp(offer.ip), mac, state: 'offered', expires: offer.expires };
    const ip = this.rowByMac.get(mac);
    return ip === undefined ? undefined : this.lease(ip);
  }

  byIp(ip: string): Lease | undefined {
    const n = toInt(ip);
    const offeredTo = this.offerByIp.get(n);
    if (offeredTo !== undefined) return this.byMac(offeredTo);
    return this.lease(n);
  }

  private lease(ip: number): Lease | undefined {
    const r = this.rows.get(ip);
    return r && { ip: formatIp(ip), ...(r.mac !== undefined ? { mac: r.mac } : {}), state: r.state, expires: r.expires };
  }

  /** Is this address held (unexpired) by something other than `mac`? */
  private heldByOther(ip: number, mac: string, now: number): boolean {
    const r = this.rows.get(ip);
    if (r && r.mac !== mac && r.expires > now) return true;
    const o = this.offerByIp.get(ip);
    return o !== undefined && o !== mac && this.offers.get(o)!.expires > now;
  }

  allocate(mac: string, pool: Pool, opts: AllocateOptions): string | undefined {
    const lo = toInt(pool.start);
    const hi = toInt(pool.end);
    const usable = (ip: number) => ip >= lo && ip <= hi && !opts.exclude(formatIp(ip)) && !this.heldByOther(ip, mac, opts.now);
    // RFC 2131 §4.3.1's order: the client's current or previous address, the one it asks for, then a new one.
    const previous = this.offers.get(mac)?.ip ?? this.rowByMac.get(mac);
    const requested = opts.requested !== undefined ? parseIp(opts.requested) : undefined;
    let ip: number | undefined;
    if (previous !== undefined && usable(previous)) ip = previous;
    else if (requested !== undefined && usable(requested) && !this.rows.has(requested)) ip = requested;
    else ip = this.neverUsed(lo, hi, usable, pool) ?? this.longestExpired(lo, hi, usable, opts.now);
    if (ip === undefined) return undefined;
    this.hold(mac, ip, opts.now + opts.holdMs);
    return formatIp(ip);
  }

  /** The next address with no lease at all, scanning on from where the last scan stopped (so freed addresses rest a while). */
  private neverUsed(lo: number, hi: number, usable: (ip: number) => boolean, pool: Pool): number | undefined {
    const key = `${pool.start}-${pool.end}`;
    const size = hi - lo + 1;
    const start = this.cursors.get(key) ?? lo;
    for (let i = 0; i < size; i++) {
      const ip = lo + ((start - lo + i) % size);
      if (!this.rows.has(ip) && usable(ip)) {
        this.cursors.set(key, ip + 1 > hi ? lo : ip + 1);
        return ip;
      }
    }
    return undefined;
  }

  /** The pool address whose lease ran out longest ago: its previous holder is the least likely to come back. */
  private longestExpired(lo: number, hi: number, usable: (ip: number) => boolean, now: number): number | undefined {
    let best: number | undefined;
    let bestExpiry = Infinity;
    for (const [ip, r] of this.rows)
      if (ip >= lo && ip <= hi && r.expires <= now && r.expires < bestExpiry && usable(ip)) {
        best = ip;
        bestExpiry = r.expires;
      }
    return best;
  }

  private hold(mac: string, ip: number, expires: number): void {
    this.cancelOffer(mac);
    const previousTaker = this.offerByIp.get(ip);
    if (previousTaker !== undefined) this.offers.delete(previousTaker); // its offer had expired (usable() checked)
    this.offers.set(mac, { ip, expires });
    this.offerByIp.set(ip, mac);
  }

  cancelOffer(mac: string): void {
    const o = this.offers.get(mac);
    if (!o) return;
    this.offers.delete(mac);
    if (this.offerByIp.get(o.ip) === mac) this.offerByIp.delete(o.ip);
  }

  bind(mac: string, ip: string, expires: number, opts: { now: number; evict?: boolean }): boolean {
    const n = toInt(ip);
    if (!opts.evict && this.heldByOther(n, mac, opts.now)) return false;
    const offeredTo = this.offerByIp.get(n);
    if (offeredTo !== undefined && offeredTo !== mac) this.cancelOffer(offeredTo);
    this.cancelOffer(mac);
    this.deleteRow(n); // whoever held it before: expired, evicted, or this MAC itself
    const old = this.rowByMac.get(mac);
    if (old !== undefined) this.deleteRow(old); // one address per MAC
    this.setRow(n, { mac, state: 'bound', expires });
    return true;
  }

  release(mac: string, ip: string, now: number): void {
    this.cancelOffer(mac);
    const n = toInt(ip);
    const r = this.rows.get(n);
    if (!r || r.mac !== mac || r.expires <= now) return;
    this.setRow(n, { ...r, expires: now });
  }

  decline(ip: string, until: number): void {
    const n = toInt(ip);
    const offeredTo = this.offerByIp.get(n);
    if (offeredTo !== undefined) this.cancelOffer(offeredTo);
    this.deleteRow(n);
    this.setRow(n, { state: 'declined', expires: until });
  }

  private setRow(ip: number, r: Row): void {
    this.rows.set(ip, r);
    if (r.mac !== undefined) this.rowByMac.set(r.mac, ip);
    this.touched.add(ip);
  }

  private deleteRow(ip: number): void {
    const r = this.rows.get(ip);
    if (!r) return;
    this.rows.delete(ip);
    if (r.mac !== undefined && this.rowByMac.get(r.mac) === ip) this.rowByMac.delete(r.mac);
    this.touched.add(ip);
  }

  /** Load a row read from storage (no change to flush). */
  protected load(ip: number, r: Row): void {
    this.rows.set(ip, r);
    if (r.mac !== undefined) this.rowByMac.set(r.mac, ip);
  }

  async flush(): Promise<void> {
    this.touched.clear();
  }

  async close(): Promise<void> {}
}

/**
 * Leases in a SQLite file (node:sqlite), written by a worker thread (leases-worker.ts)
 * so a commit never stops the server's thread. WAL with synchronous=FULL: a flush
 * resolves once its transaction is on disk, so an ACK is never sent for a binding a
 * crash or power cut could lose, and `kill -9` at any instant leaves a consistent
 * file. Exclusive locking: a second server on the same state directory fails at open.
 * Flushes run one at a time, in order; a failed one hands its changes to the next.
 */
export class SqliteLeaseStore extends MemoryLeaseStore {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private last: Promise<void> = Promise.resolve();
  private failure: Error | undefined;

  private constructor(file: string) {
    super();
    this.worker = new Worker(new URL('./leases-worker.ts', import.meta.url), { workerData: { file } });
    this.worker.on('message', (r: WorkerReply) => {
      const w = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      w?.resolve(r);
    });
    const fail = (e: Error) => {
      this.failure = e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the lease database thread exited (${code})`)));
  }

  /** Open (and lock) the database and load its leases. */
  static async open(file: string): Promise<SqliteLeaseStore> {
    const store = new SqliteLeaseStore(file);
    try {
      const r = await store.call({ op: 'open' });
      for (const [ip, mac, state, expires] of r.rows ?? []) store.load(ip, { ...(mac !== null ? { mac } : {}), state, expires });
      return store;
    } catch (e) {
      await store.worker.terminate();
      throw e;
    }
  }

  private call(req: DistributiveOmit<WorkerRequest, 'id'>): Promise<WorkerReply & { ok: true }> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve: (r) => (r.ok ? resolve(r) : reject(new Error(r.error))), reject });
      this.worker.postMessage({ ...req, id });
    });
  }

  override flush(): Promise<void> {
    const changes: Change[] = [...this.touched].map((ip) => {
      const r = this.rows.get(ip);
      return [ip, r ? [ip, r.mac ?? null, r.state, r.expires] : null];
    });
    this.touched.clear();
    const previous = this.last.catch(() => {});
    const done = previous.then(async () => {
      if (changes.length === 0) return;
      try {
        await this.call({ op: 'write', changes });
      } catch (e) {
        // Not on disk: the next flush writes these addresses' rows as they are by then.
        for (const [ip] of changes) this.touched.add(ip);
        throw e;
      }
    });
    this.last = done;
    return done;
  }

  override async close(): Promise<void> {
    if (this.failure) return;
    try {
      await this.flush();
      await this.call({ op: 'close' });
    } finally {
      await this.worker.terminate();
    }
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
