// dnsmasq rendering of the boot policy. Unlike dhcpd and Kea, dnsmasq can be a
// ProxyDHCP server, so this is the file for proxy mode: another DHCP server hands out
// addresses and dnsmasq only tells PXE clients what to boot. In full mode (and off mode,
// where it is an example for your own server) it is a complete DHCP + TFTP service.
import { formatIp, netmask } from '../../../lib/ipv4.ts';
import type { Spec } from '../../../spec/types.ts';
import { ARCH, BOOT_RULES, TFTP_ROOT, bootUrls } from './boot.ts';

/** dnsmasq's names for the PXE client system types a ProxyDHCP pxe-service line takes, by option-93 arch. */
const PROXY_CSA: Record<number, string> = { [ARCH.bios]: 'x86PC', [ARCH.efiBC]: 'BC_EFI', [ARCH.efiX64]: 'x86-64_EFI' };
import { dnsmasqValue as v } from './text.ts';
import { ifname } from '../../guard.ts';

export function dnsmasqConf(spec: Spec): string {
  const d = spec.provisioner.dhcp;
  const u = bootUrls(spec);
  const prov = spec.provisioner.address;
  const net = formatIp(d.subnet.base);
  const mask = netmask(d.subnet.prefix);
  const proxy = d.mode === 'proxy';
  const out: string[] = [
    `# dnsmasq configuration for cluster "${spec.name}", written by Slipway (DHCP mode ${d.mode}).`,
    '# Check with: dnsmasq --test -C dnsmasq.conf',
    '',
    '# DHCP and TFTP only: port=0 turns the DNS server off.',
    'port=0',
    `interface=${ifname(d.interface, 'dnsmasq.conf\'s interface=')}`,
    'bind-dynamic',
    'log-dhcp',
    '',
    '# Tags for the kinds of client (BOOT_RULES: iPXE by its user class, firmware by option 93).',
    ...BOOT_RULES.flatMap((r) =>
      !r.match ? [] : 'userClass' in r.match ? [`dhcp-userclass=set:${r.name},${v(r.match.userClass)}`] : r.match.arch.map((a) => `dhcp-match=set:${r.name},option:client-arch,${a}`),
    ),
    '',
  ];
  const ipxe = BOOT_RULES.find((r) => r.name === 'ipxe')!;
  if (proxy) {
    out.push(
      '# ProxyDHCP: the existing DHCP server keeps handing out addresses; dnsmasq answers',
      '# PXE clients with the boot service only. Each service names its loader with the',
      '# suffix, so dnsmasq does not append the PXE layer ".0".',
      `dhcp-range=${net},proxy,${mask}`,
      '# one service per architecture: boot it at once instead of showing a menu',
      'pxe-prompt="Slipway",0',
      // the TFTP rules, per PXE client system type (the last rule, no match, is BIOS: arch 0)
      ...BOOT_RULES.filter((r) => r.tftp).flatMap((r) =>
        (r.match && 'arch' in r.match ? r.match.arch : [ARCH.bios]).map((a) => `pxe-service=tag:!${ipxe.name},${PROXY_CSA[a]},"Slipway: iPXE (${a === ARCH.bios ? 'BIOS' : 'UEFI'})",${v(r.file(u, 'ipxe'))}`),
      ),
      '# iPXE asks again; send it the per-MAC dispatcher (a loader again would loop).',
      ...Object.values(PROXY_CSA).map((csa) => `pxe-service=tag:${ipxe.name},${csa},"Slipway",${v(ipxe.file(u, 'ipxe'))}`),
      '# UEFI HTTP boot needs a full DHCP server naming the URL; it is not served by ProxyDHCP.',
    );
  } else {
    out.push(
      '# Addresses only for the machines listed below ("static")',
      `dhcp-range=set:slipway,${net},static,${mask},1h`,
    );
    if (d.pool) out.push('# and a pool for machines not in the cluster file', `dhcp-range=set:slipway,${d.pool.start},${d.pool.end},${mask},1h`);
    if (d.router) out.push(`dhcp-option=tag:slipway,option:router,${d.router}`);
    if (d.dns.length) out.push(`dhcp-option=tag:slipway,option:dns-server,${d.dns.join(',')}`);
    out.push('# time from the provisioner: slipway serve answers SNTP', `dhcp-option=tag:slipway,option:ntp-server,${prov}`);
    if (d.mode === 'full') out.push('dhcp-authoritative');
    out.push('', '# One reservation per machine in the cluster file.');
    for (const m of spec.machines) out.push(`dhcp-host=${m.mac},${m.ip},${v(m.name)}`);
    out.push(
      '',
      '# Boot files, one kind of client each (BOOT_RULES in order: each excludes the tags',
      '# before it, so the tags are exclusive and the order of these lines does not matter).',
      ...BOOT_RULES.flatMap((r, i) => {
        const tags = [...BOOT_RULES.slice(0, i).map((e) => `tag:!${e.name}`), ...(r.match ? [`tag:${r.name}`] : [])].join(',');
        return [
          `# ${r.comment}`,
          ...(r.vendorClass ? [`dhcp-option-force=${tags},option:vendor-class,${r.vendorClass}`] : []),
          `dhcp-boot=${tags},${v(r.file(u, 'ipxe'))}${r.tftp ? `,,${prov}` : ''}`,
        ];
      }),
    );
  }
  out.push('', '# The loaders (and PXELINUX, for pxelinux.cfg/) are served from here.', 'enable-tftp', `tftp-root=${TFTP_ROOT}`);
  return out.join('\n') + '\n';
}
