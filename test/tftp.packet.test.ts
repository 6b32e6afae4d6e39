// The TFTP codec: every packet type both ways, every parse error by its reason, the
// documented leniencies, and a bounded fuzz run (random and mutated datagrams must give
// a packet or a TftpParseError, nothing else, and never hang).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  ERROR_CODE,
  OPTION_REASONS,
  TftpParseError,
  dataHeader,
  decode,
  encode,
  encodeAck,
  encodeError,
  encodeOack,
  encodeRequest,
  opcodeOf,
  type ParseReason,
} from '../src/serve/tftp/packet.ts';
import { cleanPath, isRefusal } from '../src/serve/tftp/paths.ts';
import { macInPath, negotiate } from '../src/serve/tftp/server.ts';
import { bufferReader, netasciiBlocks, octetBlocks, toNetascii, type BlockSource, type ByteReader } from '../src/serve/tftp/source.ts';
import { seededRandom } from './helpers/tftp.ts';

/** Raw bytes from a readable spec: numbers are 16-bit opcodes/fields, strings are bytes as written. */
function bytes(...parts: (number | string)[]): Buffer {
  return Buffer.concat(
    parts.map((p) => {
      if (typeof p === 'string') return Buffer.from(p, 'latin1');
      const b = Buffer.alloc(2);
      b.writeUInt16BE(p);
      return b;
    }),
  );
}

function parseFails(buf: Buffer, reason: ParseReason): void {
  assert.throws(
    () => decode(buf),
    (e: unknown) => e instanceof TftpParseError && e.reason === reason,
    `expected ${reason} for ${buf.toString('hex')}`,
  );
}

describe('TFTP codec: round trips', () => {
  test('RRQ with every known option, and an unknown one kept aside', () => {
    const buf = encodeRequest({ op: 'RRQ', filename: 'pxelinux.cfg/01-52-54-00-20-30-11', mode: 'octet', options: { blksize: 1468, tsize: 0, timeout: 3, windowsize: 8 }, unknown: [['multicast', '']] });
    assert.deepEqual(decode(buf), {
      op: 'RRQ',
      filename: 'pxelinux.cfg/01-52-54-00-20-30-11',
      mode: 'octet',
      options: { blksize: 1468, tsize: 0, timeout: 3, windowsize: 8 },
      unknown: [['multicast', '']],
    });
    assert.deepEqual(buf, bytes(1, 'pxelinux.cfg/01-52-54-00-20-30-11\0octet\0blksize\x001468\0tsize\x000\0timeout\x003\0windowsize\x008\0multicast\0\0'));
  });

  test('WRQ, and mode and option names are case-insensitive', () => {
    const p = decode(bytes(2, 'f\0OcTeT\0BLKSIZE\x00512\0'));
    assert.deepEqual(p, { op: 'WRQ', filename: 'f', mode: 'octet', options: { blksize: 512 }, unknown: [] });
    assert.equal((decode(bytes(1, 'f\0NETASCII\0')) as { mode: string }).mode, 'netascii');
    assert.equal((decode(bytes(1, 'f\0mail\0')) as { mode: string }).mode, 'mail');
  });

  test('a UTF-8 filename survives', () => {
    const p = decode(encodeRequest({ op: 'RRQ', filename: 'böot/ё.efi', mode: 'octet', options: {} }));
    assert.equal((p as { filename: string }).filename, 'böot/ё.efi');
  });

  test('DATA, ACK, ERROR, OACK', () => {
    const data = randomBytes(512);
    assert.deepEqual(decode(encode({ op: 'DATA', block: 65535, data })), { op: 'DATA', block: 65535, data });
    assert.deepEqual(decode(Buffer.concat([dataHeader(0), Buffer.alloc(0)])), { op: 'DATA', block: 0, data: Buffer.alloc(0) });
    assert.deepEqual(decode(encodeAck(7)), { op: 'ACK', block: 7 });
    assert.deepEqual(decode(encodeError(ERROR_CODE.FILE_NOT_FOUND, 'File not found')), { op: 'ERROR', code: 1, message: 'File not found' });
    assert.deepEqual(decode(encodeOack({ blksize: 1428, windowsize: 8, tsize: 123456789 })), { op: 'OACK', options: { blksize: 1428, windowsize: 8, tsize: 123456789 }, unknown: [] });
    assert.deepEqual(encodeAck(258), bytes(4, 258));
  });

  test('error messages are kept printable and NUL-free', () => {
    const b = encodeError(0, 'bad\0news\n');
    assert.equal(b.indexOf(0, 4), b.length - 1);
    assert.equal((decode(b) as { message: string }).message, 'bad?news?');
  });

  test('encoders refuse what cannot go on the wire', () => {
    assert.throws(() => encodeAck(65536), RangeError);
    assert.throws(() => dataHeader(-1), RangeError);
    assert.throws(() => encodeError(70000, 'x'), RangeError);
    assert.throws(() => encodeRequest({ op: 'RRQ', filename: 'a\0b', mode: 'octet', options: {} }), RangeError);
  });

  test('option bounds: the RFCs’ extremes pass', () => {
    const p = decode(bytes(1, 'f\0octet\0blksize\x008\0timeout\x00255\0windowsize\x0065535\0tsize\x00999999999999\0'));
    assert.deepEqual((p as { options: object }).options, { blksize: 8, timeout: 255, windowsize: 65535, tsize: 999999999999 });
    assert.deepEqual((decode(bytes(1, 'f\0octet\0blksize\x0065464\0timeout\x001\0windowsize\x001\0')) as { options: object }).options, { blksize: 65464, timeout: 1, windowsize: 1 });
  });

  test('leniencies: NUL padding after a request, bytes after an ACK, an unterminated ERROR', () => {
    assert.deepEqual(decode(bytes(1, 'f\0octet\0blksize\x001468\0\0\0\0')), { op: 'RRQ', filename: 'f', mode: 'octet', options: { blksize: 1468 }, unknown: [] });
    assert.deepEqual(decode(bytes(4, 9, 'junk')), { op: 'ACK', block: 9 });
    assert.deepEqual(decode(bytes(5, 8, 'no terminator')), { op: 'ERROR', code: 8, message: 'no terminator' });
    assert.deepEqual(decode(bytes(5, 0)), { op: 'ERROR', code: 0, message: '' });
  });

  test('opcodeOf names the opcode of a packet that does not decode', () => {
    assert.equal(opcodeOf(bytes(1, 'f')), 'RRQ');
    assert.equal(opcodeOf(bytes(9)), undefined);
    assert.equal(opcodeOf(Buffer.from([0])), undefined);
  });
});

describe('TFTP codec: every parse error', () => {
  const cases: [string, Buffer, ParseReason][] = [
    ['empty datagram', Buffer.alloc(0), 'truncated'],
    ['one byte', Buffer.from([0]), 'truncated'],
    ['opcode 0', bytes(0, 'x\0'), 'bad-opcode'],
    ['opcode 7', bytes(7, 'x\0'), 'bad-opcode'],
    ['opcode 0xffff', bytes(0xffff), 'bad-opcode'],
    ['RRQ with nothing after the opcode', bytes(1), 'truncated'],
    ['RRQ filename without NUL', bytes(1, 'pxelinux.0'), 'no-nul'],
    ['RRQ empty filename', bytes(1, '\0octet\0'), 'empty-filename'],
    ['RRQ without mode', bytes(1, 'f\0'), 'truncated'],
    ['RRQ mode without NUL', bytes(1, 'f\0octet'), 'no-nul'],
    ['RRQ unknown mode', bytes(1, 'f\0binary\0'), 'bad-mode'],
    ['RRQ empty mode', bytes(1, 'f\0\0'), 'bad-mode'],
    ['RRQ filename not UTF-8', bytes(1, 'f\xff\xfe\0octet\0'), 'bad-encoding'],
    ['option name without NUL', bytes(1, 'f\0octet\0blksize'), 'no-nul'],
    ['option without value', bytes(1, 'f\0octet\0blksize\0'), 'missing-value'],
    ['option value without NUL', bytes(1, 'f\0octet\0blksize\x001468'), 'no-nul'],
    ['empty option name before a value', bytes(1, 'f\0octet\0\x001468\0'), 'empty-option'],
    ['duplicate option', bytes(1, 'f\0octet\0blksize\x00512\0BlkSize\x001468\0'), 'duplicate-option'],
    ['duplicate unknown option', bytes(1, 'f\0octet\0x\x001\0x\x002\0'), 'duplicate-option'],
    ['non-numeric blksize', bytes(1, 'f\0octet\0blksize\x00big\0'), 'bad-option-value'],
    ['negative timeout', bytes(1, 'f\0octet\0timeout\0-1\0'), 'bad-option-value'],
    ['empty windowsize', bytes(1, 'f\0octet\0windowsize\0\0'), 'bad-option-value'],
    ['blksize with a sign', bytes(1, 'f\0octet\0blksize\0+512\0'), 'bad-option-value'],
    ['blksize 7', bytes(1, 'f\0octet\0blksize\x007\0'), 'option-out-of-range'],
    ['blksize 65465', bytes(1, 'f\0octet\0blksize\x0065465\0'), 'option-out-of-range'],
    ['timeout 0', bytes(1, 'f\0octet\0timeout\x000\0'), 'option-out-of-range'],
    ['timeout 256', bytes(1, 'f\0octet\0timeout\x00256\0'), 'option-out-of-range'],
    ['windowsize 0', bytes(1, 'f\0octet\0windowsize\x000\0'), 'option-out-of-range'],
    ['windowsize 65536', bytes(1, 'f\0octet\0windowsize\x0065536\0'), 'option-out-of-range'],
    ['tsize beyond 2^53', bytes(1, 'f\0octet\0tsize\x0099999999999999999\0'), 'option-out-of-range'],
    ['DATA without block', bytes(3, 'x'), 'truncated'],
    ['ACK without block', bytes(4, 'x'), 'truncated'],
    ['ERROR without code', bytes(5), 'truncated'],
    ['OACK empty after opcode is fine, but an unterminated option is not', bytes(6, 'blksize'), 'no-nul'],
    ['OACK out-of-range value', bytes(6, 'blksize\x0070000\0'), 'option-out-of-range'],
  ];
  for (const [name, buf, reason] of cases) test(`${name} → ${reason}`, () => parseFails(buf, reason));

  test('option problems are the ones a server answers with ERROR 8', () => {
    assert.ok(OPTION_REASONS.has('option-out-of-range') && OPTION_REASONS.has('duplicate-option') && OPTION_REASONS.has('missing-value'));
    assert.ok(!OPTION_REASONS.has('bad-mode') && !OPTION_REASONS.has('no-nul'));
  });
});

describe('TFTP pure helpers', () => {
  test('paths: leading slashes stripped, backslashes are separators, .. and control characters refused', () => {
    assert.equal(cleanPath('/pxelinux.0'), 'pxelinux.0');
    assert.equal(cleanPath('//boot/./x//y'), 'boot/x/y');
    assert.equal(cleanPath('boot\\x64\\wdsnbp.com'), 'boot/x64/wdsnbp.com');
    for (const bad of ['../etc/passwd', '/../x', 'a/../../b', '..\\..\\x', 'a/..', '..']) {
      const r = cleanPath(bad);
      assert.ok(isRefusal(r) && r.refused === 'traversal', bad);
    }
    for (const bad of ['a\x01b', 'x\ny', 'del\x7f']) {
      const r = cleanPath(bad);
      assert.ok(isRefusal(r) && r.refused === 'bad-name', bad);
    }
    const root = cleanPath('/');
    assert.ok(isRefusal(root) && root.refused === 'not-regular-file');
  });

  test('MACs in request paths', () => {
    assert.equal(macInPath('pxelinux.cfg/01-52-54-00-20-30-11'), '52:54:00:20:30:11');
    assert.equal(macInPath('grub/grub.cfg-01-52-54-00-AA-bb-11'), '52:54:00:aa:bb:11');
    assert.equal(macInPath('pxelinux.cfg/C0A8010A'), undefined);
    assert.equal(macInPath('pxelinux.cfg/default'), undefined);
    assert.equal(macInPath('pxelinux.cfg/01-52-54-00-20-30'), undefined);
  });

  test('negotiation grants at most what was asked and stays within limits', () => {
    const limits = { maxBlksize: 1468, maxWindowsize: 64, maxWindowBytes: 1024 * 1024, timeoutMs: 1000 };
    assert.deepEqual(negotiate({}, 100, limits), { blksize: 512, windowsize: 1, timeoutMs: 1000, oack: undefined });
    assert.deepEqual(negotiate({ blksize: 8192, tsize: 0, windowsize: 4, timeout: 2 }, 100, limits), {
      blksize: 1468,
      windowsize: 4,
      timeoutMs: 2000,
      oack: { blksize: 1468, windowsize: 4, timeout: 2, tsize: 100 },
    });
    // A window holds at most maxWindowBytes: 64 KiB blocks leave room for 16.
    assert.equal(negotiate({ blksize: 65464, windowsize: 1000 }, 1, { ...limits, maxBlksize: 65464 }).windowsize, 16);
    // tsize of an unknown size (netascii) is left out; with nothing else asked there is no OACK.
    assert.equal(negotiate({ tsize: 0 }, undefined, limits).oack, undefined);
  });

  test('netascii: LF → CR LF, CR → CR NUL', () => {
    assert.deepEqual(toNetascii(Buffer.from('a\nb\rc\r\n')), Buffer.from('a\r\nb\r\0c\r\0\r\n', 'latin1'));
    const plain = Buffer.from('no line ends');
    assert.equal(toNetascii(plain), plain);
  });
});

describe('TFTP block sources', () => {
  /** All blocks of a source, asking `count` at a time, as a transfer does. */
  async function drain(src: BlockSource, count: number): Promise<Buffer[]> {
    const all: Buffer[] = [];
    for (let guard = 0; guard < 1_000_000; guard++) {
      const got = await src.next(count);
      if (got.length === 0) break;
      all.push(...got);
    }
    return all;
  }
  /** A reader that answers through the thread pool's shape: a promise, and short reads only at the end. */
  const asyncReader = (buf: Buffer): ByteReader => ({ read: async (pos, len) => buf.subarray(pos, pos + len), close: async () => {} });

  function checkBlocks(blocks: Buffer[], data: Buffer, blksize: number, what: string): void {
    assert.deepEqual(Buffer.concat(blocks), data, what);
    assert.equal(blocks.length, Math.floor(data.length / blksize) + 1, `${what}: a final short (maybe empty) block`);
    blocks.slice(0, -1).forEach((b, i) => assert.equal(b.length, blksize, `${what}: block ${i + 1}`));
    assert.ok(blocks.at(-1)!.length < blksize, `${what}: last block short`);
  }

  test('octet: sizes around block and read-ahead boundaries, sync and async readers, any window', async () => {
    const blksize = 100;
    for (const size of [0, 1, 99, 100, 101, 1000, 4096, 4100, 12_345]) {
      const data = randomBytes(size);
      for (const count of [1, 3, 16]) {
        checkBlocks(await drain(octetBlocks(bufferReader(data), blksize, 4096), count), data, blksize, `sync size ${size} window ${count}`);
        checkBlocks(await drain(octetBlocks(asyncReader(data), blksize, 4096), count), data, blksize, `async size ${size} window ${count}`);
      }
    }
  });

  test('octet from disk: the next chunk is read ahead once half is taken, one read at a time, and a failed read ends the stream', async () => {
    const data = randomBytes(10_000);
    const reads: [number, number][] = [];
    let inFlight = 0;
    let most = 0;
    const reader: ByteReader = {
      read: async (pos, len) => {
        reads.push([pos, len]);
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setImmediate(r));
        inFlight--;
        return data.subarray(pos, pos + len);
      },
      close: async () => {},
    };
    const src = octetBlocks(reader, 100, 1000); // 10 blocks a read
    assert.equal((await src.next(1)).length, 1);
    assert.deepEqual(reads, [[0, 1000]]);
    for (let i = 0; i < 4; i++) assert.ok(Array.isArray(src.next(1)), 'blocks already read answer synchronously');
    assert.deepEqual(reads, [[0, 1000], [1000, 1000]], 'with half of the chunk left, the next one is being read');
    await new Promise((r) => setImmediate(r));
    const rest: Buffer[] = [];
    for (let guard = 0; guard < 1000; guard++) {
      const got = await src.next(1);
      if (!got.length) break;
      rest.push(...got);
    }
    checkBlocks([...Array.from({ length: 5 }, (_, i) => data.subarray(i * 100, i * 100 + 100)), ...rest], data, 100, 'read ahead');
    assert.equal(most, 1, 'never two reads at once');

    const failing: ByteReader = { read: async (pos, len) => (pos >= 1000 ? Promise.reject(new Error('EIO')) : data.subarray(pos, pos + len)), close: async () => {} };
    const bad = octetBlocks(failing, 100, 1000);
    await bad.next(6); // the read ahead of [1000, 2000) starts, and fails in the background
    assert.equal((await bad.next(4)).length, 4, 'the blocks already read are still served');
    await assert.rejects(async () => bad.next(1), /EIO/);
  });

  test('octet: a cached file answers synchronously (no promise per block in lock-step)', () => {
    const src = octetBlocks(bufferReader(randomBytes(1000)), 512);
    assert.ok(Array.isArray(src.next(1)));
  });

  test('netascii: the converted stream, cut into blocks, whatever falls on a block edge', async () => {
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i % 7 === 0 ? 0x0a : i % 11 === 0 ? 0x0d : 0x41 + (i % 26))));
    for (const blksize of [8, 512, 1468]) {
      checkBlocks(await drain(netasciiBlocks(asyncReader(data), blksize), 4), toNetascii(data), blksize, `blksize ${blksize}`);
    }
    checkBlocks(await drain(netasciiBlocks(bufferReader(Buffer.alloc(0)), 512), 1), Buffer.alloc(0), 512, 'empty');
    // 256 LFs become exactly 512 bytes: the final block is empty.
    checkBlocks(await drain(netasciiBlocks(bufferReader(Buffer.alloc(256, 0x0a)), 512), 1), toNetascii(Buffer.alloc(256, 0x0a)), 512, 'exact');
  });
});

describe('TFTP codec: fuzz', () => {
  // A deterministic generator, so a failure can be reproduced from the seed in the message.
  const rng = seededRandom;

  const seeds: Buffer[] = [
    encodeRequest({ op: 'RRQ', filename: 'undionly.kpxe', mode: 'octet', options: { blksize: 1468, tsize: 0, windowsize: 8, timeout: 1 } }),
    encodeRequest({ op: 'WRQ', filename: 'x', mode: 'netascii', options: {} }),
    encode({ op: 'DATA', block: 1, data: Buffer.from('data') }),
    encodeAck(3),
    encodeError(1, 'File not found'),
    encodeOack({ blksize: 1428, tsize: 42 }),
  ];

  function mutate(next: () => number, base: Buffer): Buffer {
    const b = Buffer.from(base);
    const kind = Math.floor(next() * 4);
    if (kind === 0) return randomLike(next, Math.floor(next() * 64));
    if (kind === 1) return b.subarray(0, Math.floor(next() * b.length)); // truncation
    if (kind === 2) {
      for (let i = 0, n = 1 + Math.floor(next() * 4); i < n && b.length; i++) b[Math.floor(next() * b.length)] = Math.floor(next() * 256);
      return b;
    }
    // splice in NULs and option-ish tokens
    const tokens = ['\0', 'blksize\0', '65465\0', 'octet\0', '\0\0', 'tsize\x000\0', 'windowsize\0'];
    const tok = Buffer.from(tokens[Math.floor(next() * tokens.length)]!, 'latin1');
    const at = Math.floor(next() * (b.length + 1));
    return Buffer.concat([b.subarray(0, at), tok, b.subarray(at)]);
  }

  function randomLike(next: () => number, n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = next() < 0.3 ? 0 : Math.floor(next() * 256);
    if (n >= 2 && next() < 0.7) b.writeUInt16BE(1 + Math.floor(next() * 6), 0); // mostly valid opcodes
    return b;
  }

  test('20,000 random and mutated datagrams: a packet or a TftpParseError, within seconds', () => {
    const seed = 0x5eed;
    const next = rng(seed);
    const started = performance.now();
    const outcomes = { ok: 0, parseErrors: 0 };
    for (let i = 0; i < 20_000; i++) {
      const buf = mutate(next, seeds[i % seeds.length]!);
      try {
        const p = decode(buf);
        outcomes.ok++;
        // What decodes must encode again (the server re-encodes nothing it did not build, but the codec should be closed).
        if (p.op !== 'DATA') decode(encode(p));
      } catch (e) {
        if (!(e instanceof TftpParseError)) assert.fail(`seed ${seed} iteration ${i}: ${buf.toString('hex')} threw ${String(e)}`);
        outcomes.parseErrors++;
      }
    }
    const ms = performance.now() - started;
    assert.ok(ms < 5_000, `fuzz took ${ms} ms`);
    // Both outcomes must actually occur, or the fuzzer is not exploring anything.
    assert.ok(outcomes.ok > 1000 && outcomes.parseErrors > 1000, JSON.stringify(outcomes));
  });
});
