// The random-access tar index reads what tar-stream, GNU tar and bsdtar write: ustar
// name prefixes, pax and GNU long names, base-256 sizes; and refuses corrupt or truncated
// tars with the offset of the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { indexTar } from './tarindex.ts';

async function packed(entries: [string, Buffer][]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => pack.on('end', () => r()));
  for (const [name, body] of entries) pack.entry({ name, size: body.length }, body);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function index(buf: Buffer) {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-tar-'));
  const f = join(dir, 't.tar');
  writeFileSync(f, buf);
  const fh = await open(f);
  try {
    return await indexTar(fh, buf.length, 't.tar');
  } finally {
    await fh.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const long = `oci/${'a'.repeat(120)}/${'b'.repeat(150)}/blob`;

test('tar-stream tars: short, ustar-prefixed and pax-named entries, at their data offsets', async () => {
  const bodies: [string, Buffer][] = [['slipway-bundle.json', Buffer.from('{}')], [`x/${'p'.repeat(140)}/name`, Buffer.from('prefixed')], [long, Buffer.alloc(1000, 7)], ['empty', Buffer.alloc(0)]];
  const buf = await packed(bodies);
  const idx = await index(buf);
  assert.deepEqual(idx.map((e) => e.name), bodies.map(([n]) => n));
  for (const [i, [, body]] of bodies.entries()) assert.deepEqual(buf.subarray(idx[i]!.offset, idx[i]!.offset + idx[i]!.size), body);
});

test('GNU tar and pax formats written by tar(1)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-tar-'));
  try {
    const name = `${'d'.repeat(110)}/${'f'.repeat(120)}`;
    mkdirSync(join(dir, 'src', 'd'.repeat(110)), { recursive: true });
    writeFileSync(join(dir, 'src', name), 'gnu long name');
    for (const format of ['gnu', 'posix', 'ustar']) {
      const out = join(dir, `${format}.tar`);
      const args = ['-C', join(dir, 'src'), `--format=${format}`, '-cf', out, '.'];
      const r = spawnSync('tar', args, { encoding: 'utf8' });
      if (format === 'ustar') {
        // ustar cannot hold a 231-byte name at all: tar says so
        assert.notEqual(r.stderr, '');
        continue;
      }
      assert.equal(r.status, 0, r.stderr);
      const buf = readFileSync(out);
      const e = (await index(buf)).find((x) => x.name === name);
      assert.ok(e, `${format}: ${name} not indexed`);
      assert.equal(buf.subarray(e.offset, e.offset + e.size).toString(), 'gnu long name');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('base-256 sizes (GNU, for entries of 8 GiB and more) are read', async () => {
  const buf = await packed([['big', Buffer.from('12345')]]);
  // rewrite the size field as base-256 and fix the header checksum
  buf.fill(0, 124, 136);
  buf[124] = 0x80;
  buf[135] = 5;
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += buf[i]!;
  buf.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  const [e] = await index(buf);
  assert.equal(e!.size, 5);
});

test('a flipped header byte, a truncated tar and duplicate names are errors naming the offset', async () => {
  const buf = await packed([['a', Buffer.from('x')], ['b', Buffer.alloc(2000, 1)]]);
  const bad = Buffer.from(buf);
  bad[1024 + 3] = bad[1024 + 3]! ^ 0x20; // inside the second header's name
  await assert.rejects(index(bad), /tar header at offset 1024 is corrupt/);
  await assert.rejects(index(buf.subarray(0, 1024 + 512 + 1000)), /runs past the end of the file \(truncated tar\)/);
  await assert.rejects(index(await packed([['a', Buffer.from('1')], ['a', Buffer.from('2')]])), /a appears twice/);
});
