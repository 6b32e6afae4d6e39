// Slipway's node OS image as a directory on disk (what scripts/build-os-image.sh leaves
// in its cache, or what `slipway image build -o DIR` copies out): reading it, checking
// it against its own os.json, finding the cached build, and the summary people read.
// The files a bundle carries and serve offers are the catalog's OS_ASSETS.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { OS_ASSETS } from '../catalog/os.ts';
import { sha256File } from '../lib/sha256.ts';

/** Where the image script caches its builds: $SLIPWAY_CACHE/os-image/<key>/. */
export const cacheRoot = (env: NodeJS.ProcessEnv = process.env) => join(env.SLIPWAY_CACHE || '/var/cache/slipway', 'os-image');

/** The files of an image directory `-o DIR` copies (root/, the tree the ext4 was made from, stays in the cache). */
export const IMAGE_FILES = ['vmlinuz', 'initrd.img', 'disk.img.zst', 'os.json', 'MANIFEST'] as const;

export interface OsFileInfo {
  file: string;
  sha256: string;
  size: number;
}

/** os.json: the fields Slipway reads (the build writes more: modules, firmware, inputs, buildSeconds). */
export interface OsJson {
  name: string;
  version: string;
  kernel: OsFileInfo;
  initrd: OsFileInfo;
  disk: OsFileInfo & { rawSize: number; rawSha256: string };
  packages: { name: string; version: string }[];
  [more: string]: unknown;
}

export class OsImageError extends Error {}

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

const HEX64 = /^[0-9a-f]{64}$/;
const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** Parse and check os.json's shape; each problem names the field. */
export function parseOsJson(text: string, where: string): OsJson {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new OsImageError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  const bad = (what: string) => new OsImageError(`${where}: ${what}`);
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw bad('not a JSON object');
  const o = j as Record<string, unknown>;
  for (const k of ['name', 'version'] as const) if (typeof o[k] !== 'string' || o[k] === '') throw bad(`${k} is missing`);
  const fileInfo = (k: 'kernel' | 'initrd' | 'disk') => {
    const f = o[k] as Partial<OsFileInfo> | undefined;
    if (!f || typeof f !== 'object') throw bad(`${k} is missing`);
    if (typeof f.file !== 'string' || !/^[A-Za-z0-9._-]+$/.test(f.file)) throw bad(`${k}.file is not a file name`);
    if (typeof f.sha256 !== 'string' || !HEX64.test(f.sha256)) throw bad(`${k}.sha256 is not 64 hex digits`);
    if (!isCount(f.size)) throw bad(`${k}.size is not a byte count`);
  };
  fileInfo('kernel');
  fileInfo('initrd');
  fileInfo('disk');
  const disk = o.disk as Partial<OsJson['disk']>;
  if (!isCount(disk.rawSize)) throw bad('disk.rawSize is not a byte count');
  if (typeof disk.rawSha256 !== 'string' || !HEX64.test(disk.rawSha256)) throw bad('disk.rawSha256 is not 64 hex digits');
  if (!Array.isArray(o.packages) || !o.packages.every((p) => p && typeof p.name === 'string' && typeof p.version === 'string')) throw bad('packages is not a list of {name, version}');
  return o as OsJson;
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
