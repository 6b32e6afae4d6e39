// Kea DHCPv4 2.x rendering of the boot policy. Same decisions as dhcpd.conf, expressed
// as client classes; the classes are made mutually exclusive with member() so the result
// does not depend on how Kea orders boot-file-name between several matching classes.
// Like dhcpd, Kea cannot do ProxyDHCP: this is always a full service (see dhcpd.ts).
// Plain JSON (Kea also accepts comments, but other tools reading this file would not),
// so the explanations live in "comment" fields, which Kea keeps as user context.
import { broadcast } from '../../../lib/ipv4.ts';
import type { Spec } from '../../../spec/types.ts';
import { BOOT_RULES, bootUrls } from './boot.ts';
import { ifname } from '../../guard.ts';

const arch = (n: number) => `option[93].hex == 0x${n.toString(16).padStart(4, '0')}`;
/** a Kea expression string literal (single quotes, no escapes in Kea's grammar) */
const lit = (s: string): string => {
  if (s.includes("'")) throw new Error(`cannot put ${JSON.stringify(s)} in a Kea expression`);
  return `'${s}'`;
};

export function keaConfig(spec: Spec): object {
  const d = spec.provisioner.dhcp;
  const u = bootUrls(spec);
  const optionData: object[] = [{ name: 'broadcast-address', data: broadcast(d.subnet) }];
  if (d.router) optionData.push({ name: 'routers', data: d.router });
  if (d.dns.length) optionData.push({ name: 'domain-name-servers', data: d.dns.join(', ') });
  // time from the provisioner: slipway serve answers SNTP
  optionData.push({ name: 'ntp-servers', data: spec.provisioner.address });
  return {
    Dhcp4: {
      comment: `Kea DHCPv4 configuration for cluster "${spec.name}", written by Slipway (DHCP mode ${d.mode}). Check with: kea-dhcp4 -t kea-dhcp4.json`,
      'interfaces-config': { interfaces: [ifname(d.interface, 'kea-dhcp4.json\'s interfaces-config')] },
      // The default lease file in Kea's state directory: newer Kea releases refuse lease
      // files anywhere else.
      'lease-database': { type: 'memfile', persist: true, 'lfc-interval': 3600 },
      // Install-time only (machines go static afterwards), so short leases.
      'valid-lifetime': 3600,
      'renew-timer': 900,
      'rebind-timer': 1800,
      authoritative: d.mode === 'full',
      // BOOT_RULES in order; Kea evaluates every class, so each also excludes the ones before.
      'client-classes': BOOT_RULES.map((r, i) => {
        const earlier = BOOT_RULES.slice(0, i).map((e) => `not member(${lit(e.name)})`);
        const own = !r.match
          ? []
          : 'userClass' in r.match
            ? [`substring(option[77].hex,0,${r.match.userClass.length}) == ${lit(r.match.userClass)}`]
            : [r.match.arch.length > 1 ? `(${r.match.arch.map(arch).join(' or ')})` : arch(r.match.arch[0]!)];
        return {
          name: r.name,
          comment: r.comment,
          test: [...own, ...earlier].join(' and '),
          'boot-file-name': r.file(u, 'ipxe'),
          ...(r.vendorClass ? { 'option-data': [{ name: 'vendor-class-identifier', data: r.vendorClass, 'always-send': true }] } : {}),
        };
      }),
      subnet4: [
        {
          id: 1,
          subnet: d.subnet.cidr,
          interface: d.interface,
          'next-server': spec.provisioner.address,
          pools: d.pool ? [{ pool: `${d.pool.start} - ${d.pool.end}` }] : [],
          'option-data': optionData,
          reservations: spec.machines.map((m) => ({ 'hw-address': m.mac, 'ip-address': m.ip, hostname: m.name })),
        },
      ],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
    },
  };
}

export const keaJson = (spec: Spec): string => JSON.stringify(keaConfig(spec), null, 2) + '\n';
