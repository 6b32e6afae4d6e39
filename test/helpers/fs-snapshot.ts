// A directory's state for "nothing was touched" assertions.
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** path -> mode, mtime and bytes of every entry under dir: equal snapshots mean nothing was touched. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    const st = await stat(p);
    out[p] = `${(st.mode & 0o777).toString(8)} ${st.mtimeMs} ${e.isFile() ? await readFile(p, 'utf8') : '<dir>'}`;
  }
  return out;
}
