// A machine's links (issue 20): NICs by MAC or name, bonds, VLANs, MTU, addresses, routes
// and DNS per link, and which link carries the node address. What `validate` refuses here
// is what systemd-networkd, the kernel or keepalived could not make work; resolve fills in
// the defaults. The simple form (`interface` + `ip`, no links) is untouched by all of it.
import { isIP } from 'node:net';
import { contains, parseCidr, parseIp } from '../lib/ipv4.ts';
import { normalizeMac } from '../lib/mac.ts';
import type { ClusterFile } from './schema.ts';
import type { PathSeg } from './problems.ts';
import type { Link } from './types.ts';

type RawMachine = ClusterFile['spec']['machines'][number];
type RawLink = NonNullable<RawMachine['links']>[number];
type Report = (path: PathSeg[], message: string) => void;

/** The links a machine is configured with: its own, else its first role's default; undefined: the simple form. */
export function rawLinks(cf: ClusterFile, i: number): { links: RawLink[]; path: PathSeg[] } | undefined {
  const m = cf.spec.machines[i]!;
  if (m.links) return { links: m.links, path: ['spec', 'machines', i, 'links'] };
  if (m.interface) return undefined; // a machine that names its NIC keeps the simple form
  for (const r of m.roles) {
    const d = cf.spec.linkDefaults?.[r as keyof NonNullable<ClusterFile['spec']['linkDefaults']>];
    if (d) return { links: d, path: ['spec', 'linkDefaults', r] };
  }
  return undefined;
}

const isMac = (s: string) => s.includes(':') || s.includes('-');

/** Index of the node link: the one marked, else the only one; -1 when none can be told. */
function nodeIndex(links: RawLink[]): number {
  const marked = links.findIndex((l) => l.node);
  return marked >= 0 ? marked : links.length === 1 ? 0 : -1;
}

const hasIpv6 = (l: RawLink) => !!l.ipv6 || (l.addresses ?? []).some((a) => isIP(a.split('/')[0]!) === 6);

/** Does the machine's node link have a name keepalived can bind (a bond, a VLAN or a NIC matched by name)? */
export function namedNodeLink(cf: ClusterFile, i: number): boolean {
  const r = rawLinks(cf, i);
  const l = r?.links[nodeIndex(r.links)];
  return !!l && ((l.kind ?? 'nic') !== 'nic' || !l.mac);
}

export function linkProblems(cf: ClusterFile, err: Report, warn: Report): void {
  const s = cf.spec;
  const subnetPrefix = parseCidr(s.provisioner.dhcp.subnet)?.prefix;
  // Every MAC a machine owns (its PXE MAC and the MACs in its links): a bond member must be one of its own.
  const macsOf = s.machines.map((m, i) => {
    const own = new Set<string>();
    own.add(normalizeMac(m.mac));
    const r = rawLinks(cf, i);
    if (r && r.path[1] === 'machines') // role defaults are shared: their MACs belong to no one machine
      for (const l of r.links) {
        if (l.mac) own.add(normalizeMac(l.mac));
        for (const mem of l.members ?? []) if (isMac(mem)) own.add(normalizeMac(mem));
      }
    return own;
  });
  // Every address in the cluster file, to refuse one address on two links.
  const addrs = new Map<string, string>();
  addrs.set(s.provisioner.address, 'the provisioner address');
  if (s.provisioner.dhcp.router) addrs.set(s.provisioner.dhcp.router, 'the router');
  if (s.controlPlane?.vip) addrs.set(s.controlPlane.vip, 'the vip');
  s.machines.forEach((m) => addrs.set(m.ip.split('/')[0]!, `the node address of ${m.name}`));
  const reported = new Set<string>();
  const once = (report: Report) => (path: PathSeg[], message: string) => {
    const k = `${path.join('/')}|${message}`;
    if (!reported.has(k)) (reported.add(k), report(path, message));
  };
  const e = once(err);
  const w = once(warn);

  s.machines.forEach((m, i) => {
    if (m.links && m.interface) e(['spec', 'machines', i, 'interface'], 'both "interface" and "links": with links, name the NIC in a link (kind: nic, name: ...)');
    const r = rawLinks(cf, i);
    if (!r) return;
    const at = (j: number, f?: string): PathSeg[] => (f ? [...r.path, j, f] : [...r.path, j]);
    const byName = new Map<string, number>();
    r.links.forEach((l, j) => {
      if (byName.has(l.name)) e(at(j, 'name'), `two links named ${l.name} on ${m.name}`);
      else byName.set(l.name, j);
    });
    const memberOf = new Map<string, string>();
    const ni = nodeIndex(r.links);
    const marked = r.links.filter((l) => l.node).length;
    if (marked > 1) e(at(r.links.findIndex((l, j) => l.node && j !== r.links.findIndex((x) => x.node)), 'node'), `more than one link of ${m.name} has node: true; the node address, the VIP and the pod traffic use exactly one`);
    if (ni < 0) e(r.path, `${m.name} has ${r.links.length} links and none has node: true: say which one carries the node address ${m.ip.split('/')[0]}`);

    r.links.forEach((l, j) => {
      const kind = l.kind ?? 'nic';
      const not = (f: keyof RawLink, what: string) => {
        if (l[f] !== undefined) e(at(j, f), `"${f}" is for ${what}, and ${l.name} is a ${kind}`);
      };
      if (kind !== 'nic') not('mac', 'a nic (kind: nic)');
      if (kind !== 'bond') (not('members', 'a bond'), not('mode', 'a bond'), not('lacpRate', 'a bond'));
      if (kind !== 'vlan') (not('id', 'a vlan'), not('on', 'a vlan'));
      if (kind === 'bond') {
        if (!l.members) e(at(j), `bond ${l.name} needs "members": its NICs, by MAC or name`);
        if (l.lacpRate && (l.mode ?? 'active-backup') !== '802.3ad') e(at(j, 'lacpRate'), `lacpRate is LACP's (mode: 802.3ad); bond ${l.name} is ${l.mode ?? 'active-backup'}`);
        (l.members ?? []).forEach((mem, k) => {
          const key = isMac(mem) ? normalizeMac(mem) : mem;
          const path = [...at(j, 'members'), k];
          const prev = memberOf.get(key);
          if (prev) e(path, `${mem} is already a member of bond ${prev}`);
          memberOf.set(key, l.name);
          if (isMac(mem)) {
            if (parseInt(key.slice(0, 2), 16) & 1) e(path, `${mem} is a multicast address, not a NIC`);
            const other = macsOf.findIndex((set, k2) => k2 !== i && set.has(key));
            if (other >= 0) e(path, `${mem} is a NIC of machine ${s.machines[other]!.name}, not of ${m.name}`);
          } else if (byName.has(mem)) e(path, `${mem} is also a link of its own; a bond member carries no configuration of its own (list it only in members)`);
        });
      }
      if (kind === 'vlan') {
        if (l.id === undefined) e(at(j), `vlan ${l.name} needs "id" (1..4094)`);
        if (l.on === undefined) e(at(j), `vlan ${l.name} needs "on": the nic or bond that carries it`);
        else {
          const parent = r.links[byName.get(l.on) ?? -1];
          if (!parent) e(at(j, 'on'), `${m.name} has no link named ${l.on} (links: ${[...byName.keys()].join(', ')})`);
          else if ((parent.kind ?? 'nic') === 'vlan') e(at(j, 'on'), `${l.on} is a vlan; a VLAN goes on a nic or bond`);
          else if ((l.mtu ?? 1500) > (parent.mtu ?? 1500)) e(at(j, 'mtu'), `MTU ${l.mtu ?? 1500} is larger than ${l.on}'s ${parent.mtu ?? 1500}: a VLAN's frames must fit its parent's`);
          if (l.id !== undefined && r.links.some((o, k) => k < j && (o.kind ?? 'nic') === 'vlan' && o.on === l.on && o.id === l.id)) e(at(j, 'id'), `VLAN ${l.id} is already on ${l.on}`);
        }
      }
      if (l.mac) {
        const mac = normalizeMac(l.mac);
        const other = macsOf.findIndex((set, k2) => k2 !== i && set.has(mac));
        if (other >= 0) e(at(j, 'mac'), `${l.mac} is a NIC of machine ${s.machines[other]!.name}, not of ${m.name}`);
        if (memberOf.has(mac) || (r.links.some((b) => (b.members ?? []).some((x) => isMac(x) && normalizeMac(x) === mac)))) e(at(j, 'mac'), `${l.mac} is a bond member; a bond member carries no configuration of its own`);
      }
      if (l.mtu !== undefined && l.mtu < 1280 && hasIpv6(l)) e(at(j, 'mtu'), `MTU ${l.mtu} is below 1280, the least IPv6 works with, and ${l.name} has IPv6 on`);
      (l.addresses ?? []).forEach((a, k) => {
        const [ip, pfx] = a.split('/') as [string, string];
        const v = isIP(ip);
        if (!v || Number(pfx) > (v === 4 ? 32 : 128)) return e([...at(j, 'addresses'), k], `"${a}" is not an address with its prefix length (10.30.0.11/24, fd00::11/64)`);
        const key = v === 6 ? ip.toLowerCase() : ip;
        const prev = addrs.get(key);
        if (prev) e([...at(j, 'addresses'), k], `${ip} is also ${prev}: two links with one address`);
        else addrs.set(key, `on ${m.name}'s link ${l.name}`);
      });
      // A route's gateway must be reachable on the link: inside one of its networks.
      const nets = (l.addresses ?? []).map((a) => parseCidr(a)).filter((n) => n !== undefined);
      if (j === ni) {
        const [ip, p] = m.ip.split('/');
        const own = parseCidr(`${ip}/${p ?? subnetPrefix ?? 32}`);
        if (own) nets.push(own);
      }
      (l.routes ?? []).forEach((rt, k) => {
        if (parseIp(rt.via) !== undefined && !nets.some((n) => contains(n, rt.via))) w([...at(j, 'routes'), k, 'via'], `gateway ${rt.via} is in none of ${l.name}'s networks (${nets.map((n) => n.cidr).join(', ') || 'none'}): networkd cannot reach it on this link`);
        if (rt.to !== 'default' && !parseCidr(rt.to)) e([...at(j, 'routes'), k, 'to'], `"${rt.to}" is not an IPv4 CIDR`);
      });
    });

    // The VIP moves between control-plane machines on their node links: each must hold its subnet.
    const vip = s.controlPlane?.vip;
    const node = r.links[ni];
    if (vip && node && m.roles.includes('control-plane')) {
      const [ip, p] = m.ip.split('/');
      const own = parseCidr(`${ip}/${p ?? subnetPrefix ?? 32}`);
      if (own && !contains(own, vip)) e(at(ni), `${m.name}'s node link ${node.name} is on ${own.cidr}, which does not hold the vip ${vip}: keepalived would put it where no one can reach it`);
      if ((node.kind ?? 'nic') === 'nic' && node.mac) w(at(ni, 'mac'), `keepalived binds the VIP by interface name: the NIC with ${node.mac} must be named ${node.name} on ${m.name} (or match it by name instead)`);
    }
  });
}

/** The resolved links of machine i (its own, else its role's default); undefined: the simple form. */
export function resolveLinks(cf: ClusterFile, i: number): Link[] | undefined {
  const r = rawLinks(cf, i);
  if (!r) return undefined;
  const ni = nodeIndex(r.links);
  return r.links.map((l, j) => {
    const kind = l.kind ?? 'nic';
    return {
      name: l.name,
      kind,
      mac: l.mac ? normalizeMac(l.mac) : undefined,
      mode: kind === 'bond' ? (l.mode ?? 'active-backup') : undefined,
      lacpRate: l.lacpRate,
      members: l.members?.map((x) => (isMac(x) ? normalizeMac(x) : x)),
      id: l.id,
      on: l.on,
      mtu: l.mtu,
      addresses: l.addresses ?? [],
      routes: l.routes ?? [],
      dns: l.dns ?? [],
      node: j === ni,
      ipv6: hasIpv6(l),
    };
  });
}
