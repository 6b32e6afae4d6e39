// Static files from the assets directory (kernels, initrds, binaries, loaders) with the
// headers download tools rely on: Range (resumable, parallel), ETag/If-None-Match,
// Last-Modified, and the file's sha256 (X-Checksum-Sha256 and RFC 3230 Digest) so a
// machine can check what it got. Digests are computed once per (size, mtime) and cached.
import { sha256File } from '../../lib/sha256.ts';
import { PIN_TEXT_MAX, type PinSource } from '../pins.ts';
import { open, readFile, readdir, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';

interface Digest { key: string; hex: string }

export class Assets implements PinSource {
  readonly root: string;
  /** only paths under this prefix are served from here (a fallback for another root) */
  readonly prefix: string;
  /** asked when this root has no such file (serve: the staged loaders for /assets/ipxe/) */
  fallback?: Assets;
  private readonly digests = new Map<string, Digest>();

  constructor(root: string, prefix = '') {
    this.root = root;
    this.prefix = prefix;
  }

  /** The real path and stat of `rel` if it stays inside the root (no `..`, NUL, or symlinks out). */
  private async inside(rel: string): Promise<{ real: string; st: Stats } | undefined> {
    if (rel.includes('\0') || rel.split('/').some((p) => p === '..')) return undefined;
    try {
      const rootReal = await realpath(this.root);
      const real = await realpath(join(rootReal, rel));
      if (real !== rootReal && !real.startsWith(rootReal + sep)) return undefined;
      return { real, st: await stat(real) };
    } catch {
      return undefined;
    }
  }

  /** `rel` if it is a regular file inside the root. */
  async resolve(rel: string): Promise<{ path: string; size: number; mtimeMs: number } | undefined> {
    const f = await this.inside(rel);
    return f?.st.isFile() ? { path: f.real, size: f.st.size, mtimeMs: f.st.mtimeMs } : undefined;
  }

  async sha256(f: { path: string; size: number; mtimeMs: number }): Promise<string> {
    const key = `${f.size}:${f.mtimeMs}`;
    const hit = this.digests.get(f.path);
    if (hit?.key === key) return hit.hex;
    const hex = await sha256File(f.path);
    this.digests.set(f.path, { key, hex });
    return hex;
  }

  /** A small text file's contents (at most PIN_TEXT_MAX bytes), or undefined. */
  async readText(rel: string): Promise<string | undefined> {
    const f = await this.resolve(rel);
    if (!f || f.size > PIN_TEXT_MAX) return undefined;
    return readFile(f.path, 'utf8');
  }

  /** `rel`'s sha256 if it is a regular file inside the root (cached like the served digests). */
  async digestOf(rel: string): Promise<string | undefined> {
    const f = await this.resolve(rel);
    return f && this.sha256(f);
  }

  /** `sha256  name` lines for every regular file under `dir` (relative names), as sha256sum prints them. */
  async sha256sums(dir: string): Promise<string | undefined> {
    const top = await this.inside(dir);
    if (!top?.st.isDirectory()) return undefined;
    const base = top.real;
    const rootReal = await realpath(this.root);
    const lines: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.name !== 'SHA256SUMS') {
          const f = await this.resolve(relative(rootReal, p));
          if (f) lines.push(`${await this.sha256(f)}  ${relative(base, p)}`);
        }
      }
    };
    await walk(base);
    return lines.join('\n') + '\n';
  }



  /** Answer GET/HEAD for `rel`; returns false when there is no such file (caller sends 404). */
  async serve(rel: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (!rel.startsWith(this.prefix)) return false;
    const f = await this.resolve(rel.slice(this.prefix.length));
    if (!f) return this.fallback ? this.fallback.serve(rel, req, res) : false;
    const hex = await this.sha256(f);
    const etag = `"${hex.slice(0, 32)}"`;
    res.setHeader('Last-Modified', new Date(f.mtimeMs).toUTCString());
    res.setHeader('X-Checksum-Sha256', hex);
    res.setHeader('Digest', `sha-256=${Buffer.from(hex, 'hex').toString('base64')}`);
    res.setHeader('Content-Type', 'application/octet-stream');
    return sendRanged(req, res, f.size, etag, { file: f.path });
  }
}

/** Bytes read and written at once for a file body. */
const CHUNK = 1 << 20;
/** Chunk buffers kept for the next responses (at most SPARE_MAX MiB held while idle). */
const spare: Buffer[] = [];
const SPARE_MAX = 16;

/**
 * Bytes [start, end] of `path` into `res`, through two reused 1 MiB buffers: one is read
 * (thread pool) while the other is being written. A read stream allocated a fresh 1 MiB
 * buffer for every chunk of every download, and freeing them was a fifth of serve's time
 * under 100 downloads (GC, allocation; bench/http.bench.ts). A buffer is read into again
 * only once its previous write has completed, and goes back to the spares only when the
 * whole body was written. A file that got shorter ends the response early (the client
 * sees fewer bytes than Content-Length), as a read stream's early end did.
 */
async function sendFileRange(res: ServerResponse, path: string, start: number, end: number): Promise<void> {
  const fh = await open(path, 'r');
  const bufs = [spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK), spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK)];
  const written: (Promise<void> | undefined)[] = [undefined, undefined];
  let gone = false;
  const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
  void closed.then(() => (gone = true));
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      res.write(chunk, (err) => (err ? reject(err) : resolve()));
    });
  try {
    let pos = start;
    for (let i = 0; pos <= end && !gone; i ^= 1) {
      // the buffer's previous write must be done before it is read into again (or the client left)
      if (written[i]) await Promise.race([written[i], closed]);
      if (gone) break;
      const { bytesRead } = await fh.read(bufs[i]!, 0, Math.min(CHUNK, end - pos + 1), pos);
      if (bytesRead === 0 || gone) break;
      pos += bytesRead;
      written[i] = write(bytesRead === CHUNK ? bufs[i]! : bufs[i]!.subarray(0, bytesRead));
      written[i]!.catch(() => {}); // a failed write is the client leaving: 'close' ends the loop
    }
    if (pos <= end || gone) return void res.destroy();
    await Promise.all(written);
    res.end();
    for (const b of bufs) if (spare.length < SPARE_MAX) spare.push(b);
  } catch {
    res.destroy(); // the client went away mid-download, or the read failed
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * The conditional and ranged part of answering GET/HEAD for `size` bytes identified by
 * `etag` (If-None-Match → 304, If-Range, one Range → 206, unsatisfiable → 416), sending
 * bytes [start, end] from `body`: a stream it opens, or a file. Headers already set on `res` are kept.
 */
export async function sendRanged(req: IncomingMessage, res: ServerResponse, size: number, etag: string, body: ((start: number, end: number) => Readable) | { file: string }): Promise<true> {
  res.setHeader('ETag', etag);
  res.setHeader('Accept-Ranges', 'bytes');
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304).end();
    return true;
  }
  const range = parseRange(req.headers.range, size, req.headers['if-range'], etag);
  if (range === 'invalid') {
    res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
    return true;
  }
  const [start, end] = range ?? [0, size - 1];
  const length = size === 0 ? 0 : end - start + 1;
  res.setHeader('Content-Length', length);
  if (range) res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
  res.writeHead(range ? 206 : 200);
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return true;
  }
  if (typeof body !== 'function') {
    await sendFileRange(res, body.file, start, end);
    return true;
  }
  await pipeline(body(start, end), res).catch(() => {
    /* the client went away mid-download; nothing to clean up */
  });
  return true;
}

/** One byte range (RFC 9110 §14); multiple ranges are answered with the whole file, as many servers do. */
export function parseRange(header: string | undefined, size: number, ifRange?: string | string[], etag?: string): [number, number] | undefined | 'invalid' {
  if (!header || (ifRange && ifRange !== etag)) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return header.includes(',') ? undefined : 'invalid';
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'invalid';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'invalid';
  return [start, end];
}
