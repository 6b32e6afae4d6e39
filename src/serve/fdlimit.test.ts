// The open-file limit: reading it, sharing it between HTTP and TFTP, raising it with
// prlimit (a stand-in script here: the real one would change this test's own limits).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { FIXED_FDS, LOCAL_RESERVE, ensureFdLimit, fdBudget, parseNofile } from './fdlimit.ts';
import { newLogger } from './log.ts';
import { fsRefusal } from './tftp/paths.ts';

const LIMITS = (soft: string, hard: string) => `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     
Max locked memory         8388608              8388608              bytes     
`;

function capture() {
  const lines: { level: number; msg: string }[] = [];
  const out = new PassThrough();
  out.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string })));
  return { log: newLogger({ level: 'debug', pretty: false, destination: out }), lines };
}
const tick = () => new Promise((r) => setImmediate(r));

test('/proc/self/limits: the open-files line, unlimited as Infinity', () => {
  assert.deepEqual(parseNofile(LIMITS('1024', '524288')), { soft: 1024, hard: 524288 });
  assert.deepEqual(parseNofile(LIMITS('unlimited', 'unlimited')), { soft: Infinity, hard: Infinity });
  assert.equal(parseNofile('Max cpu time unlimited unlimited seconds\n'), undefined);
  const own = parseNofile(readFileSync('/proc/self/limits', 'utf8'));
  assert.ok(own && own.soft >= 1 && own.soft <= own.hard);
});

test('the budget: every share costed at two descriptors, all of it under the soft limit', () => {
  assert.deepEqual(fdBudget({ soft: 1024, hard: 1024 }), { soft: 1024, hard: 1024, httpConnections: 340, tftpTransfers: 116 });
  for (const soft of [256, 1024, 4096, 65536, 524288, Infinity]) {
    const b = fdBudget({ soft, hard: soft });
    assert.ok(b.httpConnections >= 1 && b.tftpTransfers >= 1 && b.tftpTransfers <= 1000, `${soft}: ${JSON.stringify(b)}`);
    if (Number.isFinite(soft)) assert.ok(FIXED_FDS + 2 * (b.httpConnections + LOCAL_RESERVE) + 2 * b.tftpTransfers <= soft, `${soft}: ${JSON.stringify(b)}`);
  }
  assert.equal(fdBudget({ soft: 524288, hard: 524288 }).tftpTransfers, 1000);
  assert.ok(Number.isFinite(fdBudget({ soft: Infinity, hard: Infinity }).httpConnections));
});

test('soft below hard: prlimit raises it; when it cannot, a warning says what to do', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-fdlimit-'));
  try {
    const limits = join(dir, 'limits');
    const args = join(dir, 'args');
    const prlimit = join(dir, 'prlimit');
    // a stand-in that records its arguments and "raises" the limit in the file serve reads
    writeFileSync(prlimit, `#!/bin/sh\necho "$@" > ${args}\nprintf 'Max open files            4096                 4096                 files\\n' > ${limits}\n`);
    chmodSync(prlimit, 0o755);
    writeFileSync(limits, LIMITS('1024', '4096'));
    let c = capture();
    let b = await ensureFdLimit(c.log, { limitsFile: limits, prlimit });
    await tick();
    assert.equal(readFileSync(args, 'utf8').trim(), `--pid ${process.pid} --nofile=4096:4096`);
    assert.deepEqual(b, fdBudget({ soft: 4096, hard: 4096 }));
    assert.ok(c.lines.some((l) => l.msg === 'raised the open-file soft limit to the hard limit'));
    assert.ok(c.lines.some((l) => l.level === 40 && /open-file limit 4096 is low/.test(l.msg)));

    // no prlimit at all: the budget follows the soft limit, and the warning names LimitNOFILE
    writeFileSync(limits, LIMITS('1024', '4096'));
    c = capture();
    b = await ensureFdLimit(c.log, { limitsFile: limits, prlimit: join(dir, 'missing') });
    await tick();
    assert.deepEqual(b, fdBudget({ soft: 1024, hard: 4096 }));
    assert.ok(c.lines.some((l) => l.level === 40 && /could not raise the open-file limit to 4096 .*LimitNOFILE=4096/.test(l.msg)), JSON.stringify(c.lines));

    // plenty: one info line
    writeFileSync(limits, LIMITS('524288', '524288'));
    c = capture();
    b = await ensureFdLimit(c.log, { limitsFile: limits, prlimit: join(dir, 'missing') });
    await tick();
    assert.equal(b.tftpTransfers, 1000);
    assert.deepEqual(c.lines.map((l) => [l.level, l.msg]), [[30, 'open-file limit']]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TFTP: running out of descriptors is neither "Server busy" (its own cap) nor a missing or forbidden file', () => {
  for (const code of ['EMFILE', 'ENFILE']) assert.deepEqual(fsRefusal(Object.assign(new Error(code), { code })), { refused: 'no-descriptors', code: 0, message: 'Out of file descriptors' });
  assert.equal(fsRefusal(Object.assign(new Error('x'), { code: 'ENOENT' })).refused, 'not-found');
});
