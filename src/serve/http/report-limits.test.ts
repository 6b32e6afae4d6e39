// A report's detail is bounded in depth, width, string length and values, and the check
// itself is bounded: it stops at the first excess and does not recurse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkDetail, DETAIL_LIMITS as L } from './report-limits.ts';

const nest = (n: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < n; i++) v = { a: v };
  return v;
};

test('what report.sh sends passes; each limit is named when exceeded', () => {
  assert.equal(checkDetail({ unit: 'kubelet.service', logs: 'x'.repeat(8000) }), undefined);
  assert.equal(checkDetail(nest(L.depth)), undefined);
  assert.match(checkDetail(nest(L.depth + 1))!, /nested deeper than 8 levels/);
  assert.match(checkDetail([1])!, /must be an object/);
  assert.match(checkDetail(null)!, /must be an object/);
  assert.match(checkDetail({ s: 'x'.repeat(L.string + 1) })!, /string longer than/);
  assert.match(checkDetail({ a: Array(L.items + 1).fill(0) })!, /array of more than/);
  assert.match(checkDetail(Object.fromEntries(Array.from({ length: L.keys + 1 }, (_, i) => [`k${i}`, i])))!, /more than 64 keys/);
  assert.match(checkDetail({ ['k'.repeat(L.key + 1)]: 1 })!, /key longer than/);
  assert.match(checkDetail({ a: Array.from({ length: 20 }, () => Array(250).fill(0)) })!, /more than 4096 values/);
});

test('a hostile depth far past the stack is refused, not overflowed', () => {
  const text = `${'['.repeat(60_000)}${']'.repeat(60_000)}`;
  assert.match(checkDetail({ d: JSON.parse(text) })!, /nested deeper/);
  assert.match(checkDetail(nest(200_000))!, /nested deeper/);
});
