// ISC dhcpd 4.4 rendering of the boot policy (guide 01's dhcpd.conf, grown to tell BIOS,
// UEFI, UEFI HTTP boot and iPXE apart). ISC dhcpd cannot act as ProxyDHCP, so this file
// is always a full DHCP service; in proxy mode it is what you would run if the provisioner
// took over the network, and its host blocks are what the existing server needs for the
// machines to get their planned addresses while installing.
import { netmask, broadcast, formatIp } from '../../../lib/ipv4.ts';
import type { Spec } from '../../../spec/types.ts';
import { BOOT_RULES, bootUrls } from './boot.ts';
import { dhcpdString, hex16 } from './text.ts';

export function dhcpdConf(spec: Spec): string {
  const d = spec.provisioner.dhcp;
  const u = bootUrls(spec);
  const q = dhcpdString;
  const out: string[] = [
    `# ISC dhcpd configuration for cluster "${spec.name}", written by Slipway. Do not edit:`,
    '# re-render from the cluster file instead.',
    `# DHCP mode in the cluster file: ${d.mode}.${d.mode === 'full' ? '' : ' dhcpd cannot do ProxyDHCP; see dnsmasq.conf for that.'}`,
    '# Check with: dhcpd -t -cf dhcpd.conf',
    '',
    'ddns-update-style none;',
    // DHCP is only for installing: machines configure their address statically afterwards
    // (guide 03: a DHCP outage must not take nodes down), so short leases are fine.
    'default-lease-time 3600;',
    'max-lease-time 7200;',
    d.mode === 'full' ? 'authoritative;' : '# not authoritative: another DHCP server owns this network in proxy mode',
    '',
    '# Option 93: the client\'s firmware architecture (RFC 4578).',
    'option arch code 93 = unsigned integer 16;',
    '',
    '# The loader each kind of client gets, first match wins (the same table serve answers from).',
    ...BOOT_RULES.flatMap((r, i) => {
      const cond = !r.match
        ? undefined
        : 'userClass' in r.match
          ? `exists user-class and option user-class = ${q(r.match.userClass)}`
          : r.match.arch.map((a) => `option arch = ${hex16(a)}`).join(' or ');
      return [
        i === 0 ? `if ${cond} {` : cond ? `} elsif ${cond} {` : '} else {',
        `  # ${r.comment}`,
        ...(r.vendorClass ? [`  option vendor-class-identifier ${q(r.vendorClass)};`] : []),
        `  filename ${q(r.file(u, 'ipxe'))};`,
      ];
    }),
    '}',
    '# TFTP server for the loaders',
    `next-server ${spec.provisioner.address};`,
    '',
    `subnet ${formatIp(d.subnet.base)} netmask ${netmask(d.subnet.prefix)} {`,
    `  option subnet-mask ${netmask(d.subnet.prefix)};`,
    `  option broadcast-address ${broadcast(d.subnet)};`,
  ];
  if (d.router) out.push(`  option routers ${d.router};`);
  if (d.dns.length) out.push(`  option domain-name-servers ${d.dns.join(', ')};`);
  out.push(`  # time from the provisioner: slipway serve answers SNTP`, `  option ntp-servers ${spec.provisioner.address};`);
  if (d.pool) out.push(`  # addresses for machines not in the cluster file`, `  range ${d.pool.start} ${d.pool.end};`);
  else out.push('  # no pool: only the machines below get an address');
  out.push('}', '');
  out.push('# One host per machine in the cluster file (guide 01).');
  for (const m of spec.machines)
    out.push(
      `host ${m.name} {`,
      `  hardware ethernet ${m.mac};`,
      `  fixed-address ${m.ip};`,
      `  option host-name ${q(m.name)};`,
      '}',
    );
  return out.join('\n') + '\n';
}
