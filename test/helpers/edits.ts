// The hostile-file tests' shared moves: a good cluster file edited by literal replacements
// (each must apply), the FILE:LINE:COL a problem must name, and the CLI run without
// blocking the event loop (the cases run three at a time).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { BIN } from './cli.ts';

/** `base` with each [from, to] replaced once; an edit that changes nothing fails the case. */
export function applyEdits(base: string, c: { name: string; edits: [string | RegExp, string][] }): string {
  return c.edits.reduce<string>((s, [a, b]) => {
    const next = s.replace(a, b);
    assert.notEqual(next, s, `${c.name}: edit ${a} did not apply`);
    return next;
  }, base);
}

/** 1-based line and column of `needle` in `text` (the YAML parser's own convention); a ▸ in it marks the point. */
export function position(text: string, needle: string): string {
  const mark = Math.max(0, needle.indexOf('▸'));
  const found = text.indexOf(needle.replace('▸', ''));
  assert.ok(found >= 0, `"${needle}" not in the edited file`);
  const before = text.slice(0, found + mark).split('\n');
  return `${before.length}:${before.at(-1)!.length + 1}`;
}

/** `slipway ARGS` as a child process, asynchronously. */
export function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 120_000, encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ code: e ? ((e as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}
