// IPv4 arithmetic the cluster file needs: parse, CIDR membership, overlap, nth host.
// Small enough that a dependency would cost more than it saves.

export interface Ipv4Net {
  /** network address as a 32-bit unsigned number */
  base: number;
  prefix: number;
  /** canonical "a.b.c.d/p" */
  cidr: string;
}

/**
 * Dotted quad → 32-bit unsigned number; undefined when malformed. A leading zero is
 * refused ("010" is 8 to inet_aton, 10 to others). A character loop rather than
 * split/map: the DHCP server parses a dozen addresses per reply, and this was a
 * measurable share of its CPU.
 */
export function parseIp(s: string): number | undefined {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  let lead = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || ++dots > 3) return undefined;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      if (digits === 1 && lead) return undefined;
      if (digits === 0) lead = c === 48;
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return undefined;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + part;
}

export function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const maskOf = (prefix: number): number => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

export function parseCidr(s: string): Ipv4Net | undefined {
  const [addr, p, extra] = s.split('/');
  if (extra !== undefined || addr === undefined || p === undefined || !/^\d{1,2}$/.test(p)) return undefined;
  const ip = parseIp(addr);
  const prefix = Number(p);
  if (ip === undefined || prefix > 32) return undefined;
  const base = (ip & maskOf(prefix)) >>> 0;
  return { base, prefix, cidr: `${formatIp(base)}/${prefix}` };
}

export function netmask(prefix: number): string {
  return formatIp(maskOf(prefix));
}

export function contains(net: Ipv4Net, ip: string | number): boolean {
  const n = typeof ip === 'number' ? ip : parseIp(ip);
  return n !== undefined && ((n & maskOf(net.prefix)) >>> 0) === net.base;
}

export function overlaps(a: Ipv4Net, b: Ipv4Net): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.base & maskOf(p)) >>> 0) === ((b.base & maskOf(p)) >>> 0);
}

/** The n-th address of a network (n = 1: first host), as kubeadm picks service IPs. */
export function nthHost(net: Ipv4Net, n: number): string {
  return formatIp((net.base + n) >>> 0);
}

export function broadcast(net: Ipv4Net): string {
  return formatIp((net.base | (~maskOf(net.prefix) >>> 0)) >>> 0);
}
