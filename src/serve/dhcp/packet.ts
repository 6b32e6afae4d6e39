// DHCPv4 wire format (RFC 2131 §2, RFC 2132), pure: bytes in, a Packet out, and back.
// Nothing here knows about leases, machines or sockets. decode() trusts nothing: every
// malformed input ends in a DhcpParseError with a short machine-readable `reason`
// (the server counts drops by it), never in a RangeError or an endless loop.
//
// Options are a Map<code, value bytes>. On decode, an option that appears several times
// is one option whose parts are concatenated (RFC 3396), and option 52 (overload) is
// resolved: options carried in the `file` and `sname` fields are merged in the order
// RFC 3396 §7 gives (options field, then file, then sname) and the fields read as empty.
// On encode, values longer than 255 bytes are split the same way.
import { parseIp } from '../../lib/ipv4.ts';

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;

/** RFC 2132 §9.6 */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

const TYPE_NAMES: Record<number, string> = {
  1: 'discover',
  2: 'offer',
  3: 'request',
  4: 'decline',
  5: 'ack',
  6: 'nak',
  7: 'release',
  8: 'inform',
};
/** "discover", "ack", …; "type-<n>" for the lease-query and other types we do not serve */
export const typeName = (t: number | undefined): string => (t === undefined ? 'none' : (TYPE_NAMES[t] ?? `type-${t}`));

/** The option codes this server reads or writes. */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  NTP_SERVERS: 42,
  BROADCAST: 28,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER: 66,
  BOOTFILE: 67,
  USER_CLASS: 77,
  RELAY_AGENT: 82,
  CLIENT_ARCH: 93,
  CLIENT_NDI: 94,
  CLIENT_UUID: 97,
  IPXE_ENCAP: 175,
  END: 255,
} as const;

export interface Packet {
  /** 1 BOOTREQUEST, 2 BOOTREPLY */
  op: number;
  /** hardware type: 1 = Ethernet */
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  /** bit 15 = broadcast */
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** the 16-byte chaddr field as on the wire; the first hlen bytes are the address */
  chaddr: Buffer;
  sname: string;
  file: string;
  options: Map<number, Buffer>;
}

export const BROADCAST_FLAG = 0x8000;
export const MAGIC_COOKIE = 0x63825363;
const HEADER = 236;
const OPTIONS_START = HEADER + 4;
const SNAME = { at: 44, len: 64 };
const FILE = { at: 108, len: 128 };
/** Anything larger is not a DHCP message a client sends (RFC 2131 needs 576; Ethernet caps at 1500; jumbo frames at 9000). */
export const MAX_PACKET = 4096;
/** RFC 1542 §3.4: BOOTP relays and some old clients drop shorter messages, so replies are padded to this. */
export const MIN_PACKET = 300;

export type ParseReason =
  | 'truncated'
  | 'oversized'
  | 'bad op'
  | 'bad hlen'
  | 'bad magic cookie'
  | 'option overruns packet'
  | 'bad option overload'
  | 'option overload loop'
  | 'bad option length';

export class DhcpParseError extends Error {
  readonly reason: ParseReason;
  constructor(reason: ParseReason, detail?: string) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'DhcpParseError';
    this.reason = reason;
  }
}

// --- addresses -------------------------------------------------------------------------

export const ZERO = '0.0.0.0';
export const LIMITED_BROADCAST = '255.255.255.255';

function ipInt(ip: string): number {
  const n = parseIp(ip);
  if (n === undefined) throw new RangeError(`not an IPv4 address: ${ip}`);
  return n;
}

export function ipBytes(ip: string): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(ipInt(ip));
  return b;
}
const readIp = (b: Buffer, at: number): string => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;

/** "aa:bb:cc:dd:ee:ff" from chaddr's first hlen bytes, lower case. */
export const macOf = (p: Packet): string => [...p.chaddr.subarray(0, Math.min(p.hlen, 16))].map((b) => b.toString(16).padStart(2, '0')).join(':');

/** The 16-byte chaddr field for an Ethernet address. */
export function chaddrOf(mac: string): Buffer {
  const b = Buffer.alloc(16);
  Buffer.from(mac.split(/[:-]/).map((h) => parseInt(h, 16))).copy(b);
  return b;
}

// --- decode ----------------------------------------------------------------------------

/** Fixed lengths of options whose value this server reads; anything else is a malformed packet. */
const FIXED_LENGTH: Record<number, number> = {
  [Opt.REQUESTED_IP]: 4,
  [Opt.LEASE_TIME]: 4,
  [Opt.OVERLOAD]: 1,
  [Opt.MESSAGE_TYPE]: 1,
  [Opt.SERVER_ID]: 4,
  [Opt.MAX_MESSAGE_SIZE]: 2,
  [Opt.RENEWAL_TIME]: 4,
  [Opt.REBINDING_TIME]: 4,
};

/**
 * Read code/length/value triples from b[from, to) into `into` (parts appended, RFC 3396).
 * Stops at END. `inOverload` marks the sname/file fields, where another option 52 would
 * send a naive reader round in circles.
 */
function readOptions(b: Buffer, from: number, to: number, into: Map<number, Buffer[]>, inOverload: boolean): void {
  let i = from;
  while (i < to) {
    const code = b[i]!;
    if (code === Opt.END) return;
    if (code === Opt.PAD) {
      i++;
      continue;
    }
    if (i + 1 >= to) throw new DhcpParseError('option overruns packet', `option ${code} has no length`);
    const len = b[i + 1]!;
    if (i + 2 + len > to) throw new DhcpParseError('option overruns packet', `option ${code} length ${len}`);
    if (inOverload && code === Opt.OVERLOAD) throw new DhcpParseError('option overload loop');
    const parts = into.get(code);
    const value = b.subarray(i + 2, i + 2 + len);
    if (parts) parts.push(value);
    else into.set(code, [value]);
    i += 2 + len;
  }
}

/** A NUL-terminated latin1 string field (sname, file). */
function readCString(b: Buffer, at: number, len: number): string {
  const field = b.subarray(at, at + len);
  const z = field.indexOf(0);
  return field.subarray(0, z < 0 ? field.length : z).toString('latin1');
}

function checkLengths(options: Map<number, Buffer>): void {
  for (const [code, v] of options) {
    const want = FIXED_LENGTH[code];
    if (want !== undefined && v.length !== want) throw new DhcpParseError('bad option length', `option ${code} is ${v.length} bytes, not ${want}`);
  }
  const arch = options.get(Opt.CLIENT_ARCH);
  // RFC 4578 §2.1: a list of 16-bit architecture types
  if (arch && (arch.length === 0 || arch.length % 2 !== 0)) throw new DhcpParseError('bad option length', `option 93 is ${arch.length} bytes`);
}

export function decode(b: Buffer): Packet {
  if (b.length > MAX_PACKET) throw new DhcpParseError('oversized', `${b.length} bytes`);
  if (b.length < OPTIONS_START) throw new DhcpParseError('truncated', `${b.length} bytes`);
  const op = b[0]!;
  if (op !== BOOTREQUEST && op !== BOOTREPLY) throw new DhcpParseError('bad op', String(op));
  const hlen = b[2]!;
  if (hlen > 16) throw new DhcpParseError('bad hlen', String(hlen));
  if (b.readUInt32BE(HEADER) !== MAGIC_COOKIE) throw new DhcpParseError('bad magic cookie');

  const parts = new Map<number, Buffer[]>();
  readOptions(b, OPTIONS_START, b.length, parts, false);
  const overload = parts.get(Opt.OVERLOAD);
  let overloaded = 0;
  if (overload) {
    parts.delete(Opt.OVERLOAD);
    const v = Buffer.concat(overload);
    if (v.length !== 1 || v[0]! < 1 || v[0]! > 3) throw new DhcpParseError('bad option overload', v.toString('hex'));
    overloaded = v[0]!;
    // RFC 3396 §7: options field, then file, then sname
    if (overloaded & 1) readOptions(b, FILE.at, FILE.at + FILE.len, parts, true);
    if (overloaded & 2) readOptions(b, SNAME.at, SNAME.at + SNAME.len, parts, true);
  }
  const options = new Map<number, Buffer>();
  for (const [code, p] of parts) options.set(code, p.length === 1 ? p[0]! : Buffer.concat(p));
  checkLengths(options);

  return {
    op,
    htype: b[1]!,
    hlen,
    hops: b[3]!,
    xid: b.readUInt32BE(4),
    secs: b.readUInt16BE(8),
    flags: b.readUInt16BE(10),
    ciaddr: readIp(b, 12),
    yiaddr: readIp(b, 16),
    siaddr: readIp(b, 20),
    giaddr: readIp(b, 24),
    chaddr: Buffer.from(b.subarray(28, 44)),
    sname: overloaded & 2 ? '' : readCString(b, SNAME.at, SNAME.len),
    file: overloaded & 1 ? '' : readCString(b, FILE.at, FILE.len),
    options,
  };
}

// --- encode ----------------------------------------------------------------------------

function writeCString(b: Buffer, at: number, len: number, s: string, what: string): void {
  const bytes = Buffer.from(s, 'latin1');
  if (bytes.length > len) throw new RangeError(`${what} is ${bytes.length} bytes; the field holds ${len}`);
  bytes.copy(b, at);
}

/** One option as wire bytes, split into 255-byte parts when longer (RFC 3396). */
function encodeOption(code: number, value: Buffer): Buffer[] {
  if (code === Opt.PAD || code === Opt.END || code < 0 || code > 255) throw new RangeError(`option code ${code} cannot carry a value`);
  if (value.length === 0) return [Buffer.from([code, 0])];
  const out: Buffer[] = [];
  for (let i = 0; i < value.length; i += 255) {
    const part = value.subarray(i, i + 255);
    out.push(Buffer.from([code, part.length]), part);
  }
  return out;
}

export interface EncodeOptions {
  /** pad to this many bytes (default MIN_PACKET) */
  minSize?: number;
  /** refuse to build a message larger than this (a client's option 57, or 576) */
  maxSize?: number;
}

export function encode(p: Packet, opts: EncodeOptions = {}): Buffer {
  const h = Buffer.alloc(OPTIONS_START);
  h[0] = p.op;
  h[1] = p.htype;
  h[2] = p.hlen;
  h[3] = p.hops;
  h.writeUInt32BE(p.xid >>> 0, 4);
  h.writeUInt16BE(p.secs, 8);
  h.writeUInt16BE(p.flags, 10);
  h.writeUInt32BE(ipInt(p.ciaddr), 12);
  h.writeUInt32BE(ipInt(p.yiaddr), 16);
  h.writeUInt32BE(ipInt(p.siaddr), 20);
  h.writeUInt32BE(ipInt(p.giaddr), 24);
  p.chaddr.copy(h, 28, 0, 16);
  writeCString(h, SNAME.at, SNAME.len, p.sname, 'sname');
  writeCString(h, FILE.at, FILE.len, p.file, 'file');
  h.writeUInt32BE(MAGIC_COOKIE, HEADER);
  const parts: Buffer[] = [h];
  for (const [code, value] of p.options) parts.push(...encodeOption(code, value));
  parts.push(Buffer.from([Opt.END]));
  let out = Buffer.concat(parts);
  const min = opts.minSize ?? MIN_PACKET;
  if (out.length < min) out = Buffer.concat([out, Buffer.alloc(min - out.length)]);
  if (opts.maxSize !== undefined && out.length > opts.maxSize) throw new RangeError(`message is ${out.length} bytes; the client accepts ${opts.maxSize}`);
  return out;
}

// --- typed option helpers --------------------------------------------------------------

export const messageType = (p: Packet): number | undefined => p.options.get(Opt.MESSAGE_TYPE)?.[0];

export function optIp(p: Packet, code: number): string | undefined {
  const v = p.options.get(code);
  return v && v.length >= 4 ? readIp(v, 0) : undefined;
}

export function optIps(p: Packet, code: number): string[] {
  const v = p.options.get(code);
  const out: string[] = [];
  if (v) for (let i = 0; i + 4 <= v.length; i += 4) out.push(readIp(v, i));
  return out;
}

export const optString = (p: Packet, code: number): string | undefined => p.options.get(code)?.toString('latin1');

export function optU16(p: Packet, code: number): number | undefined {
  const v = p.options.get(code);
  return v && v.length >= 2 ? v.readUInt16BE(0) : undefined;
}

export function optU32(p: Packet, code: number): number | undefined {
  const v = p.options.get(code);
  return v && v.length >= 4 ? v.readUInt32BE(0) : undefined;
}

/** Option 93: the client's architecture types, in the client's order of preference (RFC 4578). */
export function clientArchs(p: Packet): number[] {
  const v = p.options.get(Opt.CLIENT_ARCH);
  const out: number[] = [];
  if (v) for (let i = 0; i + 2 <= v.length; i += 2) out.push(v.readUInt16BE(i));
  return out;
}

/**
 * Option 77. RFC 3004 says a list of length-prefixed class names; iPXE (and dhclient's
 * `send user-class`) send one plain string. A value is read as RFC 3004 only when its
 * length bytes add up exactly; otherwise it is one plain name.
 */
export function userClasses(p: Packet): string[] {
  const v = p.options.get(Opt.USER_CLASS);
  if (!v || v.length === 0) return [];
  const list: string[] = [];
  let i = 0;
  while (i < v.length) {
    const len = v[i]!;
    if (len === 0 || i + 1 + len > v.length) return [v.toString('latin1')];
    list.push(v.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += 1 + len;
  }
  return list;
}

/** Option 94 (RFC 4578 §2.2): the client's network interface, type 1 = UNDI, with its version. */
export function clientNdi(p: Packet): { type: number; major: number; minor: number } | undefined {
  const v = p.options.get(Opt.CLIENT_NDI);
  return v && v.length === 3 ? { type: v[0]!, major: v[1]!, minor: v[2]! } : undefined;
}

/** Option 97 (RFC 4578 §2.5): type 0 + a 16-byte GUID, as 8-4-4-4-12 hex; undefined when malformed. */
export function clientUuid(p: Packet): string | undefined {
  const v = p.options.get(Opt.CLIENT_UUID);
  if (!v || v.length !== 17 || v[0] !== 0) return undefined;
  const h = v.subarray(1).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Option 55, the codes the client asked for in its order of preference. */
export const paramRequestList = (p: Packet): number[] => [...(p.options.get(Opt.PARAM_REQUEST_LIST) ?? [])];

export function ipOpt(...ips: string[]): Buffer {
  const b = Buffer.allocUnsafe(4 * ips.length);
  ips.forEach((ip, i) => b.writeUInt32BE(ipInt(ip), 4 * i));
  return b;
}
export const u8Opt = (n: number): Buffer => Buffer.from([n & 255]);
export function u32Opt(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
export const strOpt = (s: string): Buffer => Buffer.from(s, 'latin1');

/**
 * Encapsulated sub-options (option 43 vendor space, 82 relay agent, 175 iPXE): the same
 * code/length/value layout as the top level. `end` appends an END byte, which PXE's
 * option 43 uses (PXE 2.1 §2.4) and iPXE's 175 does not need.
 */
export function encodeSubOptions(entries: Iterable<readonly [number, Buffer]>, end = false): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of entries) {
    if (value.length > 255) throw new RangeError(`sub-option ${code} is ${value.length} bytes`);
    parts.push(Buffer.from([code, value.length]), value);
  }
  if (end) parts.push(Buffer.from([Opt.END]));
  return Buffer.concat(parts);
}

/** The inverse of encodeSubOptions; throws DhcpParseError when a sub-option overruns its parent. */
export function decodeSubOptions(v: Buffer): Map<number, Buffer> {
  const parts = new Map<number, Buffer[]>();
  readOptions(v, 0, v.length, parts, false);
  return new Map([...parts].map(([code, p]) => [code, Buffer.concat(p)]));
}
