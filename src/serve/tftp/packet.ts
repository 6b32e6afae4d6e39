// The TFTP wire format, as a pure codec: RFC 1350 packets (RRQ, WRQ, DATA, ACK, ERROR)
// plus the option extension of RFC 2347 (options in requests, OACK) with the options a
// network-boot server cares about: blksize (RFC 2348), timeout and tsize (RFC 2349) and
// windowsize (RFC 7440). No I/O here: the server and the tests share it.
//
// Decoding never throws anything but TftpParseError, whose `reason` is one of a small
// fixed set (it becomes a metric label). Where peers in the field deviate harmlessly the
// decoder is lenient, and says so below: NUL padding after a request's last option,
// trailing bytes after an ACK, an ERROR message without its terminating NUL.

export const OPCODE = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;

/** RFC 1350 error codes, plus 8 from RFC 2347. */
export const ERROR_CODE = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_NEGOTIATION: 8,
} as const;

/** RFC 1350's fixed block size, used whenever blksize was not negotiated. */
export const DEFAULT_BLKSIZE = 512;

/** What each known option may hold (RFC 2348, 2349, 7440). tsize is bounded by what a JS number holds exactly. */
export const OPTION_RANGES = {
  blksize: { min: 8, max: 65464 },
  tsize: { min: 0, max: Number.MAX_SAFE_INTEGER },
  timeout: { min: 1, max: 255 },
  windowsize: { min: 1, max: 65535 },
} as const;

export type OptionName = keyof typeof OPTION_RANGES;
export type Options = Partial<Record<OptionName, number>>;
export type Mode = 'netascii' | 'octet' | 'mail';

export interface RequestPacket {
  op: 'RRQ' | 'WRQ';
  filename: string;
  mode: Mode;
  options: Options;
  /** options this codec does not know, in packet order; RFC 2347 says to ignore them (they are kept for logs) */
  unknown: [string, string][];
}
export interface DataPacket {
  op: 'DATA';
  block: number;
  data: Buffer;
}
export interface AckPacket {
  op: 'ACK';
  block: number;
}
export interface ErrorPacket {
  op: 'ERROR';
  code: number;
  message: string;
}
export interface OackPacket {
  op: 'OACK';
  options: Options;
  unknown: [string, string][];
}
export type Packet = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

export type ParseReason =
  | 'truncated'
  | 'bad-opcode'
  | 'no-nul'
  | 'empty-filename'
  | 'bad-encoding'
  | 'bad-mode'
  | 'empty-option'
  | 'missing-value'
  | 'duplicate-option'
  | 'bad-option-value'
  | 'option-out-of-range';

/** Reasons that concern options: a server answers those with ERROR 8 (RFC 2347). */
export const OPTION_REASONS: ReadonlySet<ParseReason> = new Set(['empty-option', 'missing-value', 'duplicate-option', 'bad-option-value', 'option-out-of-range']);

export class TftpParseError extends Error {
  readonly reason: ParseReason;
  constructor(reason: ParseReason, detail?: string) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'TftpParseError';
    this.reason = reason;
  }
}

const OP_NAMES = ['', 'RRQ', 'WRQ', 'DATA', 'ACK', 'ERROR', 'OACK'] as const;
// fatal: a filename that is not UTF-8 is refused rather than silently turned into U+FFFD,
// which could name a different file than the client meant.
const utf8 = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------- decoding

/** Decode one datagram. Throws TftpParseError (only) when it is not a valid TFTP packet. */
export function decode(buf: Uint8Array): Packet {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 2) throw new TftpParseError('truncated', 'no opcode');
  const opcode = b.readUInt16BE(0);
  switch (opcode) {
    case OPCODE.RRQ:
    case OPCODE.WRQ:
      return decodeRequest(b, opcode === OPCODE.RRQ ? 'RRQ' : 'WRQ');
    case OPCODE.DATA:
      if (b.length < 4) throw new TftpParseError('truncated', 'DATA without block number');
      return { op: 'DATA', block: b.readUInt16BE(2), data: b.subarray(4) };
    case OPCODE.ACK:
      // Lenient: bytes after the block number are ignored (some PXE ROMs pad ACKs).
      if (b.length < 4) throw new TftpParseError('truncated', 'ACK without block number');
      return { op: 'ACK', block: b.readUInt16BE(2) };
    case OPCODE.ERROR:
      return decodeError(b);
    case OPCODE.OACK: {
      const { options, unknown } = decodeOptions(b, 2);
      return { op: 'OACK', options, unknown };
    }
    default:
      throw new TftpParseError('bad-opcode', String(opcode));
  }
}

/** The opcode name of a datagram, if its first two bytes are a known opcode (for metrics about undecodable packets). */
export function opcodeOf(buf: Uint8Array): Packet['op'] | undefined {
  if (buf.length < 2) return undefined;
  return OP_NAMES[(buf[0]! << 8) | buf[1]!] || undefined;
}

function decodeRequest(b: Buffer, op: 'RRQ' | 'WRQ'): RequestPacket {
  const name = cString(b, 2, 'filename');
  if (name.end === 2) throw new TftpParseError('empty-filename');
  let filename: string;
  try {
    filename = utf8.decode(b.subarray(2, name.end));
  } catch {
    throw new TftpParseError('bad-encoding', 'filename is not UTF-8');
  }
  const modeField = cString(b, name.end + 1, 'mode');
  const mode = b.toString('latin1', name.end + 1, modeField.end).toLowerCase();
  if (mode !== 'netascii' && mode !== 'octet' && mode !== 'mail') throw new TftpParseError('bad-mode', JSON.stringify(mode.slice(0, 32)));
  const { options, unknown } = decodeOptions(b, modeField.end + 1);
  return { op, filename, mode, options, unknown };
}

function decodeError(b: Buffer): ErrorPacket {
  if (b.length < 4) throw new TftpParseError('truncated', 'ERROR without code');
  const nul = b.indexOf(0, 4);
  // Lenient: an unterminated message still ends the transfer it belongs to.
  const message = b.toString('latin1', 4, nul < 0 ? b.length : nul);
  return { op: 'ERROR', code: b.readUInt16BE(2), message };
}

/** A NUL-terminated string starting at `start`: where its NUL is. */
function cString(b: Buffer, start: number, what: string): { start: number; end: number } {
  if (start >= b.length) throw new TftpParseError('truncated', `no ${what}`);
  const end = b.indexOf(0, start);
  if (end < 0) throw new TftpParseError('no-nul', `${what} not terminated`);
  return { start, end };
}

/** Option name/value pairs from `pos` to the end of the packet. */
function decodeOptions(b: Buffer, pos: number): { options: Options; unknown: [string, string][] } {
  const options: Options = {};
  const unknown: [string, string][] = [];
  const seen = new Set<string>();
  while (pos < b.length) {
    // Lenient: NUL padding after the last option (seen from some PXE ROMs) is not an option.
    if (b[pos] === 0 && allZero(b, pos)) break;
    const nameField = cString(b, pos, 'option name');
    if (nameField.end === pos) throw new TftpParseError('empty-option');
    if (nameField.end + 1 >= b.length) throw new TftpParseError('missing-value', b.toString('latin1', pos, nameField.end).slice(0, 32));
    const valueField = cString(b, nameField.end + 1, 'option value');
    const name = b.toString('latin1', pos, nameField.end);
    const value = b.toString('latin1', nameField.end + 1, valueField.end);
    const key = name.toLowerCase();
    if (seen.has(key)) throw new TftpParseError('duplicate-option', key.slice(0, 32));
    seen.add(key);
    if (isOptionName(key)) options[key] = optionValue(key, value);
    else unknown.push([name, value]);
    pos = valueField.end + 1;
  }
  return { options, unknown };
}

function allZero(b: Buffer, from: number): boolean {
  for (let i = from; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function isOptionName(s: string): s is OptionName {
  return Object.hasOwn(OPTION_RANGES, s);
}

/** Option values are ASCII decimal integers (RFC 2348/2349/7440); anything else is refused. */
function optionValue(name: OptionName, value: string): number {
  if (!/^[0-9]{1,20}$/.test(value)) throw new TftpParseError('bad-option-value', `${name}=${JSON.stringify(value.slice(0, 32))}`);
  const n = Number(value);
  const { min, max } = OPTION_RANGES[name];
  if (n < min || n > max) throw new TftpParseError('option-out-of-range', `${name}=${value}`);
  return n;
}

// ---------------------------------------------------------------- encoding

/** Encode any packet (the tests' clients use the request and ACK forms). */
export function encode(p: Packet): Buffer {
  switch (p.op) {
    case 'RRQ':
    case 'WRQ':
      return encodeRequest(p);
    case 'DATA':
      return Buffer.concat([dataHeader(p.block), p.data]);
    case 'ACK':
      return encodeAck(p.block);
    case 'ERROR':
      return encodeError(p.code, p.message);
    case 'OACK':
      return encodeOack(p.options, p.unknown);
  }
}

export function encodeRequest(p: Omit<RequestPacket, 'unknown'> & { unknown?: [string, string][] }): Buffer {
  const op = Buffer.alloc(2);
  op.writeUInt16BE(p.op === 'RRQ' ? OPCODE.RRQ : OPCODE.WRQ);
  return Buffer.concat([op, cstr(p.filename, 'utf8'), cstr(p.mode), optionBytes(p.options, p.unknown)]);
}

/** The 4-byte DATA header; the server sends it and the payload as two buffers, without copying the payload. */
export function dataHeader(block: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt16BE(OPCODE.DATA, 0);
  h.writeUInt16BE(checkBlock(block), 2);
  return h;
}

export function encodeAck(block: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt16BE(OPCODE.ACK, 0);
  b.writeUInt16BE(checkBlock(block), 2);
  return b;
}

export function encodeError(code: number, message: string): Buffer {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) throw new RangeError(`bad TFTP error code ${code}`);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt16BE(OPCODE.ERROR, 0);
  head.writeUInt16BE(code, 2);
  // NUL would end the message early; peers print it, so keep it short ASCII.
  return Buffer.concat([head, cstr(message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200))]);
}

export function encodeOack(options: Options, unknown: [string, string][] = []): Buffer {
  const op = Buffer.alloc(2);
  op.writeUInt16BE(OPCODE.OACK);
  return Buffer.concat([op, optionBytes(options, unknown)]);
}

function optionBytes(options: Options, unknown: [string, string][] = []): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue;
    parts.push(cstr(name), cstr(String(value)));
  }
  for (const [name, value] of unknown) parts.push(cstr(name), cstr(value));
  return Buffer.concat(parts);
}

function cstr(s: string, encoding: BufferEncoding = 'latin1'): Buffer {
  const body = Buffer.from(s, encoding);
  if (body.includes(0)) throw new RangeError('TFTP strings cannot contain NUL');
  return Buffer.concat([body, Buffer.alloc(1)]);
}

function checkBlock(block: number): number {
  if (!Number.isInteger(block) || block < 0 || block > 0xffff) throw new RangeError(`bad TFTP block number ${block}`);
  return block;
}
