// One read transfer, from the server's side: its own UDP socket (the server's transfer ID,
// RFC 1350 section 4), an optional OACK first (RFC 2347), then DATA in windows of
// `windowsize` blocks (RFC 7440; a window of 1 is RFC 1350's lock-step).
//
// The socket is connected to the client, as tftp-hpa does it: the kernel then delivers
// only the client's packets (a stray sender gets ICMP port-unreachable rather than TFTP
// ERROR 5, which RFC 1350 allows: "this can be done only if the TFTP in fact receives a
// packet with an incorrect TID"), sends skip a per-packet route and address lookup, and
// a client that has gone away shows up as ECONNREFUSED, which ends the transfer at once.
//
// Sequence numbers are kept unwrapped internally (block 65536 is the 65537th block);
// on the wire they wrap to 0 after 65535, as tftp-hpa does, so files of any size work
// at any blksize. An ACK is mapped back into [base-1, highest sent], which is unambiguous
// because a window is far smaller than 65536 blocks.
//
// Retransmission:
//  - A timer per round: if no ACK moves the transfer forward in time, the window is sent
//    again from the first unacknowledged block (RFC 7440 section 4), with the timeout
//    doubling each time up to a cap, and a bounded number of tries before giving up.
//    The first timeout is the client's `timeout` option when it sent one (RFC 2349: both
//    ends then use it, as tftp-hpa does), else the server's setting.
//  - An ACK that moves forward starts the next window right after the acknowledged block.
//    In a window that is also RFC 7440's loss report: the receiver acknowledges the last
//    block it got in order, and the window restarts there.
//  - A duplicate ACK (no progress) never triggers a retransmission in lock-step: that is
//    the Sorcerer's Apprentice bug (RFC 1123 section 4.2.3.1), where a delayed ACK and
//    its retransmission each cause a DATA, doubling every packet from then on. In a
//    window, a duplicate is the loss report for the window's first block; it restarts
//    the window once per round, never more, so a receiver that repeats it for every
//    out-of-order block cannot multiply the traffic.
import type { Socket } from 'node:dgram';
import { ERROR_CODE, TftpParseError, dataHeader, decode, encodeError } from './packet.ts';
import type { BlockSource } from './source.ts';

export type FailReason = 'timeout' | 'client_abort' | 'client_gone' | 'io' | 'closed' | 'superseded';

export type TransferResult =
  | { ok: true; bytes: number; ms: number }
  | { ok: false; reason: FailReason; detail: string; bytes: number; ms: number };

export interface TransferEvents {
  /** a window went out: its payload bytes, and how many of its blocks had been sent before (once per window, not per packet: it is the hot path) */
  sent(payloadBytes: number, retransmits: number): void;
  /** the OACK went out again */
  oackRetransmitted(): void;
  /** an incoming packet on this transfer's socket was ignored */
  dropped(reason: string): void;
  sendError(err: Error): void;
}

export interface TransferOptions {
  /** this transfer's alone, bound and connected to the client */
  socket: Socket;
  source: BlockSource;
  blksize: number;
  windowsize: number;
  /** first retransmission timeout; doubles on every retry up to maxTimeoutMs */
  timeoutMs: number;
  maxTimeoutMs: number;
  /** retransmissions of one round before the transfer is given up */
  maxRetries: number;
  /** an encoded OACK to send first; the data starts when the client ACKs block 0 */
  oack?: Buffer;
  events: TransferEvents;
  /** when the request arrived (performance.now()), for the duration */
  startedAt?: number;
}

export class Transfer {
  readonly done: Promise<TransferResult>;
  private readonly o: TransferOptions;
  private readonly t0: number;
  private settle!: (r: TransferResult) => void;
  private phase: 'oack' | 'data' | 'over' = 'data';
  /** the first unacknowledged block */
  private base = 1;
  /** blocks base, base+1, ... read already: the window's blocks, kept for retransmission */
  private held: Buffer[] = [];
  /** the final block's number, once it has been read */
  private eof: number | undefined;
  private highestSent = 0;
  private retries = 0;
  private dupRestarted = false;
  /** bumps on every new round, so a round that waited for the disk knows it was superseded */
  private round = 0;
  private filling: Promise<unknown> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerDelay = 0;
  private bytes = 0;

  constructor(o: TransferOptions) {
    this.o = o;
    this.t0 = o.startedAt ?? performance.now();
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  start(): void {
    this.o.socket.on('message', (msg) => this.onMessage(msg));
    this.o.socket.on('error', (err) => this.onSocketError(err));
    if (this.o.oack) {
      this.phase = 'oack';
      this.sendOack();
    } else this.sendRound();
  }

  /** End the transfer from outside (server closing, client re-requested); the client is told unless superseded. */
  abort(reason: 'closed' | 'superseded', detail: string): void {
    this.fail(reason, detail, reason === 'closed' ? 'Server shutting down' : undefined);
  }

  // ------------------------------------------------------------ incoming

  private onMessage(msg: Buffer): void {
    if (this.phase === 'over') return;
    // An ACK, the one packet of every round trip, is read in place: decode() would build
    // an object per block for the same answer (opcode 4, block number; trailing bytes ignored as there).
    if (msg.length >= 4 && msg[0] === 0 && msg[1] === 4) return this.onAck((msg[2]! << 8) | msg[3]!);
    let p;
    try {
      p = decode(msg);
    } catch (e) {
      this.o.events.dropped(e instanceof TftpParseError ? e.reason : 'undecodable');
      return;
    }
    if (p.op === 'ACK') this.onAck(p.block);
    else if (p.op === 'ERROR') this.finish({ ok: false, reason: 'client_abort', detail: `client sent ERROR ${p.code}: ${p.message}` });
    else this.o.events.dropped('unexpected-opcode');
  }

  /** Send errors come here too (sends have no callback). ECONNREFUSED: the client's port is closed, nobody will ACK. */
  private onSocketError(err: NodeJS.ErrnoException): void {
    if (err.code === 'ECONNREFUSED') this.finish({ ok: false, reason: 'client_gone', detail: 'client port unreachable' });
    else this.o.events.sendError(err); // a lost packet, as far as the protocol goes: the timer recovers it
  }

  private onAck(wire: number): void {
    if (this.phase === 'oack') {
      if (wire !== 0) return this.o.events.dropped('unexpected-ack');
      this.phase = 'data';
      this.retries = 0;
      this.sendRound();
      return;
    }
    const seq = this.ackedBlock(wire);
    if (seq === undefined) return this.o.events.dropped('stale-ack');
    if (seq < this.base) return this.onDuplicateAck();
    this.advance(seq);
  }

  /** The unwrapped block an ACK names, if it is one this transfer sent and has not seen acknowledged before. */
  private ackedBlock(wire: number): number | undefined {
    const last = this.base - 1;
    const delta = (wire - (last & 0xffff) + 0x10000) & 0xffff;
    return delta <= this.highestSent - last ? last + delta : undefined;
  }

  private onDuplicateAck(): void {
    if (this.o.windowsize === 1 || this.dupRestarted) return this.o.events.dropped('duplicate-ack');
    this.dupRestarted = true;
    this.sendRound();
  }

  private advance(seq: number): void {
    for (const b of this.held.splice(0, seq - this.base + 1)) this.bytes += b.length;
    this.base = seq + 1;
    this.retries = 0;
    this.dupRestarted = false;
    if (seq === this.eof) this.finish({ ok: true });
    else this.sendRound();
  }

  // ------------------------------------------------------------ outgoing

  private sendOack(): void {
    this.o.socket.send(this.o.oack!, this.onSent);
    this.armTimer();
  }

  /** Send the window that starts at `base`, reading blocks first if needed. */
  private sendRound(): void {
    const round = ++this.round;
    let ready: true | Promise<unknown>;
    try {
      ready = this.topUp();
    } catch (e) {
      return this.readFailed(e);
    }
    if (ready === true) return this.transmit();
    // The timer keeps running while the disk reads: a read that hangs still ends in a bounded timeout.
    ready.then(
      // A later ACK (or the timer) may have started a newer round while we read.
      () => round === this.round && this.phase === 'data' && this.transmit(),
      (e: unknown) => this.readFailed(e),
    );
  }

  private transmit(): void {
    const n = Math.min(this.o.windowsize, this.held.length);
    let bytes = 0;
    let again = 0;
    for (let i = 0; i < n; i++) {
      const seq = this.base + i;
      const block = this.held[i]!;
      if (seq <= this.highestSent) again++;
      else this.highestSent = seq;
      // Header and payload as two buffers: a cached file's slice goes out without a copy.
      // No callback: Node then sends at once without a request object; errors come as 'error' events.
      this.o.socket.send([dataHeader(seq & 0xffff), block]);
      bytes += block.length;
    }
    this.o.events.sent(bytes, again);
    this.armTimer();
  }

  private readFailed(e: unknown): void {
    this.fail('io', `read failed: ${(e as Error).message}`, 'Read error');
  }

  /**
   * Read up to a full window: true when the blocks are there (synchronously, the common
   * case), else a promise for when they are. One read at a time; rounds that overlap share it.
   */
  private topUp(): true | Promise<unknown> {
    while (this.held.length < this.o.windowsize && this.eof === undefined) {
      if (this.filling) return this.filling.then(() => this.topUp());
      const got = this.o.source.next(this.o.windowsize - this.held.length);
      if (Array.isArray(got)) {
        this.take(got);
        continue;
      }
      this.filling = got.then((blocks) => this.take(blocks)).finally(() => (this.filling = undefined));
      return this.filling.then(() => this.topUp());
    }
    return true;
  }

  private take(blocks: Buffer[]): void {
    if (blocks.length === 0) throw new Error('source ended without a final block');
    for (const b of blocks) {
      this.held.push(b);
      if (b.length < this.o.blksize) {
        this.eof = this.base + this.held.length - 1;
        return;
      }
    }
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) this.onSocketError(err);
  };

  // ------------------------------------------------------------ timing

  private armTimer(): void {
    const delay = Math.min(this.o.timeoutMs * 2 ** this.retries, Math.max(this.o.timeoutMs, this.o.maxTimeoutMs));
    // Lock-step re-arms once per block: restarting the same timer is far cheaper than a new one.
    if (this.timer && this.timerDelay === delay) {
      this.timer.refresh();
      return;
    }
    this.clearTimer();
    this.timerDelay = delay;
    this.timer = setTimeout(() => this.onTimeout(), delay);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onTimeout(): void {
    this.timer = undefined; // fired: a refresh() would re-arm a spent timer, so the next arm makes a new one
    if (this.phase === 'over') return;
    if (this.retries >= this.o.maxRetries) {
      return this.fail('timeout', `no ACK for block ${this.phase === 'oack' ? 0 : this.base} after ${this.retries} retransmissions`);
    }
    this.retries++;
    if (this.phase === 'oack') {
      this.o.events.oackRetransmitted();
      this.sendOack();
    } else this.sendRound();
  }

  // ------------------------------------------------------------ the end

  private fail(reason: FailReason, detail: string, tellClient?: string): void {
    if (this.phase === 'over') return;
    if (tellClient === undefined) return this.finish({ ok: false, reason, detail });
    // Close only once the ERROR has left: closing cancels a queued send.
    const sock = this.o.socket;
    this.finish({ ok: false, reason, detail }, false);
    sock.send(encodeError(ERROR_CODE.NOT_DEFINED, tellClient), () => closeQuietly(sock));
  }

  private finish(r: { ok: true } | { ok: false; reason: FailReason; detail: string }, closeSocket = true): void {
    if (this.phase === 'over') return;
    this.phase = 'over';
    this.clearTimer();
    this.held = [];
    if (closeSocket) closeQuietly(this.o.socket);
    this.o.source.close().catch(() => {});
    this.settle({ ...r, bytes: this.bytes, ms: performance.now() - this.t0 });
  }
}

function closeQuietly(sock: Socket): void {
  try {
    sock.close();
  } catch {
    // already closed
  }
}
