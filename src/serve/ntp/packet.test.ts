// The SNTP codec: what a reply carries, and what gets none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeReply, parseRequest, readTimestamp, writeTimestamp, NTP_HEADER } from './packet.ts';
import { LOCAL_CLOCK } from './server.ts';

const request = (first: number, transmit = Buffer.from('0123456789abcdef'.slice(0, 8))) => {
  const b = Buffer.alloc(NTP_HEADER);
  b[0] = first;
  b[2] = 6; // poll 2^6
  transmit.copy(b, 40);
  return b;
};

test('a v4 client request gets a v4 server reply that echoes its transmit time and carries ours', () => {
  const req = parseRequest(request((4 << 3) | 3));
  assert.ok(!('drop' in req));
  const received = Date.UTC(2026, 11, 7, 9, 0, 0) + 0.25;
  const reply = encodeReply(req, LOCAL_CLOCK, received, received + 1.5);
  assert.equal(reply.length, NTP_HEADER);
  assert.equal(reply[0], (0 << 6) | (4 << 3) | 4, 'LI 0, VN 4, mode 4');
  assert.equal(reply[1], 10, 'stratum 10: a local clock');
  assert.equal(reply[2], 6, 'poll echoed');
  assert.deepEqual(reply.subarray(12, 16), Buffer.from([127, 127, 1, 1]));
  assert.deepEqual(reply.subarray(24, 32), Buffer.from('01234567'), 'originate = the client\'s transmit, byte for byte');
  assert.ok(Math.abs(readTimestamp(reply, 32) - received) < 0.001, 'receive');
  assert.ok(Math.abs(readTimestamp(reply, 40) - (received + 1.5)) < 0.001, 'transmit');
});

test('a v3 request is answered as v3; other modes, versions and short datagrams get nothing', () => {
  const v3 = parseRequest(request((3 << 3) | 3));
  assert.ok(!('drop' in v3) && v3.version === 3);
  assert.deepEqual(parseRequest(request((4 << 3) | 4)), { drop: 'not-client' }, 'a server reply is not answered (no reflection loops)');
  assert.deepEqual(parseRequest(request((4 << 3) | 6)), { drop: 'not-client' }, 'mode 6 control queries: no amplification');
  assert.deepEqual(parseRequest(request((0 << 3) | 3)), { drop: 'bad-version' });
  assert.deepEqual(parseRequest(request((7 << 3) | 3)), { drop: 'bad-version' });
  assert.deepEqual(parseRequest(Buffer.alloc(47)), { drop: 'short' });
});

test('timestamps: NTP era seconds and a 32-bit fraction', () => {
  const b = Buffer.alloc(8);
  writeTimestamp(b, 0, 0);
  assert.equal(b.readUInt32BE(0), 2_208_988_800, '1970 is 2,208,988,800 s after 1900');
  writeTimestamp(b, 0, 1_000.5);
  assert.equal(b.readUInt32BE(0), 2_208_988_801);
  assert.ok(Math.abs(b.readUInt32BE(4) / 2 ** 32 - 0.0005) < 1e-9);
  assert.ok(Math.abs(readTimestamp(b, 0) - 1_000.5) < 1e-6);
});
