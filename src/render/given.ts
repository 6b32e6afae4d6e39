// What a machine was last given: for each file of its root, the sha256 of its bytes, its
// mode, owner and link target — never the contents (keys stay in the render). `serve`
// records it when a machine fetches its configuration, `slipway apply` after it delivered
// a change; apply diffs a fresh render against it. Kept as <state>/given/<machine>.json.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { File } from '../plan/types.ts';
import type { Tree } from './tree.ts';
import { diskWriter, SECRET_MODE } from '../secrets/fs.ts';

export interface GivenFile {
  sha256: string;
  mode: number;
  owner?: string;
  link?: string;
}

/** machine path → what it was given */
export type Given = Record<string, GivenFile>;

export const givenPath = (stateDir: string, machine: string): string => join(stateDir, 'given', `${machine}.json`);

export const givenFile = (f: File): GivenFile => ({
  sha256: createHash('sha256').update(f.contents).digest('hex'),
  mode: f.mode,
  ...(f.owner ? { owner: f.owner } : {}),
  ...(f.link ? { link: f.link } : {}),
});

/** A machine's root files from the render tree (machines/<name>/root/...), by machine path. */
export function machineFiles(tree: Tree, machine: string): Map<string, File> {
  const prefix = `machines/${machine}/root`;
  const out = new Map<string, File>();
  for (const [rel, f] of tree) if (rel.startsWith(prefix + '/')) out.set(rel.slice(prefix.length), { ...f, path: rel.slice(prefix.length) });
  return out;
}

export function givenOf(files: Map<string, File>): Given {
  const out: Given = {};
  for (const p of [...files.keys()].sort()) out[p] = givenFile(files.get(p)!);
  return out;
}

/** Saved atomically, 0600 (hashes of keys say nothing of them, but the state directory is private). */
export async function saveGiven(stateDir: string, machine: string, given: Given): Promise<void> {
  await diskWriter.write(givenPath(stateDir, machine), JSON.stringify(given, null, 1) + '\n', SECRET_MODE);
}

/** undefined when the machine has no record yet; throws naming the file when it is damaged. */
export async function loadGiven(stateDir: string, machine: string): Promise<Given | undefined> {
  const file = givenPath(stateDir, machine);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}): remove it to have apply compare with the machine's own files`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file} must hold a JSON object`);
  for (const [p, g] of Object.entries(raw as Record<string, unknown>)) {
    const v = g as Partial<GivenFile> | null;
    if (!p.startsWith('/') || typeof v?.sha256 !== 'string' || typeof v.mode !== 'number') throw new Error(`${file}: ${p}: not a {sha256, mode} record: remove the file to have apply compare with the machine's own files`);
  }
  return raw as Given;
}
