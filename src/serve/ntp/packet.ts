// SNTP (RFC 4330, NTPv4's wire format, RFC 5905 §7.3): the 48-byte header, pure. New
// machines often have clocks years off; TLS (etcd, the API) then fails, so serve answers
// time on the provisioning network (guide 03 syncs the clock first for this reason).
//
//  0                   1                   2                   3
//  |LI | VN  |Mode |    Stratum    |     Poll      |   Precision   |
//  |                          Root Delay                           |
//  |                       Root Dispersion                         |
//  |                     Reference Identifier                      |
//  |                Reference Timestamp (64)                       |
//  |                Originate Timestamp (64)                       |
//  |                 Receive Timestamp (64)                        |
//  |                Transmit Timestamp (64)                        |

export const NTP_HEADER = 48;
export const MODE_CLIENT = 3;
export const MODE_SERVER = 4;
/** Seconds from the NTP era's start (1900-01-01) to the Unix epoch. */
const NTP_UNIX_OFFSET = 2_208_988_800;

export interface ClientRequest {
  version: number;
  poll: number;
  /** the client's transmit timestamp, echoed as the reply's originate timestamp (raw 8 bytes) */
  transmit: Buffer;
}

/** Why a datagram gets no answer; undefined for a client request to answer. */
export function parseRequest(b: Buffer): ClientRequest | { drop: 'short' | 'not-client' | 'bad-version' } {
  if (b.length < NTP_HEADER) return { drop: 'short' };
  const mode = b[0]! & 7;
  const version = (b[0]! >> 3) & 7;
  // RFC 4330 §5: answer modes 3 (client); versions 1-4 (reply with the client's version).
  if (mode !== MODE_CLIENT) return { drop: 'not-client' };
  if (version < 1 || version > 4) return { drop: 'bad-version' };
  return { version, poll: b[2]!, transmit: Buffer.from(b.subarray(40, 48)) };
}

/** Unix time in milliseconds (fractional) → the 64-bit NTP timestamp, written at `at`. */
export function writeTimestamp(b: Buffer, at: number, unixMs: number): void {
  const seconds = Math.floor(unixMs / 1000);
  const fraction = Math.floor(((unixMs - seconds * 1000) / 1000) * 2 ** 32);
  b.writeUInt32BE((seconds + NTP_UNIX_OFFSET) >>> 0, at);
  b.writeUInt32BE(Math.min(fraction, 2 ** 32 - 1) >>> 0, at + 4);
}

/** The 64-bit NTP timestamp at `at` → Unix time in milliseconds. */
export function readTimestamp(b: Buffer, at: number): number {
  return (b.readUInt32BE(at) - NTP_UNIX_OFFSET) * 1000 + (b.readUInt32BE(at + 4) / 2 ** 32) * 1000;
}

export interface ServerClock {
  /** what the provisioner's clock is to its clients: its stratum (RFC 5905: 1 primary, 2-15 secondary, 16 unsynchronized) */
  stratum: number;
  /** log2 seconds of the clock's resolution */
  precision: number;
  /** four ASCII characters for stratum 1 ("LOCL": a local clock), else an IPv4 address */
  referenceId: string;
}

/** The server's reply (mode 4) to `req`, received at `receivedMs` and sent at `transmitMs` (Unix ms). */
export function encodeReply(req: ClientRequest, clock: ServerClock, receivedMs: number, transmitMs: number): Buffer {
  const b = Buffer.alloc(NTP_HEADER);
  b[0] = (0 << 6) | (req.version << 3) | MODE_SERVER; // LI 0: no leap second pending
  b[1] = clock.stratum;
  b[2] = req.poll;
  b.writeInt8(clock.precision, 3);
  // root delay 0 and a small root dispersion: the provisioner is the reference here
  b.writeUInt32BE(0, 4);
  b.writeUInt32BE(Math.round(0.01 * 65536), 8);
  const ref = /^\d+\.\d+\.\d+\.\d+$/.test(clock.referenceId) ? Buffer.from(clock.referenceId.split('.').map(Number)) : Buffer.from(clock.referenceId.padEnd(4, '\0').slice(0, 4), 'latin1');
  ref.copy(b, 12);
  writeTimestamp(b, 16, receivedMs);
  req.transmit.copy(b, 24); // originate: the client's own transmit timestamp, byte for byte
  writeTimestamp(b, 32, receivedMs);
  writeTimestamp(b, 40, transmitMs);
  return b;
}
