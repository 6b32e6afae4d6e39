// Slipway's node OS image as a directory on disk (what scripts/build-os-image.sh leaves
// in its cache, or what `slipway image build -o DIR` copies out): reading it, checking
// it against its own os.json, finding the cached build, and the summary people read.
// The files a bundle carries and serve offers are the catalog's OS_ASSETS.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { OS_ASSETS, OsImageError, parseOsJson, type OsJson } from '../catalog/os.ts';
import { sha256File } from '../lib/sha256.ts';

/** Where the image script caches its builds: $SLIPWAY_CACHE/os-image/<key>/. */
export const cacheRoot = (env: NodeJS.ProcessEnv = process.env) => join(env.SLIPWAY_CACHE || '/var/cache/slipway', 'os-image');

/** The files of an image directory `-o DIR` copies (root/, the tree the ext4 was made from, stays in the cache). */
export const IMAGE_FILES = ['vmlinuz', 'initrd.img', 'disk.img.zst', 'os.json', 'MANIFEST'] as const;

/** One file of the image as a bundle carries it: OS_ASSETS' path, the file on disk, its digest. */
export interface OsImageFile {
  role: keyof typeof OS_ASSETS;
  dest: string;
  path: string;
  size: number;
  sha256: string;
}

export interface OsImage {
  dir: string;
  info: OsJson;
  /** kernel, initrd, disk (digests from os.json) and os.json itself (digest of its bytes) */
  files: OsImageFile[];
}

/**
 * Read an image directory: os.json parsed, every file it names present with the size it
 * says. `verify` also hashes them (the bundle re-hashes while writing, so it does not).
 */
export async function readOsImage(dir: string, opts: { verify?: boolean } = {}): Promise<OsImage> {
  const jsonPath = join(dir, 'os.json');
  let text: Buffer;
  try {
    text = await readFile(jsonPath);
  } catch (e) {
    throw new OsImageError(`${dir}: not an OS image directory (no os.json: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const info = parseOsJson(text.toString('utf8'), jsonPath);
  const files: OsImageFile[] = [];
  for (const role of ['kernel', 'initrd', 'disk'] as const) {
    const f = info[role];
    const path = join(dir, f.file);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (e) {
      throw new OsImageError(`${dir}: os.json names ${role} ${f.file}, which is missing (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (size !== f.size) throw new OsImageError(`${path}: ${size} bytes, os.json says ${f.size}`);
    if (opts.verify) {
      const got = await sha256File(path);
      if (got !== f.sha256) throw new OsImageError(`${path}: sha256 ${got}, os.json says ${f.sha256}`);
    }
    files.push({ role, dest: OS_ASSETS[role], path, size, sha256: f.sha256 });
  }
  files.push({ role: 'manifest', dest: OS_ASSETS.manifest, path: jsonPath, size: text.length, sha256: createHash('sha256').update(text).digest('hex') });
  return { dir, info, files };
}

/**
 * The newest complete build in the cache (by os.json's time), or undefined. For a user
 * who is not root: which build the current inputs would make only the script knows, and
 * it needs root; the caller says which one it took.
 */
export async function newestCachedImage(root = cacheRoot()): Promise<OsImage | undefined> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return undefined;
  }
  let best: { image: OsImage; mtime: number } | undefined;
  for (const n of names) {
    if (n.startsWith('.')) continue; // a build in progress
    const dir = join(root, n);
    try {
      const image = await readOsImage(dir);
      const mtime = (await stat(join(dir, 'os.json'))).mtimeMs;
      if (!best || mtime > best.mtime) best = { image, mtime };
    } catch {
      // not (or not yet) a complete image
    }
  }
  return best?.image;
}

export const human = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

/** What `image build` prints at the end: the files, sizes, digests and package count. */
export function summaryText(image: OsImage): string {
  const { info } = image;
  const w = Math.max(...image.files.map((f) => f.dest.length));
  const lines = [`OS image ${info.name} ${info.version}: ${image.dir}`];
  for (const f of image.files) {
    lines.push(`  ${f.dest.padEnd(w)}  ${human(f.size).padStart(10)}  sha256:${f.sha256}`);
    if (f.role === 'disk') lines.push(`  ${''.padEnd(w)}  ${human(info.disk.rawSize).padStart(10)}  raw, sha256:${info.disk.rawSha256}`);
  }
  lines.push(`  ${info.packages.length} Debian packages (os.json lists their versions; MANIFEST the build's inputs)`);
  return lines.join('\n') + '\n';
}
