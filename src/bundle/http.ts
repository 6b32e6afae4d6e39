// HTTP for `bundle create`: every wait bounded (connect + headers, then a stall timer that
// fires when no byte has arrived for a while: a 700 MiB image may take an hour on a slow
// link, but it must not sit forever on a dead one), downloads hashed as they stream, and
// an interrupted download resumed with a Range request on the next run.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import type { HashAlgorithm } from './contents.ts';

export const HEADERS_TIMEOUT_MS = 30_000;
export const STALL_TIMEOUT_MS = 60_000;
const USER_AGENT = 'slipway-bundle/0.1';

export class HttpError extends Error {
  readonly status: number;
  readonly url: string;
  constructor(url: string, status: number, message: string) {
    super(message);
    this.url = url;
    this.status = status;
  }
}

export class DigestMismatch extends Error {}

export interface RequestOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  headersTimeoutMs?: number;
}

export interface Opened {
  res: Response;
  /** the body, chunk by chunk; throws when no data arrives for stallMs */
  body(stallMs?: number): AsyncGenerator<Uint8Array>;
  /** stop the transfer (for responses whose body is not wanted) */
  cancel(): void;
}

/** Send a request; resolves once the status and headers are in (bounded), whatever the status. */
export async function request(url: string, opts: RequestOptions = {}): Promise<Opened> {
  const ctrl = new AbortController();
  const headersTimeout = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  const timer = setTimeout(() => ctrl.abort(new Error(`no response from ${url} within ${headersTimeout / 1000}s`)), headersTimeout);
  let res: Response;
  try {
    res = await fetch(url, {
      method: opts.method ?? 'GET',
      // identity: a server that gzips a .tar.gz on the wire would otherwise have it unpacked under us
      headers: { 'user-agent': USER_AGENT, 'accept-encoding': 'identity', ...opts.headers },
      redirect: 'follow',
      signal: ctrl.signal,
    });
  } catch (e) {
    const reason = ctrl.signal.aborted ? (ctrl.signal.reason as Error).message : causeOf(e);
    throw new HttpError(url, 0, `${url}: ${reason}`);
  } finally {
    clearTimeout(timer);
  }
  return {
    res,
    cancel: () => ctrl.abort(new Error('cancelled')),
    async *body(stallMs = STALL_TIMEOUT_MS) {
      if (!res.body) return;
      const reader = res.body.getReader();
      let stall: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(stall);
        stall = setTimeout(() => ctrl.abort(new Error(`${url}: no data for ${stallMs / 1000}s`)), stallMs);
      };
      try {
        for (;;) {
          arm();
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await reader.read();
          } catch (e) {
            throw new HttpError(url, res.status, ctrl.signal.aborted ? (ctrl.signal.reason as Error).message : `${url}: ${causeOf(e)}`);
          }
          if (r.done) return;
          yield r.value;
        }
      } finally {
        clearTimeout(stall);
        reader.releaseLock();
      }
    },
  };
}

/** undici wraps the interesting error (ECONNREFUSED, ENOTFOUND) in a generic "fetch failed". */
function causeOf(e: unknown): string {
  const err = e as Error & { cause?: Error & { code?: string } };
  return err.cause?.code ? `${err.cause.code} ${err.cause.message}` : (err.cause?.message ?? err.message);
}

/** GET a small text (a checksum file, version.txt, a token): refuses bodies over maxBytes. */
export async function getSmall(url: string, opts: RequestOptions & { maxBytes?: number } = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const max = opts.maxBytes ?? 4 << 20;
  const o = await request(url, opts);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of o.body()) {
    n += c.length;
    if (n > max) {
      o.cancel();
      throw new HttpError(url, o.res.status, `${url}: response larger than ${max} bytes`);
    }
    chunks.push(Buffer.from(c));
  }
  return { status: o.res.status, headers: o.res.headers, body: Buffer.concat(chunks) };
}

export async function getText(url: string, maxBytes = 1 << 20): Promise<string> {
  const r = await getSmall(url, { maxBytes });
  if (r.status !== 200) throw new HttpError(url, r.status, `${url}: HTTP ${r.status}`);
  return r.body.toString('utf8');
}

export interface DownloadOptions {
  /** the digest the finished file must have */
  expect: { algorithm: HashAlgorithm; hex: string };
  /** partial file kept between runs (resumed with Range) */
  partial: string;
  /** extra request headers (registry auth) */
  headers?: Record<string, string>;
  /** the size the file must have, when known (OCI descriptors) */
  size?: number;
  onProgress?: (done: number, total: number | undefined) => void;
  /** what to call the file in errors ("kube-apiserver", "blob sha256:…") */
  what: string;
}

/**
 * Download `url` to `dest` through `partial`, hashing as it streams. The file appears at
 * `dest` only with the expected digest; a wrong one is deleted (so the next run fetches it
 * afresh) and reported naming the file, the URL and both digests.
 */
export async function download(url: string, dest: string, o: DownloadOptions): Promise<{ size: number; resumed: number }> {
  const hash = createHash(o.expect.algorithm);
  let have = (await stat(o.partial).catch(() => undefined))?.size ?? 0;
  if (o.size !== undefined && have > o.size) have = 0;
  let opened = await request(url, { headers: { ...o.headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) } });
  let resumed = 0;
  if (have > 0 && opened.res.status === 206 && contentRangeStart(opened.res.headers.get('content-range')) === have) {
    resumed = have;
    // not pipeline(): ending the Hash stream would finalize it before the rest arrives
    for await (const chunk of createReadStream(o.partial, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) hash.update(chunk);
  } else if (have > 0 && (opened.res.status === 206 || opened.res.status === 416)) {
    // a range we cannot use (the file changed upstream, or it was complete): start over
    opened.cancel();
    opened = await request(url, { headers: o.headers });
    have = 0;
  } else {
    have = 0;
  }
  const { res } = opened;
  if (res.status !== 200 && res.status !== 206) {
    opened.cancel();
    throw new HttpError(url, res.status, `${o.what}: ${url}: HTTP ${res.status}`);
  }
  const length = Number(res.headers.get('content-length') ?? NaN);
  const total = Number.isFinite(length) ? resumed + length : o.size;
  const fh = await open(o.partial, resumed > 0 ? 'a' : 'w');
  let done = resumed;
  // the network hands over 16-64 KiB at a time: write in 1 MiB batches, not one syscall per chunk
  let batch: Uint8Array[] = [];
  let batched = 0;
  const flush = async () => {
    if (batched) await fh.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch, batched));
    batch = [];
    batched = 0;
  };
  try {
    o.onProgress?.(done, total);
    for await (const chunk of opened.body()) {
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= 1 << 20) await flush();
      done += chunk.length;
      if (o.size !== undefined && done > o.size) {
        await rm(o.partial, { force: true });
        throw new DigestMismatch(`${o.what}: ${url} sent more than the ${o.size} bytes its descriptor names`);
      }
      o.onProgress?.(done, total);
    }
    await flush();
    await fh.sync();
  } catch (e) {
    // keep what did arrive, so the next run resumes from there
    if (!(e instanceof DigestMismatch)) await flush().catch(() => {});
    throw e;
  } finally {
    await fh.close();
  }
  const got = hash.digest('hex');
  if (got !== o.expect.hex || (o.size !== undefined && done !== o.size)) {
    await rm(o.partial, { force: true });
    const sizeNote = o.size !== undefined && done !== o.size ? ` (${done} bytes, expected ${o.size})` : '';
    throw new DigestMismatch(`${o.what}: ${o.expect.algorithm} mismatch for ${url}${sizeNote}: expected ${o.expect.hex}, got ${got}`);
  }
  await rename(o.partial, dest);
  return { size: done, resumed };
}

function contentRangeStart(h: string | null): number | undefined {
  const m = h ? /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(h) : null;
  return m ? Number(m[1]) : undefined;
}
