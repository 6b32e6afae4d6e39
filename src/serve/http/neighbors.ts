// The MAC behind an IP on a directly attached segment, from the kernel's neighbour
// (ARP) table: the HTTP server uses it to check that a request for machine X's
// credentials really comes from X's NIC, not only from X's address.
import { readFileSync } from 'node:fs';

export type MacOf = (ip: string) => string | undefined;

export function arpTableMac(ip: string, table = '/proc/net/arp'): string | undefined {
  let text: string;
  try {
    text = readFileSync(table, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').slice(1)) {
    const [addr, , flags, mac] = line.trim().split(/\s+/);
    // flags 0x0 = incomplete entry: no MAC known
    if (addr === ip && mac && flags !== '0x0' && mac !== '00:00:00:00:00:00') return mac.toLowerCase();
  }
  return undefined;
}
