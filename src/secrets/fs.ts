// File helpers for the state directory: private directories, crash-safe writes with the
// final mode from the first byte, and reads that treat "missing" as a normal answer.
import { mkdir, open, rename, rm, rmdir, readFile, stat, chmod } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';

export const DIR_MODE = 0o700;
export const SECRET_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

const isErrno = (e: unknown, code: string): boolean => (e as NodeJS.ErrnoException | null)?.code === code;

/** Group or others have some access to it (any of the 0077 bits); false when it does not exist. */
export async function othersCanRead(path: string): Promise<boolean> {
  try {
    return ((await stat(path)).mode & 0o077) !== 0;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw e;
  }
}

/** Creates dir (and parents) 0700; tightens an existing dir that others can read. Returns true if it tightened. */
export async function ensurePrivateDir(dir: string): Promise<boolean> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  if (!(await othersCanRead(dir))) return false;
  await chmod(dir, DIR_MODE);
  return true;
}

/**
 * Writes via a temp file in the same directory and rename(2), so a crash leaves either
 * the old file or the new one, never half of one. The temp file is opened with the
 * final mode (and fchmod'ed past the umask) before any byte is written, so a key is
 * never readable by others, not even briefly.
 */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.chmod(mode);
    await fh.writeFile(data);
    await fh.sync(); // the data must be on disk before the rename makes it the real file
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
}

export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return undefined;
    throw e;
  }
}

/** Brings a secret file that someone loosened (copied, untarred) back to 0600. Returns true if it changed it. */
export async function tightenSecretFile(path: string): Promise<boolean> {
  if (!(await othersCanRead(path))) return false;
  try {
    await chmod(path, SECRET_MODE);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false; // gone since: nothing to tighten
    throw e;
  }
}

export async function removeIfExists(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** Removes dir if empty; a non-empty or missing dir is left alone. */
export async function removeDirIfEmpty(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch (e) {
    if (!isErrno(e, 'ENOTEMPTY') && !isErrno(e, 'ENOENT') && !isErrno(e, 'EEXIST')) throw e;
  }
}

/**
 * Every change store.ts makes goes through a Writer, so `slipway plan` can compute the
 * secrets a render would use (reissued leaves included) without touching the state.
 */
export interface Writer {
  /** crash-safe write, creating parent directories 0700 */
  write(path: string, data: string, mode: number): Promise<void>;
  remove(path: string): Promise<void>;
  /** removes dir if empty */
  prune(dir: string): Promise<void>;
  /** tightenSecretFile; true if it had to */
  tighten(path: string): Promise<boolean>;
  /** ensurePrivateDir; true if it had to tighten */
  privateDir(dir: string): Promise<boolean>;
}

export const diskWriter: Writer = {
  async write(path, data, mode) {
    await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
    await writeFileAtomic(path, data, mode);
  },
  remove: removeIfExists,
  prune: removeDirIfEmpty,
  tighten: tightenSecretFile,
  privateDir: ensurePrivateDir,
};

export const dryRunWriter: Writer = {
  write: async () => {},
  remove: async () => {},
  prune: async () => {},
  tighten: async () => false,
  privateDir: async () => false,
};
