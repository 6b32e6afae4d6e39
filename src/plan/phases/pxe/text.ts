// Quoting for the DHCP/boot config languages. The values Slipway puts in them are
// validated names, addresses and URLs, so these only guard against the characters each
// language gives meaning to, and refuse what cannot be expressed at all.

/** A double-quoted ISC dhcpd string. */
export function dhcpdString(s: string): string {
  if (/[\n\r\0]/.test(s)) throw new Error(`cannot put ${JSON.stringify(s)} in dhcpd.conf`);
  return `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** A 16-bit number as dhcpd colon-hex data, e.g. 7 → "00:07" (what `option arch` compares against). */
export function hex16(n: number): string {
  const h = n.toString(16).padStart(4, '0');
  return `${h.slice(0, 2)}:${h.slice(2)}`;
}

/**
 * A dnsmasq option value: dnsmasq splits values on commas and has no escape for them,
 * and a line ends the value.
 */
export function dnsmasqValue(s: string): string {
  if (/[,\n\r\0]/.test(s)) throw new Error(`cannot put ${JSON.stringify(s)} in dnsmasq.conf`);
  return s;
}

/** One word of a PXELINUX APPEND line or an iPXE command line: no whitespace, no iPXE expansions. */
export function bootWord(s: string): string {
  if (/[\s${}]/.test(s) || s === '') throw new Error(`cannot put ${JSON.stringify(s)} on a kernel command line`);
  return s;
}
