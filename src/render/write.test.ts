// A failed write leaves the previous output exactly as it was, and no staging folder behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTreeAtomic, readTree } from './write.ts';
import type { Tree } from './tree.ts';

const tree = (entries: [string, string, number?][]): Tree => new Map(entries.map(([p, c, mode]) => [p, { path: p, contents: c, mode: mode ?? 0o644 }]));

test('writes files with their modes, and a second write replaces the tree', async () => {
  const base = mkdtempSync(join(tmpdir(), 'slipway-write-'));
  try {
    const dir = join(base, 'out');
    await writeTreeAtomic(dir, tree([['a/key', 'secret', 0o600], ['b.txt', 'one']]));
    assert.equal(statSync(join(dir, 'a/key')).mode & 0o777, 0o600);
    await writeTreeAtomic(dir, tree([['c.txt', 'two']]));
    assert.deepEqual([...(await readTree(dir)).keys()], ['c.txt']);
    assert.deepEqual(readdirSync(base), ['out'], 'no staging or old folders left');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a failure half-way leaves the previous DIR intact', async () => {
  const base = mkdtempSync(join(tmpdir(), 'slipway-write-'));
  try {
    const dir = join(base, 'out');
    await writeTreeAtomic(dir, tree([['keep.txt', 'previous']]));
    // "x" as a file and as a folder: the second write fails after some files are written.
    await assert.rejects(writeTreeAtomic(dir, tree([['new.txt', 'new'], ['x', 'file'], ['x/y', 'under a file']])));
    assert.equal(readFileSync(join(dir, 'keep.txt'), 'utf8'), 'previous');
    assert.deepEqual([...(await readTree(dir)).keys()], ['keep.txt']);
    assert.deepEqual(readdirSync(base), ['out'], 'staging folder removed');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
