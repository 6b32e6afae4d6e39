// Data flows one way (docs/architecture.md, "Layers"): every import in src/ points from a
// folder to one below it in LAYERS, or within its own folder. Reads every import (static,
// dynamic and re-exports, type-only ones too) of every source file; tests are not a layer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from './helpers/cli.ts';

/** Top to bottom: a folder may import only folders after it. */
export const LAYERS = ['cli', 'rehearse', 'day2', 'apply', 'bundle', 'power', 'image', 'serve', 'kube', 'lifecycle', 'render', 'plan', 'secrets', 'store', 'spec', 'catalog', 'lib'] as const;

const SRC = join(ROOT, 'src');
const folderOf = (file: string): string => relative(SRC, file).split('/')[0]!;

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Every module specifier a file names: import/export ... from '...', import('...'), import '...'. */
export function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s+['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of text.matchAll(/(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

test('the import reader sees static, type-only, re-exported and dynamic imports', () => {
  const text = "import { a } from '../x/a.ts';\nimport type { B } from \"../y/b.ts\";\nexport { c } from './c.ts';\nimport '../z/side.ts';\nconst d = await import('../w/d.ts');\nimport {\n  e,\n  f,\n} from '../v/e.ts';\n";
  assert.deepEqual(specifiers(text).sort(), ['../v/e.ts', '../w/d.ts', '../x/a.ts', '../y/b.ts', '../z/side.ts', './c.ts'].sort());
});

test('every folder of src/ has a layer', () => {
  const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory() && sources(join(SRC, e.name)).length > 0).map((e) => e.name);
  for (const f of folders) assert.ok((LAYERS as readonly string[]).includes(f), `src/${f}/ is in no layer: add it to LAYERS here and in docs/architecture.md`);
});

test('imports point down the layers only', () => {
  const wrong: string[] = [];
  let checked = 0;
  for (const file of sources(SRC)) {
    const from = folderOf(file);
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue; // node: and packages
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(SRC + '/')) {
        wrong.push(`${relative(ROOT, file)} imports ${spec}, outside src/`);
        continue;
      }
      const to = folderOf(target);
      checked++;
      if (to === from) continue;
      const [a, b] = [LAYERS.indexOf(from as never), LAYERS.indexOf(to as never)];
      if (a < 0 || b < 0 || b < a) wrong.push(`${relative(ROOT, file)} (${from}) imports ${spec} (${to}): ${to} is above ${from}`);
    }
  }
  assert.ok(checked > 200, `only ${checked} imports read: is the reader broken?`);
  assert.deepEqual(wrong, [], `imports against the layers (${LAYERS.join(' → ')}):\n${wrong.join('\n')}`);
});
