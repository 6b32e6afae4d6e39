// IPv4 arithmetic the cluster file needs: parse, CIDR membership, overlap, nth host.
// Small enough that a dependency would cost more than it saves.

export interface Ipv4Net {
  /** network address as a 32-bit unsigned number */
  base: number;
  prefix: number;
  /** canonical "a.b.c.d/p" */
  cidr: string;
}

export function parseIp(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255 || (p.length > 1 && p.startsWith('0'))) return undefined;
    n = n * 256 + v;
  }
  return n;
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
