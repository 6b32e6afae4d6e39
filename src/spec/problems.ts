// A problem found in a cluster file, located at FILE:LINE:COL so editors and people can
// jump to it. Paths are kept as arrays until printing; positions come from the YAML AST.
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

export type PathSeg = string | number;

export interface Problem {
  severity: 'error' | 'warning';
  path: PathSeg[];
  message: string;
  /** point at the key instead of the value (unknown fields) */
  atKey?: boolean;
  /** the other entry of a clash: its FILE:LINE:COL is added to the message */
  also?: PathSeg[];
}

export interface LocatedProblem extends Problem {
  file: string;
  line: number;
  col: number;
}

export function formatPath(path: PathSeg[]): string {
  let out = '';
  // A key that is not a plain word (a label key with a space or a newline) is shown quoted
  // and escaped, so the message stays one line and says exactly which key.
  for (const seg of path)
    out += typeof seg === 'number' ? `[${seg}]` : !/^[A-Za-z0-9_./-]+$/.test(seg) ? `[${JSON.stringify(seg)}]` : out ? `.${seg}` : seg;
  return out || '(file)';
}

export function formatProblem(p: LocatedProblem): string {
  const sev = p.severity === 'warning' ? 'warning: ' : '';
  return `${p.file}:${p.line}:${p.col}: ${formatPath(p.path)}: ${sev}${p.message}`;
}

/** Offset of the node at `path` (or of its deepest existing ancestor) in the source text. */
function offsetOf(doc: Document, path: PathSeg[], atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === seg);
      if (!pair) return offset;
      const key = pair.key as Node;
      const value = pair.value as Node | null;
      if ((last && atKey) || !value?.range) return key.range?.[0] ?? offset;
      node = value;
      offset = value.range[0];
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item?.range) return offset;
      node = item;
      offset = item.range[0];
    } else {
      return offset;
    }
  }
  return offset;
}

export function locate(problems: Problem[], doc: Document, lc: LineCounter, file: string): LocatedProblem[] {
  return problems.map((p) => {
    const { line, col } = lc.linePos(offsetOf(doc, p.path, p.atKey ?? false));
    if (!p.also) return { ...p, file, line, col };
    const other = lc.linePos(offsetOf(doc, p.also, false));
    return { ...p, file, line, col, message: `${p.message} (${formatPath(p.also)}: ${file}:${other.line}:${other.col})` };
  });
}
