// A directory's state for "nothing was touched" assertions.
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** path -> mode, mtime and bytes (a link: its target) of every entry under dir: equal snapshots mean nothing was touched. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    const st = await lstat(p);
    const what = e.isFile() ? await readFile(p, 'utf8') : e.isSymbolicLink() ? `-> ${await readlink(p)}` : '<dir>';
    out[p] = `${(st.mode & 0o777).toString(8)} ${st.mtimeMs} ${what}`;
  }
  return out;
}
