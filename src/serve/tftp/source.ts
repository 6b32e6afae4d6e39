// Where a transfer's bytes come from, cut into TFTP blocks.
//
// Small files (boot loaders: undionly.kpxe, ipxe.efi, pxelinux.0, ldlinux.c32) are read
// once into a bounded LRU cache and served as slices of that buffer, so a thousand
// machines booting at once cost one read. The cache is never stale: every request stats
// the file and an entry is used only if device, inode, size, mtime and ctime all still
// match (ctime catches a same-size rewrite within one mtime tick). Larger files are read
// window by window from an open descriptor and never cached.
import { constants, type BigIntStats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { RootedFile } from './paths.ts';

/** Bytes at positions, from memory or a file. A short result means end of file. */
export interface ByteReader {
  read(pos: number, len: number): Promise<Buffer> | Buffer;
  close(): Promise<void>;
}

/**
 * A transfer's blocks in order: each `blksize` bytes, then one shorter (possibly empty)
 * final block. `next` answers synchronously when it can (a cached file, blocks read
 * ahead already): in lock-step that is once per block, and a promise each time would
 * add its latency to every round trip.
 */
export interface BlockSource {
  /** up to `count` next blocks; fewer only after the final block, then none */
  next(count: number): Buffer[] | Promise<Buffer[]>;
  close(): Promise<void>;
}

// O_NOFOLLOW: the path was resolved already, so a symlink here means it was swapped in
// since. O_NONBLOCK: a FIFO swapped in would otherwise block the open. O_NOCTTY: a tty
// must never become our controlling terminal.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

export function bufferReader(buf: Buffer): ByteReader {
  return {
    read: (pos, len) => buf.subarray(pos, pos + len),
    close: async () => {},
  };
}

export function fileReader(handle: FileHandle): ByteReader {
  return {
    async read(pos, len) {
      const out = Buffer.allocUnsafe(len);
      let got = 0;
      // read() may return fewer bytes than asked without being at the end of the file.
      while (got < len) {
        const { bytesRead } = await handle.read(out, got, len - got, pos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === len ? out : out.subarray(0, got);
    },
    close: () => handle.close(),
  };
}

/** Bytes a file-backed transfer reads at once, even in lock-step: one thread-pool round trip per 64 KiB, not per block. */
export const READ_AHEAD = 64 * 1024;

/**
 * Octet mode: the file's bytes as they are, read `readAhead` bytes (or a window, if
 * larger) at a time. A file read from disk is read ahead in the background: once half
 * of what was read has been taken, the next chunk is asked for, so in lock-step the
 * thread-pool round trip of a read is hidden behind the client's ACKs instead of
 * stalling one block in every 44 (tftpd-hpa reads ahead the same way). At most one read
 * is in flight and at most about 1.5 chunks are held per transfer.
 */
export function octetBlocks(reader: ByteReader, blksize: number, readAhead = READ_AHEAD): BlockSource {
  let pos = 0;
  let ended = false; // the final block is in the queue
  let queue: Buffer[] = [];
  let head = 0; // queue[head] is the next block
  let reading: Promise<void> | undefined;
  let readError: unknown; // a background read's failure, reported when its blocks are needed
  let async = false; // the reader answered with a promise: worth reading ahead
  const aheadBlocks = Math.max(1, Math.floor(readAhead / blksize));
  const queued = () => queue.length - head;
  const take = (count: number): Buffer[] => {
    const out = queue.slice(head, head + Math.max(0, count));
    head += out.length;
    if (head === queue.length) {
      queue = [];
      head = 0;
    }
    return out;
  };
  const add = (chunk: Buffer, want: number) => {
    pos += chunk.length;
    if (head > 0) {
      queue = queue.slice(head);
      head = 0;
    }
    for (let off = 0; off < chunk.length; off += blksize) queue.push(chunk.subarray(off, Math.min(off + blksize, chunk.length)));
    if (chunk.length < want) {
      // End of file: a file whose size is a multiple of blksize ends with an empty block.
      if (chunk.length % blksize === 0) queue.push(Buffer.alloc(0));
      ended = true;
    }
  };
  /** Start reading `want` bytes; the blocks are queued when they arrive. */
  const read = (want: number): void | Promise<void> => {
    const chunk = reader.read(pos, want);
    if (Buffer.isBuffer(chunk)) return add(chunk, want);
    async = true;
    reading = chunk.then(
      (c) => add(c, want),
      (e: unknown) => void (readError = e),
    );
    void reading.finally(() => (reading = undefined));
    return reading;
  };
  const readAheadIfLow = () => {
    if (async && !ended && !reading && readError === undefined && queued() <= aheadBlocks / 2) void read(aheadBlocks * blksize);
  };
  const next = (count: number): Buffer[] | Promise<Buffer[]> => {
    if (queued() >= count || ended) {
      const out = take(count);
      readAheadIfLow();
      return out;
    }
    if (readError !== undefined) return Promise.reject(readError as Error);
    if (reading) return reading.then(() => next(count));
    const done = read(Math.max(count - queued(), aheadBlocks) * blksize);
    if (done === undefined) return take(count);
    return done.then(() => next(count));
  };
  return { next, close: () => reader.close() };
}

const NETASCII_CHUNK = 64 * 1024;

/**
 * Netascii mode (RFC 1350, RFC 764): LF becomes CR LF and a bare CR becomes CR NUL. Each
 * byte maps on its own, so the file converts chunk by chunk; retransmissions reuse the
 * blocks the transfer holds, so the conversion only ever runs forwards.
 */
export function netasciiBlocks(reader: ByteReader, blksize: number): BlockSource {
  let rawPos = 0;
  let rawDone = false;
  let pending: Buffer = Buffer.alloc(0);
  let done = false;
  return {
    async next(count) {
      if (done || count <= 0) return [];
      while (!rawDone && pending.length < count * blksize) {
        const chunk = await reader.read(rawPos, NETASCII_CHUNK);
        rawPos += chunk.length;
        if (chunk.length < NETASCII_CHUNK) rawDone = true;
        pending = Buffer.concat([pending, toNetascii(chunk)]);
      }
      const full = Math.min(count, Math.floor(pending.length / blksize));
      const blocks = split(pending.subarray(0, full * blksize), blksize);
      pending = pending.subarray(full * blksize);
      if (rawDone && blocks.length < count) {
        blocks.push(pending); // shorter than blksize: the final block
        done = true;
      }
      return blocks;
    },
    close: () => reader.close(),
  };
}

export function toNetascii(raw: Buffer): Buffer {
  let extra = 0;
  for (const c of raw) if (c === 0x0a || c === 0x0d) extra++;
  if (extra === 0) return raw;
  const out = Buffer.allocUnsafe(raw.length + extra);
  let j = 0;
  for (const c of raw) {
    if (c === 0x0a) {
      out[j++] = 0x0d;
      out[j++] = 0x0a;
    } else if (c === 0x0d) {
      out[j++] = 0x0d;
      out[j++] = 0x00;
    } else out[j++] = c;
  }
  return out;
}

function split(buf: Buffer, blksize: number): Buffer[] {
  const blocks: Buffer[] = [];
  for (let off = 0; off < buf.length; off += blksize) blocks.push(buf.subarray(off, Math.min(off + blksize, buf.length)));
  return blocks;
}

// ---------------------------------------------------------------- the cache

export interface CacheLimits {
  /** total bytes held (default 64 MiB) */
  maxBytes?: number;
  /** files larger than this are streamed, not cached (default 8 MiB: boot loaders, not kernels) */
  maxFileBytes?: number;
}

/** Everything that changes when a file's content may have changed. */
const identity = (st: BigIntStats): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;

interface Entry {
  id: string;
  data: Buffer;
}

export class FileCache {
  private readonly entries = new Map<string, Entry>(); // by real path, least recently used first
  private readonly loading = new Map<string, Promise<Buffer>>(); // by real path + identity
  private total = 0;
  readonly maxBytes: number;
  readonly maxFileBytes: number;

  constructor(limits: CacheLimits = {}) {
    this.maxBytes = limits.maxBytes ?? 64 * 1024 * 1024;
    this.maxFileBytes = Math.min(limits.maxFileBytes ?? 8 * 1024 * 1024, this.maxBytes);
  }

  get bytes(): number {
    return this.total;
  }

  /**
   * The file's bytes for a transfer: a fresh cache entry, or a read that fills the cache.
   * Concurrent requests for the same uncached file share one read.
   * `hit` says which (for metrics). Too-large files get a descriptor-backed reader.
   */
  async open(f: RootedFile): Promise<{ reader: ByteReader; size: number; hit: boolean | undefined }> {
    if (Number(f.stat.size) > this.maxFileBytes) return { ...(await openFile(f.real)), hit: undefined };
    const id = identity(f.stat);
    const entry = this.entries.get(f.real);
    if (entry?.id === id) {
      this.entries.delete(f.real); // re-insert: most recently used goes last
      this.entries.set(f.real, entry);
      return { reader: bufferReader(entry.data), size: entry.data.length, hit: true };
    }
    const key = `${f.real}\0${id}`;
    let load = this.loading.get(key);
    if (!load) {
      load = this.load(f.real).finally(() => this.loading.delete(key));
      this.loading.set(key, load);
    }
    const data = await load;
    return { reader: bufferReader(data), size: data.length, hit: false };
  }

  private async load(real: string): Promise<Buffer> {
    const handle = await openChecked(real);
    try {
      const st = await handle.stat({ bigint: true });
      const data = await handle.readFile();
      // A file being written while we read it is served as read, but not kept.
      if (BigInt(data.length) === st.size) this.store(real, { id: identity(st), data });
      return data;
    } finally {
      await handle.close();
    }
  }

  private store(real: string, entry: Entry): void {
    const old = this.entries.get(real);
    if (old) {
      this.entries.delete(real);
      this.total -= old.data.length;
    }
    if (entry.data.length > this.maxFileBytes) return;
    this.entries.set(real, entry);
    this.total += entry.data.length;
    for (const [k, e] of this.entries) {
      if (this.total <= this.maxBytes) break;
      this.entries.delete(k);
      this.total -= e.data.length;
    }
  }
}

/** Open a located file for streaming; the descriptor's own stat must still say "regular file". */
async function openFile(real: string): Promise<{ reader: ByteReader; size: number }> {
  const handle = await openChecked(real);
  try {
    const st = await handle.stat();
    return { reader: fileReader(handle), size: st.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

async function openChecked(real: string): Promise<FileHandle> {
  const handle = await open(real, OPEN_FLAGS);
  const st = await handle.stat().catch(async (e: unknown) => {
    await handle.close();
    throw e;
  });
  if (!st.isFile()) {
    await handle.close();
    throw Object.assign(new Error(`${real} is no longer a regular file`), { code: 'EACCES' });
  }
  return handle;
}
