// Taking files out of tar archives (release tarballs, image layers) with tar-stream,
// hashing each as it is written. Only regular files are taken: a release binary that
// turns out to be a symlink or a hard link is an error, not something to follow.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import tar from 'tar-stream';

export type Compression = 'gzip' | 'zstd' | 'none';

export interface Extracted {
  /** content-addressed path: <dir>/sha256-<hex> */
  path: string;
  sha256: string;
  size: number;
  mode: number;
}

/** "./etcd-v3.6.4-linux-amd64//etcd" → "etcd-v3.6.4-linux-amd64/etcd" */
export const normalizeMember = (p: string) => p.replace(/^(\.\/|\/)+/, '').replace(/\/{2,}/g, '/').replace(/\/$/, '');


/** Each entry of a (compressed) tar in order; `visit` may consume the entry's stream or leave it (it is drained). */
async function walk(file: string, compression: Compression, visit: (h: tar.Header, body: AsyncIterable<Buffer>) => Promise<boolean | void>): Promise<void> {
  const ex = tar.extract();
  let stopped = false;
  const consume = (async () => {
    for await (const entry of ex) {
      if (!stopped && (await visit(entry.header, entry as AsyncIterable<Buffer>)) === true) stopped = true;
      entry.resume();
    }
  })();
  // the extractor is fed by pipeline; when the visitor has what it wanted, the rest still
  // has to be read (tar-stream has no random access), so `stopped` only skips the visits
  const src = createReadStream(file, { highWaterMark: 1 << 20 });
  const sink = ex as unknown as Writable;
  const feed =
    compression === 'gzip' ? pipeline(src, createGunzip(), sink)
    : compression === 'zstd' ? pipeline(src, createZstdDecompress(), sink)
    : pipeline(src, sink);
  await Promise.all([feed, consume]);
}

/** Write a stream to <dir>/sha256-<hex> (content-addressed), hashing on the way. */
export async function storeStream(body: AsyncIterable<Buffer>, dir: string): Promise<{ path: string; sha256: string; size: number }> {
  const tmp = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
  const hash = createHash('sha256');
  let size = 0;
  try {
    await pipeline(
      body,
      async function* (src: AsyncIterable<Buffer>) {
        for await (const chunk of src) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(tmp),
    );
    const sha256 = hash.digest('hex');
    const path = join(dir, `sha256-${sha256}`);
    await rename(tmp, path);
    return { path, sha256, size };
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Take `members` (archive paths) out of a tar archive into `dir`. Throws naming the
 * archive and every member it lacks or that is not a regular file.
 */
export async function extractMembers(archive: string, what: string, compression: Compression, members: string[], dir: string): Promise<Map<string, Extracted>> {
  const wanted = new Set(members.map(normalizeMember));
  const got = new Map<string, Extracted>();
  const problems: string[] = [];
  try {
    await walk(archive, compression, async (h, body) => {
      const name = normalizeMember(h.name);
      if (!wanted.has(name) || got.has(name)) return;
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        problems.push(`${name} is a ${h.type}${h.linkname ? ` to ${h.linkname}` : ''}, not a regular file`);
        return;
      }
      const s = await storeStream(body, dir);
      got.set(name, { ...s, mode: h.mode ?? 0o755 });
      return got.size === wanted.size;
    });
  } catch (e) {
    throw new Error(`${what}: cannot read the archive: ${(e as Error).message}`);
  }
  for (const m of wanted) if (!got.has(m) && !problems.some((p) => p.startsWith(m + ' '))) problems.push(`no ${m} in it`);
  if (problems.length) throw new Error(`${what}: ${problems.join('; ')}`);
  return got;
}

/**
 * What an image's filesystem holds at `member`, given its layers bottom to top: the top
 * layer that mentions the path decides (a whiteout, or an opaque marker on a parent
 * directory in a higher layer, hides lower layers' files).
 */
export async function extractFromLayers(layers: { file: string; compression: Compression }[], member: string, what: string, dir: string): Promise<Extracted> {
  const want = normalizeMember(member);
  const slash = want.lastIndexOf('/');
  const parent = slash < 0 ? '' : want.slice(0, slash);
  const base = want.slice(slash + 1);
  const ancestors = want.split('/').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('/'));
  for (let i = layers.length - 1; i >= 0; i--) {
    let found: Extracted | undefined;
    let hidden = false;
    let problem: string | undefined;
    await walk(layers[i]!.file, layers[i]!.compression, async (h, body) => {
      const name = normalizeMember(h.name);
      if (name === want) {
        if (h.type !== 'file' && h.type !== 'contiguous-file') {
          problem = `${want} is a ${h.type} in layer ${i + 1}`;
          return true;
        }
        found = { ...(await storeStream(body, dir)), mode: h.mode ?? 0o755 };
        return true;
      }
      if (name === (parent ? `${parent}/.wh.${base}` : `.wh.${base}`)) hidden = true;
      if (ancestors.some((a) => name === `${a}/.wh..wh..opq`)) hidden = true;
      return undefined;
    });
    if (problem) throw new Error(`${what}: ${problem}`);
    if (found) return found;
    if (hidden) break;
  }
  throw new Error(`${what}: the image has no ${want}`);
}

export const compressionOf = (mediaType: string): Compression =>
  /gzip/.test(mediaType) ? 'gzip' : /zstd/.test(mediaType) ? 'zstd' : 'none';
