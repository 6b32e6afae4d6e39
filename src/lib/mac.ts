// Ethernet addresses Slipway makes up itself.
import { randomBytes } from 'node:crypto';

/** A random unicast, locally administered MAC ("x2:…", "x6:…", …): no real NIC has one. */
export function randomLocalMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
