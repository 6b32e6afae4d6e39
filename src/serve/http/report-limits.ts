// What a machine's report may carry in `detail`. The 64 KiB body limit alone let a
// report nest 4,300 levels deep: storing and serving that (pretty-printed JSON indents
// every level) took seconds of the one thread DHCP, TFTP and HTTP share, and a little
// deeper overflowed the stack. report.sh sends {unit, logs} with at most 8000 bytes of
// logs; these limits leave room for that and more, and bound what is stored and served.
export const DETAIL_LIMITS = {
  /** nested objects/arrays, `detail` itself being level 1 */
  depth: 8,
  /** keys of one object */
  keys: 64,
  /** items of one array */
  items: 256,
  /** characters of one string value */
  string: 16 * 1024,
  /** characters of one key */
  key: 128,
  /** values in all (objects, arrays and scalars) */
  values: 4096,
} as const;

/**
 * Why `detail` (already JSON.parse'd) is refused, naming the limit; undefined when it is
 * within every limit. Iterative and stops at the first excess, so a hostile shape costs
 * no more than the limits allow.
 */
export function checkDetail(detail: unknown): string | undefined {
  const L = DETAIL_LIMITS;
  if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) return 'detail must be an object';
  const stack: [unknown, number][] = [[detail, 1]];
  let values = 0;
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (++values > L.values) return `detail holds more than ${L.values} values`;
    if (typeof v === 'string') {
      if (v.length > L.string) return `detail has a string longer than ${L.string} characters`;
      continue;
    }
    if (typeof v !== 'object' || v === null) continue; // number, boolean, null
    if (depth > L.depth) return `detail is nested deeper than ${L.depth} levels`;
    if (Array.isArray(v)) {
      if (v.length > L.items) return `detail has an array of more than ${L.items} items`;
      for (const x of v) stack.push([x, depth + 1]);
      continue;
    }
    const keys = Object.keys(v);
    if (keys.length > L.keys) return `detail has an object with more than ${L.keys} keys`;
    for (const k of keys) {
      if (k.length > L.key) return `detail has a key longer than ${L.key} characters`;
      stack.push([(v as Record<string, unknown>)[k], depth + 1]);
    }
  }
  return undefined;
}
