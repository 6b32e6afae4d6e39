// Slipway's TFTP server against the real clients installed here — curl, tftp-hpa's tftp,
// busybox tftp and atftp (the one that asks for windowsize) — on 127.0.0.1, byte-exact by
// sha256; then refusals, the resolve hook, loss and retransmission, duplicate ACKs, many
// transfers at once and block-number rollover.
//
// The kernel here has no sch_netem, so loss comes from a seeded lossy UDP relay between a
// real client and the server (LossyProxy) and from an in-process client that loses DATA on
// purpose (tftpGet). Every wait is bounded; client programs are killed by pid on timeout.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encodeAck, encodeRequest } from '../src/serve/tftp/packet.ts';
import { LossyProxy, runBounded, startTestTftp, tftpGet, type RunResult, type TestTftp } from './helpers/tftp.ts';

const HOST = '127.0.0.1';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const MISSING = ['curl', 'tftp', 'busybox', 'atftp'].filter((c) => !has(c));

let work: string;
let root: string;
let out: string;
let srv: TestTftp;
/** the same root with a 40 ms first timeout, for the loss tests (the main server keeps the default 1 s) */
let fast: TestTftp;
const seen: { mac: string; via: string }[] = [];
const files = new Map<string, Buffer>();

function addFile(name: string, data: Buffer): void {
  const path = join(root, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, data);
  files.set(name, data);
}

/** Where a client writes its copy; a fresh name each time so a stale file can never pass. */
let outN = 0;
const outFile = () => join(out, `f${++outN}`);
const fileSha = (p: string) => (existsSync(p) ? sha(readFileSync(p)) : 'missing');

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'slipway-tftp-'));
  root = join(work, 'root');
  out = join(work, 'out');
  mkdirSync(root);
  mkdirSync(out);
  addFile('tiny.bin', randomBytes(100));
  addFile('exact512.bin', randomBytes(512));
  addFile('mult512.bin', randomBytes(512 * 64));
  addFile('mult1468.bin', randomBytes(1468 * 32));
  addFile('mult1428.bin', randomBytes(1428 * 32));
  addFile('big.bin', randomBytes(3 * 1024 * 1024 + 123));
  addFile('boot/ipxe.efi', randomBytes(70_000));
  addFile('text.txt', Buffer.from('line one\nline two\r\nbare\rcarriage\n'));
  addFile('pxelinux.cfg/default', Buffer.from('DEFAULT local\nLABEL local\n  LOCALBOOT 0\n'));
  // Things that must be refused.
  mkdirSync(join(root, 'subdir'));
  symlinkSync('/etc/passwd', join(root, 'escape'));
  symlinkSync('/dev/null', join(root, 'devnull-link'));
  symlinkSync('../../..', join(root, 'up'));
  symlinkSync('tiny.bin', join(root, 'inside-link')); // a link that stays inside is fine
  spawnSync('mknod', [join(root, 'nulldev'), 'c', '1', '3']);
  spawnSync('mkfifo', [join(root, 'fifo')]);
  // A short first timeout keeps the loss tests quick; enough retries that a loaded
  // machine's scheduling stalls never make it give up. Only those tests use it: atftp
  // aborts on a duplicate OACK, which a 40 ms timer on a loaded machine can cause.
  fast = await startTestTftp({ root, timeoutMs: 40, maxRetries: 8 });
  srv = await startTestTftp({
    root,
    inventory: { seen: (mac, via) => void seen.push({ mac, via }) },
    // The hook `slipway serve` plugs in: per-MAC PXELINUX menus that exist on no disk.
    resolve: (path, client) => {
      if (path === 'pxelinux.cfg/01-de-ad-be-ef-00-01') throw new Error('inventory unavailable');
      return path === 'pxelinux.cfg/01-52-54-00-20-30-11' ? Buffer.from(`DEFAULT install\n# for ${client}\n`) : undefined;
    },
  });
});

after(async () => {
  await srv?.close();
  await fast?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------- the clients

type Client = { name: string; blksize: number; get(remote: string, local: string): Promise<RunResult> };
const port = () => String(srv.port);
const CLIENTS: Client[] = [
  { name: 'curl', blksize: 512, get: (r, l) => runBounded('curl', ['-sS', '--max-time', '20', '-o', l, `tftp://${HOST}:${port()}/${r}`]) },
  { name: 'curl --tftp-blksize 1468', blksize: 1468, get: (r, l) => runBounded('curl', ['-sS', '--max-time', '20', '--tftp-blksize', '1468', '-o', l, `tftp://${HOST}:${port()}/${r}`]) },
  { name: 'tftp-hpa -m binary', blksize: 512, get: (r, l) => runBounded('tftp', ['-m', 'binary', HOST, port(), '-c', 'get', r, l]) },
  { name: 'tftp-hpa -v -m octet', blksize: 512, get: (r, l) => runBounded('tftp', ['-v', '-m', 'octet', HOST, port(), '-c', 'get', r, l]) },
  { name: 'busybox tftp -b 1468', blksize: 1468, get: (r, l) => runBounded('busybox', ['tftp', '-b', '1468', '-g', '-r', r, '-l', l, HOST, port()]) },
  {
    name: 'atftp windowsize 8',
    blksize: 1428,
    get: (r, l) => runBounded('atftp', ['--option', 'windowsize 8', '--option', 'blksize 1428', '-g', '-r', r, '-l', l, HOST, port()]),
  },
];

describe('real clients fetch byte-exact', { skip: MISSING.length ? `missing ${MISSING.join(', ')}` : false }, () => {
  for (const c of CLIENTS) {
    test(c.name, async () => {
      const multiple = c.blksize === 512 ? 'mult512.bin' : c.blksize === 1468 ? 'mult1468.bin' : 'mult1428.bin';
      for (const name of ['tiny.bin', 'exact512.bin', multiple, 'big.bin', 'boot/ipxe.efi', 'inside-link']) {
        const local = outFile();
        const r = await c.get(name, local);
        const want = name === 'inside-link' ? files.get('tiny.bin')! : files.get(name)!;
        assert.equal(fileSha(local), sha(want), `${c.name} ${name}: exit ${r.code}\n${r.out}`);
      }
    });
  }

  test('atftp asked for windowsize 8 and the OACK granted it', async () => {
    const before = await srv.metric('slipway_tftp_options_acknowledged_total', { option: 'windowsize' });
    const local = outFile();
    const r = await runBounded('atftp', ['--verbose', '--option', 'windowsize 8', '--option', 'blksize 1428', '-g', '-r', 'big.bin', '-l', local, HOST, port()]);
    assert.equal(fileSha(local), sha(files.get('big.bin')!), r.out);
    assert.equal(await srv.metric('slipway_tftp_options_acknowledged_total', { option: 'windowsize' }), before + 1);
    const start = srv.logs.findLast((l) => l.msg === 'tftp transfer start' && l.file === 'big.bin');
    assert.equal(start?.windowsize, 8);
    assert.equal(start?.blksize, 1428);
    // Our own client reads the OACK itself.
    const g = await tftpGet(srv.port, 'big.bin', { options: { windowsize: 8, blksize: 1428, tsize: 0 } });
    assert.deepEqual(g.oack, { windowsize: 8, blksize: 1428, tsize: files.get('big.bin')!.length });
    assert.equal(sha(g.data), sha(files.get('big.bin')!));
  });

  test('netascii: tftp-hpa -m ascii converts back to the same bytes', async () => {
    const local = outFile();
    const r = await runBounded('tftp', ['-m', 'ascii', HOST, port(), '-c', 'get', 'text.txt', local]);
    assert.equal(fileSha(local), sha(files.get('text.txt')!), r.out);
    // On the wire it was netascii: LF → CR LF, CR → CR NUL.
    const g = await tftpGet(srv.port, 'text.txt', { mode: 'netascii' });
    assert.deepEqual(g.data, Buffer.from('line one\r\nline two\r\0\r\nbare\r\0carriage\r\n', 'latin1'));
  });
});

// ---------------------------------------------------------------- refusals

describe('refusals: a TFTP ERROR, a failing client, a counted and logged reason', { skip: MISSING.length ? `missing ${MISSING.join(', ')}` : false }, () => {
  /** Run a fetch that must fail; return the refusal reasons counted meanwhile. */
  async function refused(run: (local: string) => Promise<RunResult>, reason: string, clientFails: (r: RunResult) => boolean): Promise<void> {
    const before = await srv.metric('slipway_tftp_refusals_total', { reason });
    const logsBefore = srv.logs.length;
    const local = outFile();
    const r = await run(local);
    assert.ok(clientFails(r), `client did not report the refusal: exit ${r.code}\n${r.out}`);
    const content = existsSync(local) ? readFileSync(local) : Buffer.alloc(0);
    assert.equal(content.length, 0, 'nothing may arrive');
    assert.equal(await srv.metric('slipway_tftp_refusals_total', { reason }), before + 1, `refusal ${reason} not counted`);
    assert.ok(srv.logs.slice(logsBefore).some((l) => l.msg === 'tftp refused' && l.reason === reason), 'refusal not logged');
  }
  // tftp-hpa exits 0 even when the server refuses; it prints the ERROR instead.
  const hpaError = (code: number) => (r: RunResult) => new RegExp(`Error code ${code}`).test(r.out);
  const failed = (r: RunResult) => r.code !== 0;
  const hpa = (remote: string) => (l: string) => runBounded('tftp', ['-m', 'binary', HOST, port(), '-c', 'get', remote, l]);

  test('../etc/passwd (tftp-hpa sends it as is)', () => refused(hpa('../etc/passwd'), 'traversal', hpaError(2)));
  test('%2e%2e/etc/passwd through curl (which would otherwise normalise ../ away)', () =>
    refused((l) => runBounded('curl', ['-sS', '-o', l, `tftp://${HOST}:${port()}/%2e%2e/etc/passwd`]), 'traversal', failed));
  test('..\\..\\etc\\passwd: backslashes are separators too', () =>
    refused((l) => runBounded('atftp', ['-g', '-r', '..\\..\\etc\\passwd', '-l', l, HOST, port()]), 'traversal', failed));
  test('an absolute path stays inside the root: /etc/passwd is not found there', () =>
    refused((l) => runBounded('busybox', ['tftp', '-g', '-r', '/etc/passwd', '-l', l, HOST, port()]), 'not-found', failed));
  test('a symlink out of the root', () => refused(hpa('escape'), 'outside-root', hpaError(2)));
  test('a path through a symlink that climbs out', () => refused(hpa('up/etc/passwd'), 'outside-root', hpaError(2)));
  test('a symlink to /dev/null', () => refused(hpa('devnull-link'), 'outside-root', hpaError(2)));
  test('a directory', () => refused(hpa('subdir'), 'not-regular-file', hpaError(2)));
  test('a device file inside the root', async (t) => {
    if (!existsSync(join(root, 'nulldev')) || !statSync(join(root, 'nulldev')).isCharacterDevice()) return t.skip('mknod not permitted here');
    await refused(hpa('nulldev'), 'not-regular-file', hpaError(2));
  });
  test('a FIFO inside the root (and the server does not block on it)', async () => {
    await refused(hpa('fifo'), 'not-regular-file', hpaError(2));
  });
  test('a write request (tftp -c put)', async () => {
    const local = join(out, 'upload.txt');
    writeFileSync(local, 'must not land');
    const before = await srv.metric('slipway_tftp_refusals_total', { reason: 'write-request' });
    const r = await runBounded('tftp', ['-m', 'binary', HOST, port(), '-c', 'put', local, 'uploaded.txt']);
    assert.match(r.out, /Error code 2/, r.out);
    assert.equal(existsSync(join(root, 'uploaded.txt')), false);
    assert.equal(await srv.metric('slipway_tftp_refusals_total', { reason: 'write-request' }), before + 1);
    const bb = await runBounded('busybox', ['tftp', '-p', '-l', local, '-r', 'uploaded.txt', HOST, port()]);
    assert.notEqual(bb.code, 0, bb.out);
  });
  test('a missing file is ERROR 1', () => refused(hpa('no/such/file'), 'not-found', hpaError(1)));
  test('bad options are ERROR 8', async () => {
    const reply = await rawExchange(Buffer.from('\x00\x01f\x00octet\x00blksize\x004\x00', 'latin1'));
    assert.deepEqual(reply, { op: 'ERROR', code: 8, message: 'Bad option' });
    const dup = await rawExchange(Buffer.from('\x00\x01tiny.bin\x00octet\x00tsize\x000\x00tsize\x000\x00', 'latin1'));
    assert.equal(dup?.op === 'ERROR' && dup.code, 8);
    const badMode = await rawExchange(Buffer.from('\x00\x01tiny.bin\x00binary\x00', 'latin1'));
    assert.equal(badMode?.op === 'ERROR' && badMode.code, 4);
  });
  test('truncated requests draw no reply (no amplification toward a spoofed source)', async () => {
    for (const junk of ['\x00\x01', '\x00\x01pxelinux.0', '\x00\x02x\x00octet']) assert.equal(await rawExchange(Buffer.from(junk, 'latin1'), 300), undefined, JSON.stringify(junk));
  });
  test('the server keeps serving after all that', async () => {
    const g = await tftpGet(srv.port, 'big.bin', { options: { blksize: 1468 } });
    assert.equal(sha(g.data), sha(files.get('big.bin')!));
  });
});

/** Send one datagram to the request port and return the first reply, decoded (undefined after waitMs). */
function rawExchange(packet: Buffer, waitMs = 2_000): Promise<ReturnType<typeof decode> | undefined> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, waitMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(decode(m));
    });
    s.bind(0, HOST, () => s.send(packet, srv.port, HOST));
  });
}

// ---------------------------------------------------------------- the resolve hook

describe('virtual files', { skip: MISSING.length ? `missing ${MISSING.join(', ')}` : false }, () => {
  test('pxelinux.cfg/01-<mac> comes from the resolve hook and the MAC is reported seen', async () => {
    seen.length = 0;
    const local = outFile();
    const r = await runBounded('tftp', ['-m', 'binary', HOST, port(), '-c', 'get', 'pxelinux.cfg/01-52-54-00-20-30-11', local]);
    assert.equal(readFileSync(local, 'utf8'), `DEFAULT install\n# for ${HOST}\n`, r.out);
    assert.deepEqual(seen, [{ mac: '52:54:00:20:30:11', via: 'tftp' }]);
  });

  test('a MAC the hook does not answer falls through to the root (and is still reported)', async () => {
    seen.length = 0;
    const g = await tftpGet(srv.port, 'pxelinux.cfg/01-52-54-00-99-99-99');
    assert.equal(g.error?.code, 1);
    assert.deepEqual(seen, [{ mac: '52:54:00:99:99:99', via: 'tftp' }]);
    const d = await tftpGet(srv.port, '/pxelinux.cfg/default', { options: { tsize: 0 } });
    assert.equal(d.data.toString(), files.get('pxelinux.cfg/default')!.toString());
    assert.equal(d.oack?.tsize, files.get('pxelinux.cfg/default')!.length);
  });

  test('a failing hook is ERROR 0, counted and logged — not a "file not found" that would send PXELINUX to its default', async () => {
    const before = await srv.metric('slipway_tftp_refusals_total', { reason: 'hook-error' });
    const g = await tftpGet(srv.port, 'pxelinux.cfg/01-de-ad-be-ef-00-01');
    assert.deepEqual(g.error, { code: 0, message: 'Internal error' });
    assert.equal(await srv.metric('slipway_tftp_refusals_total', { reason: 'hook-error' }), before + 1);
    assert.ok(srv.logs.some((l) => l.msg === 'tftp resolve hook failed' && l.err === 'inventory unavailable'));
  });
});

describe('limits', () => {
  test('beyond maxTransfers a request gets ERROR 0 "Server busy"; once a transfer ends there is room again', async () => {
    const own = await startTestTftp({ root, maxTransfers: 1, timeoutMs: 50, maxRetries: 1 });
    try {
      const hog = tftpGet(own.port, 'tiny.bin', { silent: true, timeoutMs: 400 }); // holds the only slot until given up
      await sleep(20);
      const refused = await tftpGet(own.port, 'tiny.bin');
      assert.deepEqual(refused.error, { code: 0, message: 'Server busy' });
      assert.equal(await own.metric('slipway_tftp_refusals_total', { reason: 'busy' }), 1);
      await hog;
      await waitUntil(async () => (await own.metric('slipway_tftp_active_transfers')) === 0, 2_000);
      assert.deepEqual((await tftpGet(own.port, 'tiny.bin')).data, files.get('tiny.bin'));
    } finally {
      await own.close();
    }
  });
});

// ---------------------------------------------------------------- loss, duplicates, give-up

describe('loss and retransmission', () => {
  test('lost DATA in lock-step: retransmitted after the timeout, file intact', async () => {
    const before = await fast.metric('slipway_tftp_retransmits_total');
    // lose the first arrival of every 7th block
    const g = await tftpGet(fast.port, 'mult512.bin', { dropData: (b, copy) => b % 7 === 0 && copy === 1 });
    assert.equal(sha(g.data), sha(files.get('mult512.bin')!));
    const lost = Math.floor(65 / 7);
    assert.ok((await fast.metric('slipway_tftp_retransmits_total')) - before >= lost);
  });

  test('lost DATA in a window: the client reports the gap, the window restarts there', async () => {
    const g = await tftpGet(fast.port, 'big.bin', { options: { blksize: 1428, windowsize: 8 }, dropData: (b, copy) => b % 50 === 3 && copy === 1 });
    assert.equal(sha(g.data), sha(files.get('big.bin')!));
    assert.equal(g.oack?.windowsize, 8);
    assert.ok([...g.copies.values()].some((n) => n > 1), 'something was resent');
  });

  test('the first block of a window lost, and the last one: both recovered', async () => {
    const g = await tftpGet(fast.port, 'mult1428.bin', { options: { blksize: 1428, windowsize: 4 }, dropData: (b, copy) => (b === 5 || b === 8 || b === 33) && copy <= 2 });
    assert.equal(sha(g.data), sha(files.get('mult1428.bin')!));
  });

  test('duplicate ACKs in lock-step never cause duplicate DATA (no Sorcerer’s Apprentice)', async () => {
    // A server of its own with a long timeout: on a loaded machine a 40 ms timer could fire
    // and retransmit legitimately, which is not what this test is about.
    const own = await startTestTftp({ root, timeoutMs: 5_000 });
    try {
      const g = await tftpGet(own.port, 'mult512.bin', { ackCopies: 2 });
      assert.equal(sha(g.data), sha(files.get('mult512.bin')!));
      const extra = [...g.copies.entries()].filter(([, n]) => n > 1);
      assert.deepEqual(extra, [], 'blocks sent more than once');
      assert.equal(await own.metric('slipway_tftp_retransmits_total'), 0);
      assert.ok((await own.metric('slipway_tftp_dropped_packets_total', { reason: 'duplicate-ack' })) >= 60);
    } finally {
      await own.close();
    }
  });

  // A server whose timer never fires here (2 s): what is counted is what the repeated ACKs
  // cause. With `fast`'s 40 ms a loaded CI host added timeout retransmissions of their own
  // (4,411 DATA for 2,203 blocks once), which the bound below is not about.
  test('duplicate ACKs in a window: traffic stays bounded', () =>
    withServer({ timeoutMs: 2_000, maxRetries: 3 }, async (own) => {
      const g = await tftpGet(own.port, 'big.bin', { options: { blksize: 1428, windowsize: 8 }, ackCopies: 3 });
      assert.equal(sha(g.data), sha(files.get('big.bin')!));
      const blocks = Math.floor(files.get('big.bin')!.length / 1428) + 1;
      // Each window restarts at most once for its repeated ACK: at most twice the blocks, never a cascade.
      assert.ok(g.dataPackets <= blocks * 2, `${g.dataPackets} DATA for ${blocks} blocks`);
    }));

  test('a client that never ACKs: bounded retries, then the transfer is given up and counted', async () => {
    const own = await startTestTftp({ root, timeoutMs: 40, maxRetries: 4 });
    try {
      const t0 = performance.now();
      const g = await tftpGet(own.port, 'tiny.bin', { silent: true, timeoutMs: 1_500 });
      assert.equal(g.dataPackets, 5, 'the first DATA and 4 retransmissions');
      await waitUntil(async () => (await own.metric('slipway_tftp_transfers_failed_total', { reason: 'timeout' })) === 1, 3_000);
      // 40 + 80 + 160 + 320 + 640 ms of back-off: the doubling is real, and bounded.
      assert.ok(performance.now() - t0 >= 1_200);
      assert.equal(await own.metric('slipway_tftp_retransmits_total'), 4);
    } finally {
      await own.close();
    }
  });

  test('a PXE-style size probe (OACK, then ERROR from the client) ends cleanly; the retry works', async () => {
    const before = await fast.metric('slipway_tftp_transfers_failed_total', { reason: 'client_abort' });
    const probe = await tftpGet(fast.port, 'big.bin', { options: { tsize: 0, blksize: 1456 }, abortAfter: 0 });
    assert.equal(probe.oack?.tsize, files.get('big.bin')!.length);
    await waitUntil(async () => (await fast.metric('slipway_tftp_transfers_failed_total', { reason: 'client_abort' })) === before + 1, 2_000);
    const again = await tftpGet(fast.port, 'big.bin', { options: { blksize: 1456 } });
    assert.equal(sha(again.data), sha(files.get('big.bin')!));
  });

  test('a packet from a stranger to a transfer’s port never reaches it; the transfer goes on', () =>
    // The transfer socket is connected to its client, so the kernel filters strangers (they
    // get ICMP port-unreachable, not TFTP ERROR 5: RFC 1350 allows that, as tftp-hpa does).
    withSockets(async (client, stranger) => {
      const first = nextPacket(client);
      client.send(encodeRequest({ op: 'RRQ', filename: 'mult512.bin', mode: 'octet', options: {} }), fast.port, HOST);
      const d1 = await first;
      assert.equal(d1.packet.op, 'DATA');
      const strangerGot = nextPacket(stranger, 300).catch(() => undefined);
      stranger.send(encodeAck(1), d1.from, HOST); // would move the transfer on, if it got through
      stranger.send(encodeAck(64), d1.from, HOST);
      assert.equal(await strangerGot, undefined);
      // DATA 1 may have been retransmitted while we waited; what matters is that ACK 1 brings block 2.
      const d2 = nextPacket(client, 2_000, (p) => p.op === 'DATA' && p.block === 2);
      client.send(encodeAck(1), d1.from, HOST);
      await d2;
    }));

  test('a client that goes away mid-transfer: its port is unreachable, the transfer ends at once', () =>
    withServer({ timeoutMs: 40, maxRetries: 8 }, async (own) => {
      await withSockets(async (client) => {
        const first = nextPacket(client);
        client.send(encodeRequest({ op: 'RRQ', filename: 'mult512.bin', mode: 'octet', options: {} }), own.port, HOST);
        await first;
      }); // closed now: the first retransmission (40 ms) meets a closed port
      // Retries would take ~20 s (40 ms doubling, 8 times); 2 s is plenty for one retransmission.
      await waitUntil(async () => (await own.metric('slipway_tftp_transfers_failed_total', { reason: 'client_gone' })) === 1, 2_000);
      assert.equal(await own.metric('slipway_tftp_transfers_failed_total', { reason: 'timeout' }), 0);
    }));

  test('a retransmitted request does not start a second transfer', () =>
    withServer({ timeoutMs: 40, maxRetries: 8 }, (own) =>
      withSockets(async (s) => {
        const tids = new Set<number>();
        s.on('message', (_m, from) => tids.add(from.port));
        const rrq = encodeRequest({ op: 'RRQ', filename: 'tiny.bin', mode: 'octet', options: { blksize: 1024 } });
        s.send(rrq, own.port, HOST);
        s.send(rrq, own.port, HOST);
        await waitUntil(async () => tids.size > 0 && (await own.metric('slipway_tftp_requests_total')) === 2, 2_000);
        await sleep(200); // the OACK is retransmitted meanwhile (no ACK is sent): still from one transfer
        assert.equal(tids.size, 1, 'replies came from more than one transfer');
        assert.equal(await own.metric('slipway_tftp_dropped_packets_total', { reason: 'duplicate-request' }), 1);
      }),
    ));

  test('garbage on the request port is dropped and counted, every packet; the server stays up', () =>
    withServer({}, (own) =>
      withSockets(async (s) => {
        const probe = encodeRequest({ op: 'RRQ', filename: 'no-such-file', mode: 'octet', options: {} });
        let garbage = 0;
        for (let batch = 0; batch < 40; batch++) {
          for (let i = 0; i < 50; i++) {
            const junk = randomBytes((batch * 50 + i) % 40);
            // What our own codec reads as a request would be served, not dropped: leave it out.
            if (isRequest(junk)) continue;
            s.send(junk, own.port, HOST);
            garbage++;
          }
          s.send(encodeAck(1), own.port, HOST); // an ACK to the request port is not a request
          garbage++;
          // The probe's answer comes after the batch was read: the kernel buffer never overflows.
          const answered = nextPacket(s, 5_000, (p) => p.op === 'ERROR');
          s.send(probe, own.port, HOST);
          await answered;
        }
        assert.equal(await own.metric('slipway_tftp_dropped_packets_total'), garbage);
        assert.equal(await own.metric('slipway_tftp_requests_total'), 40);
        assert.deepEqual((await tftpGet(own.port, 'tiny.bin')).data, files.get('tiny.bin'));
      }),
    ));
});

describe('real clients through 20% packet loss (a seeded lossy relay; the kernel has no netem)', { skip: MISSING.length ? `missing ${MISSING.join(', ')}` : false }, () => {
  // curl is not among them: it asks for a 6 s timeout, which the server honours (RFC 2349),
  // so each loss would cost 6 s. These three let the server's own 40 ms timer act.
  const lossy: [string, (p: number, r: string, l: string) => Promise<RunResult>][] = [
    ['tftp-hpa', (p, r, l) => runBounded('tftp', ['-m', 'binary', HOST, String(p), '-c', 'get', r, l], { timeoutMs: 40_000 })],
    ['busybox -b 1468', (p, r, l) => runBounded('busybox', ['tftp', '-b', '1468', '-g', '-r', r, '-l', l, HOST, String(p)], { timeoutMs: 40_000 })],
    ['atftp windowsize 8', (p, r, l) => runBounded('atftp', ['--option', 'windowsize 8', '--option', 'blksize 1428', '-g', '-r', r, '-l', l, HOST, String(p)], { timeoutMs: 40_000 })],
  ];
  for (const [name, get] of lossy) {
    test(name, async () => {
      const proxy = await LossyProxy.start(fast.port, { loss: 0.2, seed: name.length, spare: 3 });
      try {
        const before = await fast.metric('slipway_tftp_retransmits_total');
        const local = outFile();
        const r = await get(proxy.port, 'mult1428.bin', local);
        assert.equal(fileSha(local), sha(files.get('mult1428.bin')!), `${r.out}\nproxy dropped ${proxy.dropped} of ${proxy.forwarded + proxy.dropped}`);
        assert.ok(proxy.dropped > 0);
        assert.ok((await fast.metric('slipway_tftp_retransmits_total')) > before, 'losses were recovered by retransmission');
      } finally {
        await proxy.close();
      }
    });
  }
});

// ---------------------------------------------------------------- scale and size

describe('many transfers, big files', { skip: MISSING.length ? `missing ${MISSING.join(', ')}` : false }, () => {
  test('50 concurrent transfers from real clients', async () => {
    const kinds = [CLIENTS[1]!, CLIENTS[4]!, CLIENTS[5]!, CLIENTS[0]!]; // curl 1468, busybox, atftp windowed, curl 512
    const names = ['big.bin', 'boot/ipxe.efi'];
    const jobs = Array.from({ length: 50 }, (_, i) => {
      const name = names[i % names.length]!;
      const local = outFile();
      return kinds[i % kinds.length]!.get(name, local).then((r) => ({ name, local, r }));
    });
    const done = await Promise.all(jobs);
    for (const { name, local, r } of done) assert.equal(fileSha(local), sha(files.get(name)!), `${name}: ${r.out}`);
    assert.equal(await srv.metric('slipway_tftp_active_transfers'), 0);
  });

  test('the cache serves hot files and is never stale', async () => {
    addFile('hot.kpxe', randomBytes(60_000));
    const hits = await srv.metric('slipway_tftp_cache_lookups_total', { result: 'hit' });
    assert.deepEqual((await tftpGet(srv.port, 'hot.kpxe')).data, files.get('hot.kpxe'));
    assert.deepEqual((await tftpGet(srv.port, 'hot.kpxe')).data, files.get('hot.kpxe'));
    assert.equal(await srv.metric('slipway_tftp_cache_lookups_total', { result: 'hit' }), hits + 1);
    // Same size, new content, written straight away: the next fetch must see it.
    addFile('hot.kpxe', randomBytes(60_000));
    assert.deepEqual((await tftpGet(srv.port, 'hot.kpxe')).data, files.get('hot.kpxe'));
  });

  test('block numbers wrap past 65535 (a file > 32 MiB at blksize 512): curl, and a windowed transfer', async () => {
    addFile('huge.bin', randomBytes(32 * 1024 * 1024 + 70_000)); // 65,673 blocks of 512
    const local = outFile();
    const r = await runBounded('curl', ['-sS', '--max-time', '40', '-o', local, `tftp://${HOST}:${port()}/huge.bin`], { timeoutMs: 45_000 });
    assert.equal(fileSha(local), sha(files.get('huge.bin')!), r.out);
    const g = await tftpGet(srv.port, 'huge.bin', { options: { windowsize: 16 }, timeoutMs: 30_000 });
    assert.ok(g.wrapped, 'block 0 followed block 65535');
    assert.equal(sha(g.data), sha(files.get('huge.bin')!));
    rmSync(join(root, 'huge.bin'));
  });

  test('close() ends running transfers with an ERROR and releases everything', async () => {
    const own = await startTestTftp({ root, timeoutMs: 5_000 });
    const slow = tftpGet(own.port, 'big.bin', { dropData: (b) => b === 2, timeoutMs: 5_000 }); // stalls at block 2
    await sleep(150);
    await own.close();
    const g = await slow;
    assert.equal(g.error?.code, 0);
    assert.equal(g.timedOut, false);
  });
});

/** The next packet on `s` (that `wanted` accepts), decoded; rejects after withinMs. */
function nextPacket(
  s: ReturnType<typeof createSocket>,
  withinMs = 2_000,
  wanted: (p: ReturnType<typeof decode>) => boolean = () => true,
): Promise<{ packet: ReturnType<typeof decode>; from: number }> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Buffer, r: { port: number }) => {
      const packet = decode(m);
      if (!wanted(packet)) return;
      clearTimeout(timer);
      s.off('message', onMessage);
      resolve({ packet, from: r.port });
    };
    const timer = setTimeout(() => {
      s.off('message', onMessage);
      reject(new Error(`no packet within ${withinMs} ms`));
    }, withinMs);
    s.on('message', onMessage);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A server of its own (same root), for tests that count exactly; always closed. */
async function withServer<T>(opts: Partial<Parameters<typeof startTestTftp>[0]>, fn: (s: TestTftp) => Promise<T>): Promise<T> {
  const s = await startTestTftp({ root, ...opts });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** Two UDP sockets on 127.0.0.1, closed afterwards even when the test fails (an open one would keep the test process alive). */
async function withSockets<T>(fn: (a: Socket, b: Socket) => Promise<T>): Promise<T> {
  const a = createSocket('udp4');
  const b = createSocket('udp4');
  try {
    await Promise.all([a, b].map((x) => new Promise<void>((r) => x.bind(0, HOST, () => r()))));
    return await fn(a, b);
  } finally {
    a.close();
    b.close();
  }
}

function isRequest(b: Buffer): boolean {
  try {
    const op = decode(b).op;
    return op === 'RRQ' || op === 'WRQ';
  } catch {
    return false;
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}
