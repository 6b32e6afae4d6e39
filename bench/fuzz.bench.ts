// The long fuzz run of the DHCP and TFTP packet parsers (the tests run a short one):
// random bytes and mutations of valid packets (bit flips, truncation, growth, splices,
// option-area garbage) for FUZZ_SECONDS per parser. Every input must decode or be
// rejected with the parser's own error and a reason; anything else, or one input taking
// over 50 ms (a hang), is a failure and the bench exits 1 after printing the input.
// Run: node bench/fuzz.bench.ts
import { decode as dhcpDecode, encode as dhcpEncode, DhcpParseError, MessageType, Opt } from '../src/serve/dhcp/packet.ts';
import { decode as tftpDecode, encodeRequest, encodeAck, encodeError, encodeOack, dataHeader, TftpParseError } from '../src/serve/tftp/packet.ts';
import { rng, type Rng } from '../test/helpers/rng.ts';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 30);


function mutate(r: Rng, base: Buffer, hot: number): Buffer {
  const b = Buffer.from(base);
  switch (r.below(6)) {
    case 0:
      for (let i = r.below(8) + 1; i > 0; i--) b[r.below(b.length)] = r.byte();
      return b;
    case 1: // where the option parser works hardest
      for (let i = r.below(16) + 1; i > 0; i--) b[hot + r.below(Math.max(1, b.length - hot))] = r.byte();
      return b;
    case 2:
      return b.subarray(0, r.below(b.length + 1));
    case 3:
      return Buffer.concat([b, Buffer.from(Array.from({ length: r.below(2048) }, r.byte))]);
    case 4: {
      const at = r.below(b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(r.below(b.length))]);
    }
    default:
      return Buffer.from(Array.from({ length: r.below(1500) }, r.byte));
  }
}

function run(name: string, seeds: Buffer[], hot: number, decode: (b: Buffer) => unknown, isOwn: (e: unknown) => e is { reason: string }) {
  const r = rng(Date.now());
  const reasons = new Map<string, number>();
  let decoded = 0;
  let total = 0;
  let slowest = 0;
  const deadline = performance.now() + SECONDS * 1000;
  while (performance.now() < deadline) {
    for (let k = 0; k < 1000; k++) {
      const input = mutate(r, seeds[r.below(seeds.length)]!, hot);
      const t0 = performance.now();
      try {
        decode(input);
        decoded++;
      } catch (e) {
        if (!isOwn(e)) {
          console.error(`${name}: unexpected ${(e as Error)?.stack ?? e} for input ${input.toString('hex')}`);
          process.exit(1);
        }
        reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
      }
      const dt = performance.now() - t0;
      if (dt > slowest) slowest = dt;
      if (dt > 50) {
        console.error(`${name}: one input took ${dt.toFixed(1)} ms: ${input.toString('hex')}`);
        process.exit(1);
      }
      total++;
    }
  }
  console.log(`| ${name} | ${total.toLocaleString('en')} | ${decoded.toLocaleString('en')} | ${[...reasons].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')} | ${slowest.toFixed(2)} ms | 0 |`);
}

const dhcpSeed = (type: number, extra: [number, Buffer][] = []) =>
  dhcpEncode({
    op: 1, htype: 1, hlen: 6, hops: 0, xid: 0x1234, secs: 0, flags: 0x8000,
    ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.from('525400203011' + '00'.repeat(10), 'hex'), sname: '', file: '',
    options: new Map<number, Buffer>([[Opt.MESSAGE_TYPE, Buffer.from([type])], [Opt.VENDOR_CLASS, Buffer.from('PXEClient:Arch:00007:UNDI:003016')], [77, Buffer.from('iPXE')], [93, Buffer.from([0, 7])], ...extra]),
  });

console.log(`| parser | inputs | decoded | rejected by reason | slowest | crashes/hangs |\n|---|---|---|---|---|---|`);
run('DHCP', [dhcpSeed(MessageType.DISCOVER), dhcpSeed(MessageType.REQUEST, [[50, Buffer.from([10, 20, 30, 11])], [82, Buffer.from([1, 4, 0, 0, 0, 1])]]), dhcpSeed(MessageType.INFORM, [[52, Buffer.from([3])]])], 240, (b) => dhcpDecode(b), (e): e is { reason: string } => e instanceof DhcpParseError);
run('TFTP', [
  encodeRequest({ op: 'RRQ', filename: 'pxelinux.cfg/01-52-54-00-20-30-11', mode: 'octet', options: { blksize: 1468, tsize: 0, windowsize: 8, timeout: 3 } }),
  encodeRequest({ op: 'WRQ', filename: 'x', mode: 'netascii', options: {} }),
  Buffer.concat([dataHeader(7), Buffer.alloc(512, 1)]),
  encodeAck(65535),
  encodeError(1, 'File not found'),
  encodeOack({ blksize: 1468, tsize: 123456 }),
], 2, (b) => tftpDecode(b), (e): e is { reason: string } => e instanceof TftpParseError);
