// dnsmasq rendering of the boot policy. Unlike dhcpd and Kea, dnsmasq can be a
// ProxyDHCP server, so this is the file for proxy mode: another DHCP server hands out
// addresses and dnsmasq only tells PXE clients what to boot. In full mode (and off mode,
// where it is an example for your own server) it is a complete DHCP + TFTP service.
import { formatIp, netmask } from '../../../lib/ipv4.ts';
import type { Spec } from '../../../spec/types.ts';
import { ARCH, HTTP_CLIENT_CLASS, IPXE_USER_CLASS, LOADERS, TFTP_ROOT, bootUrls } from './boot.ts';
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
    '# Tags for the kinds of client. iPXE announces itself by user class (and option 175).',
    `dhcp-userclass=set:ipxe,${v(IPXE_USER_CLASS)}`,
    'dhcp-match=set:ipxe,175',
    `dhcp-match=set:efi-x86_64,option:client-arch,${ARCH.efiBC}`,
    `dhcp-match=set:efi-x86_64,option:client-arch,${ARCH.efiX64}`,
    `dhcp-match=set:efi-http,option:client-arch,${ARCH.efiX64Http}`,
    '',
  ];
  if (proxy) {
    out.push(
      '# ProxyDHCP: the existing DHCP server keeps handing out addresses; dnsmasq answers',
      '# PXE clients with the boot service only. Each service names its loader with the',
      '# suffix, so dnsmasq does not append the PXE layer ".0".',
      `dhcp-range=${net},proxy,${mask}`,
      '# one service per architecture: boot it at once instead of showing a menu',
      'pxe-prompt="Slipway",0',
      `pxe-service=tag:!ipxe,x86PC,"Slipway: iPXE (BIOS)",${v(LOADERS.bios)}`,
      `pxe-service=tag:!ipxe,BC_EFI,"Slipway: iPXE (UEFI)",${v(LOADERS.efi)}`,
      `pxe-service=tag:!ipxe,x86-64_EFI,"Slipway: iPXE (UEFI)",${v(LOADERS.efi)}`,
      '# iPXE asks again; send it the per-MAC dispatcher (a loader again would loop).',
      `pxe-service=tag:ipxe,x86PC,"Slipway",${v(u.bootScript)}`,
      `pxe-service=tag:ipxe,BC_EFI,"Slipway",${v(u.bootScript)}`,
      `pxe-service=tag:ipxe,x86-64_EFI,"Slipway",${v(u.bootScript)}`,
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
    if (d.mode === 'full') out.push('dhcp-authoritative');
    out.push('', '# One reservation per machine in the cluster file.');
    for (const m of spec.machines) out.push(`dhcp-host=${m.mac},${m.ip},${v(m.name)}`);
    out.push(
      '',
      '# Boot files, one kind of client each (the tags are exclusive, so the order of these',
      '# lines does not matter). iPXE gets the per-MAC dispatcher; a loader again would loop.',
      `dhcp-boot=tag:ipxe,${v(u.bootScript)}`,
      `# UEFI HTTP boot fetches the URL itself and needs vendor class ${HTTP_CLIENT_CLASS} echoed.`,
      `dhcp-option-force=tag:!ipxe,tag:efi-http,option:vendor-class,${HTTP_CLIENT_CLASS}`,
      `dhcp-boot=tag:!ipxe,tag:efi-http,${v(u.httpBootLoader)}`,
      `dhcp-boot=tag:!ipxe,tag:efi-x86_64,${v(LOADERS.efi)},,${prov}`,
      `dhcp-boot=tag:!ipxe,tag:!efi-x86_64,tag:!efi-http,${v(LOADERS.bios)},,${prov}`,
    );
  }
  out.push('', '# The loaders (and PXELINUX, for pxelinux.cfg/) are served from here.', 'enable-tftp', `tftp-root=${TFTP_ROOT}`);
  return out.join('\n') + '\n';
}
