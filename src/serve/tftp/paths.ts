// Keeping every request inside the TFTP root.
//
// Decisions (shared with tftp-hpa run with -s, and dnsmasq, so boot configs written for
// them work unchanged):
//  - Leading slashes are stripped: "/pxelinux.0" is the root's pxelinux.0, as tftp-hpa
//    serves it from its chroot. An absolute path therefore never leaves the root; at
//    worst it names a file the root does not have.
//  - Backslashes are separators, as dnsmasq treats them: Windows-style loaders ask for
//    "boot\x64\wdsnbp.com". They are converted before the ".." check, so "..\..\x"
//    is refused like "../../x".
//  - Any ".." segment is refused outright (even "a/../b", which would stay inside):
//    legitimate boot loaders never send one, so it only ever means probing.
//  - Control characters are refused. NUL cannot reach here: it ends the filename field.
//  - Symlinks are followed only while they stay inside the root: the real path is
//    resolved and must be the root or below it.
//  - Only regular files are served: directories, devices, FIFOs and sockets are refused
//    before anything opens them (opening a FIFO would block; opening a device can have
//    side effects).
import { realpath, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { sep } from 'node:path';
import { ERROR_CODE } from './packet.ts';

export type RefusalReason =
  | 'write-request'
  | 'bad-mode'
  | 'bad-name'
  | 'traversal'
  | 'outside-root'
  | 'not-regular-file'
  | 'not-found'
  | 'permission'
  | 'busy'
  | 'no-descriptors'
  | 'socket-error'
  | 'bad-option'
  | 'hook-error';

/** Why a request gets no file, and the TFTP ERROR that tells the client. */
export interface Refusal {
  refused: RefusalReason;
  code: number;
  message: string;
}

export const refusal = (refused: RefusalReason, code: number, message: string): Refusal => ({ refused, code, message });

export const isRefusal = (x: unknown): x is Refusal => typeof x === 'object' && x !== null && 'refused' in x;

/** The request's filename as a clean path relative to the root ("a/b"), or why it is refused. */
export function cleanPath(filename: string): string | Refusal {
  if (/[\x00-\x1f\x7f]/.test(filename)) return refusal('bad-name', ERROR_CODE.ACCESS_VIOLATION, 'Bad file name');
  const segments = filename.replace(/\\/g, '/').split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) return refusal('traversal', ERROR_CODE.ACCESS_VIOLATION, 'Access violation');
  if (segments.length === 0) return refusal('not-regular-file', ERROR_CODE.ACCESS_VIOLATION, 'Not a regular file');
  return segments.join('/');
}

/** A file that passed every check: its real path and what stat said about it. */
export interface RootedFile {
  real: string;
  stat: BigIntStats;
}

/**
 * Resolve a clean relative path inside `realRoot` (itself already a real path).
 * Symlinks are resolved first, so the prefix check sees where a link really points.
 */
export async function locate(realRoot: string, rel: string): Promise<RootedFile | Refusal> {
  let real: string;
  try {
    real = await realpath(`${realRoot}${sep}${rel}`);
  } catch (e) {
    return fsRefusal(e);
  }
  if (real !== realRoot && !real.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) {
    return refusal('outside-root', ERROR_CODE.ACCESS_VIOLATION, 'Access violation');
  }
  let st: BigIntStats;
  try {
    st = await stat(real, { bigint: true });
  } catch (e) {
    return fsRefusal(e);
  }
  if (!st.isFile()) return refusal('not-regular-file', ERROR_CODE.ACCESS_VIOLATION, 'Not a regular file');
  return { real, stat: st };
}

/** Map a filesystem error to what the client is told; unexpected errors count as permission problems, never as crashes. */
export function fsRefusal(e: unknown): Refusal {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') return refusal('not-found', ERROR_CODE.FILE_NOT_FOUND, 'File not found');
  // The process (or the system) is out of descriptors: not the file's fault, and not a
  // missing file either (PXELINUX would fall back to another menu); the client may retry.
  if (outOfDescriptors(e)) return noDescriptors;
  // ELOOP: a symlink cycle, which only a hostile or broken root contains.
  return refusal('permission', ERROR_CODE.ACCESS_VIOLATION, 'Access violation');
}

/** The process or the system has no file descriptor left (EMFILE, ENFILE). */
export const outOfDescriptors = (e: unknown): boolean => ['EMFILE', 'ENFILE'].includes((e as NodeJS.ErrnoException | null)?.code ?? '');

export const noDescriptors: Refusal = refusal('no-descriptors', ERROR_CODE.NOT_DEFINED, 'Out of file descriptors');
