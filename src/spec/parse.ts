// Cluster file text → Spec, or every problem at once with its line and column.
// Three passes: YAML syntax, the JSON Schema (shape and types), then semantic rules
// (validate.ts). Defaults are filled in only when all three pass.
import { LineCounter, parseDocument } from 'yaml';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { ClusterFileSchema, type ClusterFile } from './schema.ts';
import { locate, type LocatedProblem, type PathSeg, type Problem } from './problems.ts';
import { semanticProblems } from './validate.ts';
import { resolve } from './resolve.ts';
import type { Spec } from './types.ts';

// ajv-formats is CommonJS with a default export; under nodenext it arrives wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
const ajv = addFormats(new Ajv({ allErrors: true, strict: false }));
const checkShape = ajv.compile<ClusterFile>(ClusterFileSchema);

export interface LoadResult {
  spec?: Spec;
  problems: LocatedProblem[];
}

export const hasErrors = (ps: { severity: string }[]): boolean => ps.some((p) => p.severity === 'error');

export function parseClusterFile(text: string, file: string): LoadResult {
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
  const raw: unknown = doc.toJS();
  const shape: Problem[] = checkShape(raw) ? [] : dedupe((checkShape.errors ?? []).map(fromAjv));
  if (hasErrors(shape)) return { problems: locate(shape, doc, lc, file) };
  const cf = raw as ClusterFile;
  const problems = locate(semanticProblems(cf), doc, lc, file);
  return hasErrors(problems) ? { problems } : { spec: resolve(cf), problems };
}

function pointerToPath(pointer: string): PathSeg[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** Ajv's messages rewritten for people who edit YAML, not JSON Schema. */
function fromAjv(e: ErrorObject): Problem {
  const path = pointerToPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  const schema = e.parentSchema as { description?: string } | undefined;
  switch (e.keyword) {
    case 'required':
      return { severity: 'error', path, message: `missing required field "${String(p.missingProperty)}"` };
    case 'additionalProperties':
      return { severity: 'error', path: [...path, String(p.additionalProperty)], atKey: true, message: `unknown field "${String(p.additionalProperty)}"` };
    case 'const':
      return { severity: 'error', path, message: `must be "${String(p.allowedValue)}"` };
    case 'enum':
      return { severity: 'error', path, message: `must be one of: ${(p.allowedValues as unknown[]).join(', ')}` };
    case 'type':
      return { severity: 'error', path, message: `must be ${String(p.type)}` };
    case 'pattern':
    case 'format':
      return { severity: 'error', path, message: `invalid value${schema?.description ? `: expected ${schema.description}` : ''}` };
    default:
      return { severity: 'error', path, message: e.message ?? e.keyword };
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
