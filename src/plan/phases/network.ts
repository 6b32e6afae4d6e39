// A machine's links (issue 20) as systemd-networkd files: a .netdev per bond and VLAN, a
// .network per link, and one per bond member. The same files go into Ignition and
// cloud-config (render/). The simple form (no links) stays host.ts's one 10-slipway.network.
//
// Matching: Type=ether with every MAC, because a bond takes its first member's MAC and a
// VLAN its parent's: matched by MAC alone, they would match that NIC's file too. A bond
// member is matched by its permanent MAC (PermanentMACAddress=): the bond rewrites its
// members' current MAC to its own, after which the second member would match the first
// member's file. A NIC that is no bond member keeps its MAC: MACAddress= (which also
// matches NICs that report no permanent address, like veths).
import type { Link, Machine } from '../../spec/types.ts';
import { ifname, oneLine } from '../guard.ts';
import type { File, PhaseContext } from '../types.ts';
import { podSlices } from '../pod-slices.ts';

export const NETWORK_DIR = '/etc/systemd/network';
/** The bond's link monitor (ms): active-backup fails over only when the kernel sees a member's carrier go. */
export const MII_MONITOR_MS = 100;

const isMac = (s: string) => s.includes(':');

function match(where: string, nameOrMac: string, member = false): string[] {
  if (!isMac(nameOrMac)) return ['[Match]', `Name=${ifname(nameOrMac, where)}`];
  return ['[Match]', `${member ? 'PermanentMACAddress' : 'MACAddress'}=${oneLine(nameOrMac, where)}`, 'Type=ether'];
}

function netdev(m: Machine, l: Link): File {
  const where = `${m.name}'s ${l.name}.netdev`;
  const lines = [`# ${l.kind} ${l.name} from the cluster file (Slipway).`, '[NetDev]', `Name=${ifname(l.name, where)}`, `Kind=${l.kind}`];
  if (l.mtu) lines.push(`MTUBytes=${l.mtu}`);
  // The bond keeps its first member's MAC, as the kernel's own bonding does: networkd
  // would otherwise make one up from the machine id, which no switch port security, DHCP
  // reservation or ARP lookup by the machine's known MACs expects.
  const first = l.kind === 'bond' ? l.members?.[0] : undefined;
  if (first && isMac(first)) lines.push(`MACAddress=${oneLine(first, where)}`);
  if (l.kind === 'bond') {
    lines.push('', '[Bond]', `Mode=${l.mode}`, `MIIMonitorSec=${MII_MONITOR_MS}ms`);
    if (l.mode === '802.3ad') lines.push(`LACPTransmitRate=${l.lacpRate ?? 'slow'}`);
    if (l.mode !== 'active-backup') lines.push('TransmitHashPolicy=layer3+4');
  } else lines.push('', '[VLAN]', `Id=${l.id}`);
  return { path: `${NETWORK_DIR}/10-slipway-${l.name}.netdev`, mode: 0o644, contents: lines.join('\n') + '\n' };
}

function network(ctx: PhaseContext, m: Machine, l: Link, all: Link[]): File {
  const d = ctx.spec.provisioner.dhcp;
  const where = `${m.name}'s ${l.name}.network`;
  const lines = [`# ${l.name} from the cluster file${l.node ? ': the node link (node address, VIP, pod traffic)' : ''} (Slipway).`];
  lines.push(...(l.kind === 'nic' && l.mac ? match(where, l.mac) : match(where, l.name)));
  if (l.mtu) lines.push('', '[Link]', `MTUBytes=${l.mtu}`);
  lines.push('', '[Network]');
  if (l.node) lines.push(`Address=${m.ip}/${m.prefix}`);
  for (const a of l.addresses) lines.push(`Address=${oneLine(a, where)}`);
  const routes = l.routes.length || !l.node ? l.routes : d.router ? [{ to: 'default', via: d.router }] : [];
  for (const dns of l.dns.length || !l.node ? l.dns : d.dns) lines.push(`DNS=${dns}`);
  for (const v of all.filter((x) => x.kind === 'vlan' && x.on === l.name)) lines.push(`VLAN=${ifname(v.name, where)}`);
  // Static only (DHCP is for installing); no IPv6 unless asked for.
  lines.push('DHCP=no', 'IPv6AcceptRA=no', `LinkLocalAddressing=${l.ipv6 ? 'ipv6' : 'no'}`);
  // A parent with no address of its own (a bond under VLANs) is still brought up.
  if (!l.node && !l.addresses.length) lines.push('ConfigureWithoutCarrier=yes');
  const podRoutes: string[] = [];
  if (l.node && ctx.spec.network.cni === 'bridge') {
    // as host.ts: this machine forwards for its pods and routes every other machine's /24
    lines.push('IPForward=ipv4');
    for (const { machine, slice } of podSlices(ctx.spec))
      if (machine.name !== m.name) podRoutes.push('', `# pods on ${machine.name}`, '[Route]', `Destination=${slice.cidr}`, `Gateway=${machine.ip}`);
  }
  for (const r of routes) lines.push('', '[Route]', `Destination=${r.to === 'default' ? '0.0.0.0/0' : oneLine(r.to, where)}`, `Gateway=${oneLine(r.via, where)}`);
  lines.push(...podRoutes, '');
  return { path: `${NETWORK_DIR}/20-slipway-${l.name}.network`, mode: 0o644, contents: lines.join('\n') };
}

function member(m: Machine, bond: Link, nic: string, k: number): File {
  const where = `${m.name}'s bond ${bond.name} member ${nic}`;
  const lines = [`# member ${k + 1} of bond ${bond.name} (Slipway).`, ...match(where, nic, true), '', '[Network]', `Bond=${ifname(bond.name, where)}`];
  // the first member is the one that PXE-boots (untagged) and the one active-backup prefers
  if (k === 0 && bond.mode === 'active-backup') lines.push('PrimarySlave=yes');
  return { path: `${NETWORK_DIR}/15-slipway-${bond.name}-member${k + 1}.network`, mode: 0o644, contents: lines.join('\n') + '\n' };
}

/** Every networkd file of a machine with links. */
export function linkFiles(ctx: PhaseContext, m: Machine): File[] {
  const links = m.links ?? [];
  return links.flatMap((l) => [
    ...(l.kind === 'nic' ? [] : [netdev(m, l)]),
    network(ctx, m, l, links),
    ...(l.members ?? []).map((nic, k) => member(m, l, nic, k)),
  ]);
}
