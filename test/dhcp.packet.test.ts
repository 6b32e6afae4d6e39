// The DHCP codec on its own: round trips, every parse error it names, the option
// helpers, and a bounded fuzz run (random and mutated packets: decode either returns a
// packet that survives encode/decode unchanged, or throws DhcpParseError; nothing else,
// and nothing slow).
import { parseIp } from '../src/lib/ipv4.ts';
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  BOOTREQUEST,
  DhcpParseError,
  MAGIC_COOKIE,
  MAX_PACKET,
  MessageType,
  Opt,
  chaddrOf,
  clientArchs,
  clientNdi,
  clientUuid,
  decode,
  decodeSubOptions,
  encode,
  encodeSubOptions,
  ipOpt,
  macOf,
  messageType,
  optIp,
  optIps,
  optString,
  optU16,
  optU32,
  strOpt,
  u32Opt,
  userClasses,
  type Packet,
  type ParseReason,
} from '../src/serve/dhcp/packet.ts';
import { packet as probePacket } from './helpers/dhcp-probe.ts';
import { rng, type Rng } from './helpers/rng.ts';

function sample(overrides: Partial<Packet> = {}): Packet {
  return {
    op: BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 1,
    xid: 0xdeadbeef,
    secs: 7,
    flags: 0x8000,
    ciaddr: '0.0.0.0',
    yiaddr: '10.20.30.11',
    siaddr: '10.20.30.2',
    giaddr: '10.20.40.1',
    chaddr: chaddrOf('52:54:00:20:30:11'),
    sname: 'provisioner',
    file: 'undionly.kpxe',
    options: new Map([
      [Opt.MESSAGE_TYPE, Buffer.from([MessageType.DISCOVER])],
      [Opt.PARAM_REQUEST_LIST, Buffer.from([1, 3, 6, 66, 67])],
      [Opt.VENDOR_CLASS, strOpt('PXEClient:Arch:00007:UNDI:003016')],
      [Opt.CLIENT_ARCH, Buffer.from([0, 7])],
      [Opt.CLIENT_UUID, Buffer.concat([Buffer.from([0]), Buffer.from('00112233445566778899aabbccddeeff', 'hex')])],
      [Opt.RELAY_AGENT, encodeSubOptions([[1, strOpt('eth3')], [2, strOpt('rack2')]])],
    ]),
    ...overrides,
  };
}

/** A raw packet: header + cookie + the given option bytes (no END unless included). */
function raw(optionBytes: number[], header: (b: Buffer) => void = () => {}): Buffer {
  const b = Buffer.alloc(240);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(MAGIC_COOKIE, 236);
  header(b);
  return Buffer.concat([b, Buffer.from(optionBytes)]);
}

function reasonOf(b: Buffer): ParseReason | 'ok' {
  try {
    decode(b);
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof DhcpParseError, `not a DhcpParseError: ${(e as Error).stack}`);
    return e.reason;
  }
}

describe('round trips', () => {
  test('every header field and option survives encode → decode', () => {
    const p = sample();
    assert.deepEqual(decode(encode(p)), p);
    const small = encode(sample({ options: new Map([[Opt.MESSAGE_TYPE, Buffer.from([MessageType.DISCOVER])]]) }));
    assert.equal(small.length, 300, 'padded to the BOOTP minimum');
  });

  test('a reply with the options the policy writes', () => {
    const p = sample({
      op: 2,
      options: new Map([
        [Opt.MESSAGE_TYPE, Buffer.from([MessageType.ACK])],
        [Opt.SERVER_ID, ipOpt('10.20.30.2')],
        [Opt.SUBNET_MASK, ipOpt('255.255.255.0')],
        [Opt.ROUTER, ipOpt('10.20.30.1')],
        [Opt.DNS, ipOpt('10.20.30.1', '1.1.1.1')],
        [Opt.HOSTNAME, strOpt('cp1')],
        [Opt.LEASE_TIME, u32Opt(3600)],
        [Opt.IPXE_ENCAP, encodeSubOptions([[176, Buffer.from([1])]])],
      ]),
    });
    const d = decode(encode(p));
    assert.deepEqual(d, p);
    assert.equal(messageType(d), MessageType.ACK);
    assert.equal(optIp(d, Opt.SERVER_ID), '10.20.30.2');
    assert.deepEqual(optIps(d, Opt.DNS), ['10.20.30.1', '1.1.1.1']);
    assert.equal(optU32(d, Opt.LEASE_TIME), 3600);
    assert.equal(optString(d, Opt.HOSTNAME), 'cp1');
    assert.deepEqual([...decodeSubOptions(d.options.get(Opt.IPXE_ENCAP)!)], [[176, Buffer.from([1])]]);
  });

  test('an option longer than 255 bytes is split on the wire and joined on decode (RFC 3396)', () => {
    const long = Buffer.from('x'.repeat(600));
    const p = sample({ options: new Map([[Opt.MESSAGE_TYPE, Buffer.from([1])], [Opt.BOOTFILE, long]]) });
    const bytes = encode(p);
    assert.equal(bytes.length, 240 + 3 + (2 + 255) * 2 + (2 + 90) + 1);
    assert.deepEqual(decode(bytes).options.get(Opt.BOOTFILE), long);
  });

  test('encode refuses a file name the field cannot hold and a message the client cannot take', () => {
    assert.throws(() => encode(sample({ file: 'f'.repeat(129) })), RangeError);
    assert.throws(() => encode(sample({ options: new Map([[Opt.BOOTFILE, Buffer.alloc(400)]]) }), { maxSize: 576 }), RangeError);
    assert.throws(() => encode(sample({ options: new Map([[Opt.END, Buffer.alloc(1)]]) })), RangeError);
  });

  test('the probe the other tests use speaks the same format', () => {
    const xid = Buffer.from([1, 2, 3, 4]);
    const p = decode(probePacket({ mac: '52:54:00:aa:bb:cc', kind: 'ipxe' }, xid, 1));
    assert.equal(p.xid, 0x01020304);
    assert.equal(macOf(p), '52:54:00:aa:bb:cc');
    assert.equal(messageType(p), MessageType.DISCOVER);
    assert.deepEqual(userClasses(p), ['iPXE']);
    assert.deepEqual(clientArchs(p), [0]);
    assert.equal(clientUuid(p), '5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a');
    assert.deepEqual(clientNdi(p), { type: 1, major: 3, minor: 16 });
  });
});

describe('option 52 (overload)', () => {
  /** file and sname carry options; a split option continues from the options field into file, then sname */
  function overloaded(value: number, fileOpts: number[], snameOpts: number[], main: number[] = []): Buffer {
    return raw([53, 1, 1, 52, 1, value, ...main, 255], (b) => {
      Buffer.from(snameOpts).copy(b, 44);
      Buffer.from(fileOpts).copy(b, 108);
    });
  }

  test('options in file and sname are merged; the fields then read empty', () => {
    const p = decode(overloaded(3, [67, 4, ...Buffer.from('boot'), 255], [66, 2, ...Buffer.from('ts'), 255]));
    assert.equal(optString(p, Opt.BOOTFILE), 'boot');
    assert.equal(optString(p, Opt.TFTP_SERVER), 'ts');
    assert.equal(p.file, '');
    assert.equal(p.sname, '');
    assert.equal(p.options.has(Opt.OVERLOAD), false, 'the overload option describes the layout, not the content');
  });

  test('a split option is joined in RFC 3396 order: options, file, sname', () => {
    const p = decode(overloaded(3, [12, 2, 0x62, 0x62], [12, 2, 0x63, 0x63], [12, 2, 0x61, 0x61]));
    assert.equal(optString(p, Opt.HOSTNAME), 'aabbcc');
  });

  test('value 1 overloads only file: sname stays a string', () => {
    const b = overloaded(1, [67, 1, 0x66, 255], []);
    Buffer.from('srv\0').copy(b, 44);
    const p = decode(b);
    assert.equal(p.sname, 'srv');
    assert.equal(optString(p, Opt.BOOTFILE), 'f');
  });
});

describe('parse errors', () => {
  const cases: [string, Buffer, ParseReason][] = [
    ['empty', Buffer.alloc(0), 'truncated'],
    ['header only, no cookie', Buffer.alloc(236, 1), 'truncated'],
    ['larger than any DHCP message', Buffer.concat([raw([255]), Buffer.alloc(MAX_PACKET)]), 'oversized'],
    ['op 3', raw([255], (b) => (b[0] = 3)), 'bad op'],
    ['hlen 17', raw([255], (b) => (b[2] = 17)), 'bad hlen'],
    ['BOOTP vendor area instead of the cookie', raw([255], (b) => b.writeUInt32BE(0x01020304, 236)), 'bad magic cookie'],
    ['option length past the end', raw([53, 1, 1, 12, 10, 0x61]), 'option overruns packet'],
    ['option code without a length byte', raw([53, 1, 1, 12]), 'option overruns packet'],
    ['overload value 4', raw([52, 1, 4, 255]), 'bad option overload'],
    ['overload twice (joined: 2 bytes)', raw([52, 1, 1, 52, 1, 2, 255]), 'bad option overload'],
    ['overload inside the overloaded file field', raw([52, 1, 1, 255], (b) => Buffer.from([52, 1, 2, 255]).copy(b, 108)), 'option overload loop'],
    ['overloaded file field with an option running past it', raw([52, 1, 1, 255], (b) => Buffer.from([67, 200]).copy(b, 108 + 120)), 'option overruns packet'],
    ['message type of 2 bytes', raw([53, 2, 1, 1, 255]), 'bad option length'],
    ['server id of 3 bytes', raw([53, 1, 3, 54, 3, 1, 2, 3, 255]), 'bad option length'],
    ['requested address of 5 bytes', raw([53, 1, 3, 50, 5, 1, 2, 3, 4, 5, 255]), 'bad option length'],
    ['client architecture of odd length', raw([53, 1, 1, 93, 3, 0, 0, 7, 255]), 'bad option length'],
  ];
  for (const [what, bytes, reason] of cases) test(`${what} → ${reason}`, () => assert.equal(reasonOf(bytes), reason));

  test('controls: pad bytes, a missing END and trailing zeros are accepted', () => {
    assert.equal(reasonOf(raw([0, 0, 53, 1, 1, 0])), 'ok');
    assert.equal(reasonOf(raw([53, 1, 1])), 'ok');
    assert.equal(reasonOf(raw([53, 1, 1, 255, 99, 99, 99])), 'ok', 'bytes after END are padding');
  });

  test('sub-options that overrun their option are a parse error too', () => {
    assert.throws(() => decodeSubOptions(Buffer.from([1, 5, 0])), DhcpParseError);
  });
});

describe('addresses', () => {
  test('parseIp (the one IPv4 parser, lib/ipv4.ts) reads dotted quads and refuses anything else', () => {
    assert.equal(parseIp('10.20.30.2'), 0x0a141e02);
    assert.equal(parseIp('255.255.255.255'), 0xffffffff);
    assert.equal(parseIp('0.0.0.0'), 0);
    assert.equal(parseIp('10.0.100.0'), 0x0a006400);
    // a leading zero is octal to inet_aton and decimal to others: refused, as the cluster file's addresses are
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1..2.3', 'a.b.c.d', '1.2.3.4 ', '1234.1.1.1', '1.2.3.', '010.0.0.1', '1.2.3.00', '1.02.3.4'])
      assert.equal(parseIp(bad), undefined, JSON.stringify(bad));
    assert.throws(() => ipOpt('10.20.30.256'), RangeError);
  });
});

describe('option helpers', () => {
  const withOpt = (code: number, v: Buffer) => decode(encode(sample({ options: new Map([[code, v]]) })));

  test('user class: RFC 3004 lists and the plain string iPXE sends', () => {
    assert.deepEqual(userClasses(withOpt(Opt.USER_CLASS, strOpt('iPXE'))), ['iPXE']);
    assert.deepEqual(userClasses(withOpt(Opt.USER_CLASS, Buffer.from([4, ...Buffer.from('iPXE'), 3, ...Buffer.from('foo')]))), ['iPXE', 'foo']);
    // length bytes that do not add up: one plain name
    assert.deepEqual(userClasses(withOpt(Opt.USER_CLASS, Buffer.from([9, ...Buffer.from('iPXE')]))), ['\tiPXE']);
  });

  test('architecture list, UUID, u16', () => {
    const p = withOpt(Opt.CLIENT_ARCH, Buffer.from([0, 16, 0, 7]));
    assert.deepEqual(clientArchs(p), [16, 7]);
    assert.equal(optU16(p, Opt.CLIENT_ARCH), 16);
    assert.equal(clientUuid(withOpt(Opt.CLIENT_UUID, Buffer.alloc(16))), undefined, 'a UUID without its type byte is ignored, not trusted');
  });

  test('PXE option 43 ends with END; sub-options round-trip', () => {
    const v = encodeSubOptions([[6, Buffer.from([8])]], true);
    assert.deepEqual([...v], [6, 1, 8, 255]);
    assert.deepEqual(decodeSubOptions(v).get(6), Buffer.from([8]));
  });
});

// --- fuzz -------------------------------------------------------------------------------


function mutate(r: Rng, base: Buffer): Buffer {
  const b = Buffer.from(base);
  switch (r.below(5)) {
    case 0: // flip a few bytes anywhere
      for (let i = r.below(8) + 1; i > 0; i--) b[r.below(b.length)] = r.byte();
      return b;
    case 1: // corrupt the options area only, where the parser works hardest
      for (let i = r.below(16) + 1; i > 0; i--) b[240 + r.below(b.length - 240)] = r.byte();
      return b;
    case 2: // truncate
      return b.subarray(0, r.below(b.length + 1));
    case 3: // overload with random file/sname contents
      b[240] = 52;
      b[241] = 1;
      b[242] = r.below(5);
      for (let i = 44; i < 236; i++) if (r.below(3) === 0) b[i] = r.byte();
      return b;
    default: // random trailing option bytes
      return Buffer.concat([b.subarray(0, 240 + r.below(b.length - 240)), Buffer.from(Array.from({ length: r.below(64) }, () => r.byte()))]);
  }
}

test('fuzz: 20,000 random and mutated packets: decode returns or throws DhcpParseError; decoded packets re-encode losslessly', () => {
  const seed = randomBytes(4).readUInt32BE(0);
  const r = rng(seed);
  const bases = [encode(sample()), probePacket({ mac: '52:54:00:00:00:01', kind: 'http' }, Buffer.from([9, 9, 9, 9]), 3)];
  const started = performance.now();
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const input = i % 4 === 0 ? randomBytes(r.below(700)) : mutate(r, bases[i % bases.length]!);
    if (i % 8 === 0 && input.length >= 240) input.writeUInt32BE(MAGIC_COOKIE, 236); // get random bytes past the cookie check too
    let p: Packet;
    try {
      p = decode(input);
    } catch (e) {
      assert.ok(e instanceof DhcpParseError, `seed ${seed}, input ${input.toString('hex')}: ${(e as Error).stack}`);
      continue;
    }
    decoded++;
    assert.deepEqual(decode(encode(p)), p, `seed ${seed}, input ${input.toString('hex')}`);
  }
  const ms = performance.now() - started;
  assert.ok(decoded > 2_000, `seed ${seed}: only ${decoded} inputs decoded; the fuzz barely reaches the option parser`);
  assert.ok(ms < 15_000, `seed ${seed}: fuzz took ${ms.toFixed(0)} ms`);
});
