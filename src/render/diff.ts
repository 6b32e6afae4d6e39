// What a render would add, change or remove, per file; secrets are never printed.
import type { Tree } from './tree.ts';

export interface Change {
  kind: 'add' | 'change' | 'remove';
  path: string;
  /** why it changed: contents, mode, or link target */
  detail?: string;
  secret: boolean;
  /** the cluster file's entry that asked for it ("spec.files[2]"); undefined: Slipway's own */
  origin?: string;
}

export function diffTrees(current: Tree, next: Tree): Change[] {
  const changes: Change[] = [];
  for (const [path, f] of next) {
    const cur = current.get(path);
    if (!cur) changes.push({ kind: 'add', path, secret: !!f.secret, origin: f.origin });
    else {
      const why: string[] = [];
      if ((cur.link ?? '') !== (f.link ?? '')) why.push(`link ${cur.link ?? '(file)'} → ${f.link ?? '(file)'}`);
      else if (!f.link && cur.contents !== f.contents) why.push('contents');
      if (!f.link && cur.mode !== f.mode) why.push(`mode ${cur.mode.toString(8)} → ${f.mode.toString(8)}`);
      if (why.length) changes.push({ kind: 'change', path, detail: why.join(', '), secret: !!f.secret, origin: f.origin });
    }
  }
  for (const path of current.keys()) if (!next.has(path)) changes.push({ kind: 'remove', path, secret: false });
  return changes.sort((a, b) => (a.path < b.path ? -1 : 1));
}
