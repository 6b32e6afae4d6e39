// Kea DHCPv4 2.x rendering of the boot policy. Same decisions as dhcpd.conf, expressed
// as client classes; the classes are made mutually exclusive with member() so the result
// does not depend on how Kea orders boot-file-name between several matching classes.
// Like dhcpd, Kea cannot do ProxyDHCP: this is always a full service (see dhcpd.ts).
// Plain JSON (Kea also accepts comments, but other tools reading this file would not),
// so the explanations live in "comment" fields, which Kea keeps as user context.
import { broadcast } from '../../../lib/ipv4.ts';
import type { Spec } from '../../../spec/types.ts';
import { ARCH, HTTP_CLIENT_CLASS, IPXE_USER_CLASS, LOADERS, bootUrls } from './boot.ts';
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
  const notIpxe = "not member('ipxe')";
  const optionData: object[] = [{ name: 'broadcast-address', data: broadcast(d.subnet) }];
  if (d.router) optionData.push({ name: 'routers', data: d.router });
  if (d.dns.length) optionData.push({ name: 'domain-name-servers', data: d.dns.join(', ') });
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
      'client-classes': [
        {
          name: 'ipxe',
          comment: 'iPXE itself: give it the per-MAC dispatcher, never a loader again (that would loop).',
          test: `substring(option[77].hex,0,${IPXE_USER_CLASS.length}) == ${lit(IPXE_USER_CLASS)}`,
          'boot-file-name': u.bootScript,
        },
        {
          name: 'efi-http',
          comment: `UEFI HTTP boot: fetches the URL itself and only accepts offers echoing vendor class ${HTTP_CLIENT_CLASS}.`,
          test: `${arch(ARCH.efiX64Http)} and ${notIpxe}`,
          'boot-file-name': u.httpBootLoader,
          'option-data': [{ name: 'vendor-class-identifier', data: HTTP_CLIENT_CLASS, 'always-send': true }],
        },
        {
          name: 'efi-x64',
          comment: 'UEFI x64 PXE (firmware sends 7 or 9): iPXE over the firmware SNP driver, by TFTP.',
          test: `(${arch(ARCH.efiBC)} or ${arch(ARCH.efiX64)}) and ${notIpxe}`,
          'boot-file-name': LOADERS.efi,
        },
        {
          name: 'bios',
          comment: 'Everything else is BIOS PXE (arch 0 or no option 93): iPXE over UNDI, by TFTP.',
          test: `${notIpxe} and not member('efi-http') and not member('efi-x64')`,
          'boot-file-name': LOADERS.bios,
        },
      ],
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
