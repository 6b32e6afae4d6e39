// Write a tree to DIR atomically: build it beside DIR, then swap directories, so a
// failure at any point leaves the previous DIR as it was. Files are created with their
// final mode (never a readable key, even briefly) inside a 0700 staging directory.
import { mkdir, rename, rm, readdir, readFile, lstat, readlink } from 'node:fs/promises';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Tree } from './tree.ts';

export async function writeTreeAtomic(dir: string, tree: Tree): Promise<void> {
  const target = resolve(dir);
  const suffix = randomBytes(4).toString('hex');
  const staging = `${target}.tmp-${suffix}`;
  const old = `${target}.old-${suffix}`;
  await mkdir(dirname(target), { recursive: true });
  await mkdir(staging, { mode: 0o700 });
  try {
    writeAll(staging, tree);
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
  let hadOld = false;
  try {
    await rename(target, old);
    hadOld = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      await rm(staging, { recursive: true, force: true });
      throw e;
    }
  }
  try {
    await rename(staging, target);
  } catch (e) {
    if (hadOld) await rename(old, target);
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
  if (hadOld) await rm(old, { recursive: true, force: true });
}

// Synchronous on purpose: tens of thousands of small files (1,000 machines) are written
// several times faster without a thread-pool round trip per call, and the staging
// directory is private until the swap.
function writeAll(staging: string, tree: Tree): void {
  const dirs = new Set<string>();
  for (const rel of tree.keys()) dirs.add(dirname(join(staging, rel)));
  for (const d of [...dirs].sort()) mkdirSync(d, { recursive: true, mode: 0o755 });
  const umask = process.umask();
  for (const [rel, f] of tree) {
    const path = join(staging, rel);
    if (f.link) symlinkSync(f.link, path);
    else {
      writeFileSync(path, f.contents, { mode: f.mode, flag: 'wx' });
      if (f.mode & umask) chmodSync(path, f.mode); // the umask took bits away
    }
  }
}

/** Read an existing output directory back as a tree (for `slipway plan`); empty when DIR does not exist. */
export async function readTree(dir: string): Promise<Tree> {
  const tree: Tree = new Map();
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(dir, rel), { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && rel === '') return;
      throw e;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const abs = join(dir, r);
      if (e.isDirectory()) await walk(r);
      else if (e.isSymbolicLink()) tree.set(r, { path: r, mode: 0o777, contents: '', link: await readlink(abs) });
      else tree.set(r, { path: r, mode: (await lstat(abs)).mode & 0o7777, contents: await readFile(abs, 'utf8') });
    }
  };
  await walk('');
  return tree;
}

