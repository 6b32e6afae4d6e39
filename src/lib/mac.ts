// Ethernet addresses: the one way Slipway writes them, and the ones it makes up itself.
import { randomBytes } from 'node:crypto';

/** Six hex pairs, all ":" or all "-" (as the cluster file may spell them). */
export const MAC_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** "52-54-00-AB-cd-ef" → "52:54:00:ab:cd:ef": how MACs are compared and stored everywhere. */
export const normalizeMac = (mac: string): string => mac.toLowerCase().replace(/-/g, ':');

/** A random unicast, locally administered MAC ("x2:…", "x6:…", …): no real NIC has one. */
export function randomLocalMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
