// Cluster file text → Spec, or every problem at once with its line and column.
// Three passes: YAML syntax, the JSON Schema (shape and types), then semantic rules
// (validate.ts). Defaults are filled in only when all three pass.
import { LineCounter, parseDocument, visit, type Node } from 'yaml';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { ClusterFileSchema, type ClusterFile } from './schema.ts';
import { locate, type LocatedProblem, type PathSeg, type Problem } from './problems.ts';
import { semanticProblems } from './validate.ts';
import { bmcProblems } from './bmc.ts'; // issue 18
import { resolve } from './resolve.ts';
import type { Spec } from './types.ts';
import { dirname } from 'node:path';
import { readSources } from './additions.ts';

// ajv-formats is CommonJS with a default export; under nodenext it arrives wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
// verbose: errors carry the offending value, so a message can show it (escaped).
const ajv = addFormats(new Ajv({ allErrors: true, strict: false, verbose: true }));
/** yaml's own default: more alias expansions than this is taken as an alias bomb. */
const MAX_ALIAS_COUNT = 100;
const checkShape = ajv.compile<ClusterFile>(ClusterFileSchema);

export interface LoadResult {
  spec?: Spec;
  problems: LocatedProblem[];
}

export const hasErrors = (ps: { severity: string }[]): boolean => ps.some((p) => p.severity === 'error');

export function parseClusterFile(text: string, file: string, baseDir?: string): LoadResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => {
        const { line, col } = lc.linePos(e.pos[0]);
        return { severity: 'error', path: [], message: `YAML: ${e.message.split('\n')[0]}`, file, line, col };
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    // yaml refuses an alias bomb (a few lines expanding to millions of nodes) while
    // converting, with no position: point at the first alias, where the expansion starts.
    let at = 0;
    visit(doc, {
      Alias(_, node: Node) {
        at = node.range?.[0] ?? 0;
        return visit.BREAK;
      },
    });
    const { line, col } = lc.linePos(at);
    const why = e instanceof ReferenceError ? `aliases expand to too much data (more than ${MAX_ALIAS_COUNT} alias uses: an alias bomb?)` : (e as Error).message;
    return { problems: [{ severity: 'error', path: [], message: `YAML: ${why}`, file, line, col }] };
  }
  const shape: Problem[] = checkShape(raw) ? [] : dedupe((checkShape.errors ?? []).flatMap(fromAjv));
  if (hasErrors(shape)) return { problems: locate(shape, doc, lc, file) };
  const cf = raw as ClusterFile;
  const problems = locate(semanticProblems(cf), doc, lc, file);
  if (hasErrors(problems)) return { problems };
  // issue 20: the additions' `source` files, beside the cluster file (baseDir for files given by another name)
  const sources = readSources(cf, baseDir ?? dirname(file));
  problems.push(...locate(sources.problems, doc, lc, file));
  // issue 18: BMC password files exist and are not world-readable (relative to the same directory)
  problems.push(...locate(bmcProblems(cf, baseDir ?? dirname(file)), doc, lc, file));
  return hasErrors(problems) ? { problems } : { spec: resolve(cf, sources.contents, baseDir ?? dirname(file)), problems };
}

/** Problems found after loading (a clash with a rendered file, say) at their FILE:LINE:COL in `text`. */
export function locateProblems(text: string, file: string, problems: Problem[]): LocatedProblem[] {
  const lc = new LineCounter();
  return locate(problems, parseDocument(text, { lineCounter: lc }), lc, file);
}

function pointerToPath(pointer: string): PathSeg[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** A value as the message shows it: JSON-escaped (a newline reads as \n), long ones cut. */
function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}..."` : s;
}

/** Edit distance counting a swap of two neighbours as one edit (optimal string alignment). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  return d[a.length]![b.length]!;
}

/** The known field a misspelt one most likely meant: close in spelling, or the same ignoring case. */
function closest(field: string, known: string[]): string | undefined {
  const limit = Math.max(1, Math.floor(field.length / 3));
  let best: { name: string; d: number } | undefined;
  for (const name of known) {
    const d = name.toLowerCase() === field.toLowerCase() ? 0 : distance(field, name);
    if (d <= limit && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

/** Ajv's messages rewritten for people who edit YAML, not JSON Schema. */
function fromAjv(e: ErrorObject): Problem[] {
  const path = pointerToPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  const schema = e.parentSchema as { description?: string } | undefined;
  const expected = schema?.description ? `: expected ${schema.description}` : '';
  // A key that fails `propertyNames` (label keys): Ajv reports the inner failure with the
  // key in `propertyName`, then a summary without detail, which adds nothing.
  if (e.keyword === 'propertyNames') return [];
  if (e.propertyName !== undefined)
    return [{ severity: 'error', path: [...path, e.propertyName], atKey: true, message: `key ${shown(e.propertyName)} is not valid${expected}` }];
  switch (e.keyword) {
    case 'required':
      return [{ severity: 'error', path, message: `missing required field "${String(p.missingProperty)}"` }];
    case 'additionalProperties': {
      const field = String(p.additionalProperty);
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const near = closest(field, known);
      return [{ severity: 'error', path: [...path, field], atKey: true, message: `unknown field ${shown(field)}${near ? `: did you mean "${near}"?` : known.length ? ` (fields here: ${known.join(', ')})` : ''}` }];
    }
    case 'const':
      return [{ severity: 'error', path, message: `must be "${String(p.allowedValue)}"` }];
    case 'enum':
      return [{ severity: 'error', path, message: `must be one of: ${(p.allowedValues as unknown[]).join(', ')}` }];
    case 'type':
      return [{ severity: 'error', path, message: `must be ${String(p.type)}` }];
    case 'pattern':
    case 'format':
      return [{ severity: 'error', path, message: `${shown(e.data)} is not valid${expected || ': invalid value'}` }];
    case 'maximum':
    case 'minimum':
      return [{ severity: 'error', path, message: `${shown(e.data)} is out of range: ${e.message ?? ''}${expected ? ` (${schema!.description})` : ''}` }];
    case 'maxLength':
    case 'maxProperties':
    case 'maxItems':
      return [{ severity: 'error', path, message: `too long: ${e.message ?? e.keyword}` }];
    default:
      return [{ severity: 'error', path, message: e.message ?? e.keyword }];
  }
}

function dedupe(ps: Problem[]): Problem[] {
  const seen = new Set<string>();
  return ps.filter((p) => {
    const k = `${p.path.join('/')}|${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
