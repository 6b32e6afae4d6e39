// Rules a schema cannot express: uniqueness, address plans that must fit together,
// and the shape of a sound cluster (etcd quorum, a VIP for HA). Runs on a file that
// already has the right shape; returns every problem, never stops at the first.
import { broadcast, contains, overlaps, parseCidr, parseIp, type Ipv4Net } from '../lib/ipv4.ts';
import { MAC_RE, normalizeMac } from '../lib/mac.ts';
import { isSupported, knownRelease, OLDEST_MINOR, NEWEST_MINOR } from '../catalog/versions.ts';
import type { ClusterFile } from './schema.ts';
import { ROLES } from '../catalog/cluster.ts';
import type { PathSeg, Problem } from './problems.ts';
import { DEFAULTS } from './resolve.ts';
import { POD_SLICE_PREFIX, sliceCount } from '../lib/pod-slices.ts';
import { linkProblems, namedNodeLink } from './links.ts'; // issue 20
import { additionProblems } from './additions.ts'; // issue 20

const DNS_NAME_RE = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

/**
 * The kubelet refuses to start with a --node-labels key in the kubernetes.io or k8s.io
 * namespaces unless it is one of these (NodeRestriction; since Kubernetes 1.16).
 */
const KUBELET_ALLOWED_LABELS = new Set([
  'kubernetes.io/hostname', 'kubernetes.io/arch', 'kubernetes.io/os',
  'beta.kubernetes.io/arch', 'beta.kubernetes.io/os', 'beta.kubernetes.io/instance-type', 'node.kubernetes.io/instance-type',
  'failure-domain.beta.kubernetes.io/region', 'failure-domain.beta.kubernetes.io/zone',
  'topology.kubernetes.io/region', 'topology.kubernetes.io/zone',
]);
const KUBELET_ALLOWED_NAMESPACES = ['kubelet.kubernetes.io', 'node.kubernetes.io'];

function kubeletRefusesLabel(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash < 0) return false;
  const ns = key.slice(0, slash);
  const restricted = ['kubernetes.io', 'k8s.io'].some((d) => ns === d || ns.endsWith(`.${d}`));
  if (!restricted || KUBELET_ALLOWED_LABELS.has(key)) return false;
  return !KUBELET_ALLOWED_NAMESPACES.some((d) => ns === d || ns.endsWith(`.${d}`));
}

export function semanticProblems(cf: ClusterFile): Problem[] {
  const out: Problem[] = [];
  const err = (path: PathSeg[], message: string, also?: PathSeg[]) => out.push({ severity: 'error', path, message, ...(also ? { also } : {}) });
  const warn = (path: PathSeg[], message: string) => out.push({ severity: 'warning', path, message });
  const s = cf.spec;

  const version = s.kubernetesVersion ?? DEFAULTS.kubernetesVersion;
  if (!isSupported(version)) {
    err(['spec', 'kubernetesVersion'], `Kubernetes ${version} is not supported (supported: v1.${OLDEST_MINOR}.x to v1.${NEWEST_MINOR}.x)`);
  } else if (knownRelease(version) !== version) {
    // The profile is per minor line; say which release it was checked against rather than
    // pretend to know a patch release (v1.34.99 does not exist; bundle create would fail).
    warn(['spec', 'kubernetesVersion'], `Slipway knows ${knownRelease(version)} of this minor line, not ${version}: files are rendered as for ${knownRelease(version)} (flags and config APIs are per minor), and the binaries must be ${version}'s; use ${knownRelease(version)} unless you mean ${version}`);
  }

  // Networks: each must parse, and none may overlap another.
  const nets: { name: string; path: PathSeg[]; net: Ipv4Net }[] = [];
  const net = (path: PathSeg[], name: string, text: string): Ipv4Net | undefined => {
    const n = parseCidr(text);
    if (!n) err(path, `"${text}" is not an IPv4 CIDR`);
    else {
      if (n.cidr !== text) warn(path, `host bits set; the network is ${n.cidr}`);
      nets.push({ name, path, net: n });
    }
    return n;
  };
  const subnet = net(['spec', 'provisioner', 'dhcp', 'subnet'], 'machine subnet', s.provisioner.dhcp.subnet);
  const svc = net(['spec', 'network', 'serviceCIDR'], 'service network', s.network?.serviceCIDR ?? DEFAULTS.serviceCIDR);
  const pods = net(['spec', 'network', 'podCIDR'], 'pod network', s.network?.podCIDR ?? DEFAULTS.podCIDR);
  if (svc && svc.prefix < 12) err(['spec', 'network', 'serviceCIDR'], 'the service network may be at most a /12 (kube-apiserver refuses larger)');
  for (let i = 0; i < nets.length; i++)
    for (let j = i + 1; j < nets.length; j++)
      if (overlaps(nets[i]!.net, nets[j]!.net))
        err(nets[j]!.path, `${nets[j]!.name} ${nets[j]!.net.cidr} overlaps the ${nets[i]!.name} ${nets[i]!.net.cidr}`);

  // An address inside the subnet must also be usable by a host: not the subnet's network
  // or broadcast address (on /31 and /32 there are none).
  const inSubnet = (path: PathSeg[], what: string, ip: string) => {
    if (!subnet) return;
    if (!contains(subnet, ip)) err(path, `${what} ${ip} is outside the DHCP subnet ${subnet.cidr}`);
    else if (subnet.prefix <= 30 && parseIp(ip) === subnet.base) err(path, `${what} ${ip} is the network address of the DHCP subnet ${subnet.cidr}, not a host address`);
    else if (subnet.prefix <= 30 && ip === broadcast(subnet)) err(path, `${what} ${ip} is the broadcast address of the DHCP subnet ${subnet.cidr}, not a host address`);
  };
  const prov = s.provisioner;
  inSubnet(['spec', 'provisioner', 'address'], 'provisioner address', prov.address);
  if (prov.dhcp.router) inSubnet(['spec', 'provisioner', 'dhcp', 'router'], 'router', prov.dhcp.router);
  if (prov.dhcp.pool) {
    const { start, end } = prov.dhcp.pool;
    inSubnet(['spec', 'provisioner', 'dhcp', 'pool', 'start'], 'pool start', start);
    inSubnet(['spec', 'provisioner', 'dhcp', 'pool', 'end'], 'pool end', end);
    if (parseIp(start)! > parseIp(end)!) err(['spec', 'provisioner', 'dhcp', 'pool'], `pool start ${start} is after its end ${end}`);
    const inPool = (ip: string) => parseIp(ip)! >= parseIp(start)! && parseIp(ip)! <= parseIp(end)!;
    if (inPool(prov.address)) err(['spec', 'provisioner', 'dhcp', 'pool'], `the pool ${start}-${end} holds the provisioner address ${prov.address}`);
    if (prov.dhcp.router && inPool(prov.dhcp.router)) err(['spec', 'provisioner', 'dhcp', 'pool'], `the pool ${start}-${end} holds the router ${prov.dhcp.router}`);
  }
  if (!prov.dhcp.router)
    warn(['spec', 'provisioner', 'dhcp'], 'no router: installed machines get no default route, and kubelet and kube-proxy want one (set "router")');
  if (prov.dhcp.mode === 'proxy' && prov.dhcp.pool) warn(['spec', 'provisioner', 'dhcp', 'pool'], 'ignored in proxy mode: ProxyDHCP never hands out addresses');

  // Machines: unique names, MACs and IPs; addresses inside the subnet.
  const seen = { name: new Map<string, number>(), mac: new Map<string, number>(), ip: new Map<string, number>() };
  const taken = new Map<string, string>([[prov.address, 'the provisioner address']]);
  if (prov.dhcp.router && prov.dhcp.router !== prov.address) taken.set(prov.dhcp.router, 'the router (spec.provisioner.dhcp.router)');
  const pool = prov.dhcp.pool ? { start: parseIp(prov.dhcp.pool.start)!, end: parseIp(prov.dhcp.pool.end)! } : undefined;
  s.machines.forEach((m, i) => {
    const at = (f: string): PathSeg[] => ['spec', 'machines', i, f];
    const dup = (kind: 'name' | 'mac' | 'ip', key: string) => {
      const first = seen[kind].get(key);
      if (first !== undefined) err(at(kind), `duplicate ${kind} ${key} (also spec.machines[${first}].${kind}, ${s.machines[first]!.name})`);
      else seen[kind].set(key, i);
    };
    dup('name', m.name);
    if (!MAC_RE.test(m.mac)) err(at('mac'), `${JSON.stringify(m.mac)} is not a MAC address (six hex pairs: 52:54:00:20:30:11)`);
    else {
      const mac = normalizeMac(m.mac);
      if (parseInt(mac.slice(0, 2), 16) & 1) err(at('mac'), `${m.mac} is a multicast address, not a NIC`);
      dup('mac', mac);
    }
    const [addr, prefix] = m.ip.split('/');
    const ip = parseIp(addr!);
    if (ip === undefined || (prefix !== undefined && Number(prefix) > 32)) {
      err(at('ip'), `"${m.ip}" is not an IPv4 address`);
    } else {
      dup('ip', addr!);
      inSubnet(at('ip'), 'machine address', addr!);
      if (subnet && prefix !== undefined && Number(prefix) !== subnet.prefix)
        warn(at('ip'), `prefix /${prefix} differs from the DHCP subnet's /${subnet.prefix}`);
      const other = taken.get(addr!);
      if (other) err(at('ip'), `${addr} is ${other}`);
      if (pool && ip >= pool.start && ip <= pool.end) err(at('ip'), `${addr} lies inside the DHCP pool ${prov.dhcp.pool!.start}-${prov.dhcp.pool!.end}`);
    }
    m.roles.forEach((r, j) => {
      if (!(ROLES as readonly string[]).includes(r)) err(['spec', 'machines', i, 'roles', j], `unknown role ${JSON.stringify(r)} (roles: ${ROLES.join(', ')})`);
    });
    if (new Set(m.roles).size !== m.roles.length) warn(at('roles'), 'a role is listed twice');
    for (const key of Object.keys(m.labels ?? {}))
      if (kubeletRefusesLabel(key))
        err(['spec', 'machines', i, 'labels', key], `the kubelet refuses node labels in the kubernetes.io and k8s.io namespaces (except ${KUBELET_ALLOWED_NAMESPACES.map((n) => `${n}/`).join(', ')} and the well-known topology, os and arch labels): use your own prefix, e.g. example.com/${key.slice(key.indexOf('/') + 1)}`);
  });

  // cni: bridge: one fixed /24 of podCIDR per machine (plan/pod-slices.ts), reached through
  // the other machine's address, which must therefore be on-link from every machine.
  if ((s.network?.cni ?? DEFAULTS.cni) === 'bridge') {
    if (pods && sliceCount(pods) < s.machines.length)
      err(['spec', 'network', 'podCIDR'], `podCIDR ${pods.cidr} has ${sliceCount(pods)} /${POD_SLICE_PREFIX} slices for ${s.machines.length} machines (cni: bridge gives every machine one /${POD_SLICE_PREFIX}): use a larger podCIDR`);
    const addrs = s.machines.map((m) => m.ip.split('/')[0]!);
    s.machines.forEach((m, i) => {
      const prefix = m.ip.split('/')[1] ?? (subnet ? String(subnet.prefix) : undefined);
      const own = prefix === undefined ? undefined : parseCidr(`${addrs[i]}/${prefix}`);
      if (!own) return; // a bad address is reported above
      const j = addrs.findIndex((a, k) => k !== i && parseIp(a) !== undefined && !contains(own, a));
      if (j >= 0) err(['spec', 'machines', i, 'ip'], `cni: bridge routes pods through the other machines' addresses, but ${s.machines[j]!.name} (${addrs[j]}) is outside this machine's network ${own.cidr}`);
    });
  }

  // Cluster shape: etcd quorum, control plane, VIP.
  const cps = s.machines.filter((m) => m.roles.includes('control-plane'));
  const etcd = s.machines.filter((m) => m.roles.includes('etcd'));
  if (cps.length === 0) err(['spec', 'machines'], 'no machine has the control-plane role');
  if (etcd.length === 0) err(['spec', 'machines'], 'no machine has the etcd role: the cluster needs at least one etcd member');
  else if (etcd.length % 2 === 0)
    warn(['spec', 'machines'], `${etcd.length} etcd members tolerate no more failures than ${etcd.length - 1}: use an odd number`);
  const cp = s.controlPlane;
  if (cps.length > 1 && !cp?.vip) err(['spec', 'controlPlane'], `${cps.length} control-plane machines need a vip for clients to reach them all`);
  if (cp?.vip) {
    inSubnet(['spec', 'controlPlane', 'vip'], 'vip', cp.vip);
    const owner = s.machines.find((m) => m.ip.split('/')[0] === cp.vip);
    if (owner) err(['spec', 'controlPlane', 'vip'], `vip ${cp.vip} is also the address of machine ${owner.name}`);
    if (cp.vip === prov.address) err(['spec', 'controlPlane', 'vip'], `vip ${cp.vip} is also the provisioner address`);
    if (cp.vip === prov.dhcp.router) err(['spec', 'controlPlane', 'vip'], `vip ${cp.vip} is also the router (spec.provisioner.dhcp.router)`);
    if (pool && parseIp(cp.vip)! >= pool.start && parseIp(cp.vip)! <= pool.end) err(['spec', 'controlPlane', 'vip'], `vip ${cp.vip} lies inside the DHCP pool`);
  }
  if (cp?.vip)
    s.machines.forEach((m, i) => {
      if (m.roles.includes('control-plane') && !m.interface && !namedNodeLink(cf, i))
        warn(['spec', 'machines', i], `keepalived must name the NIC that carries the vip: set "interface" (eth0 is assumed)`);
    });
  const pki = s.pki ?? {};
  const caDays = pki.caValidityDays ?? DEFAULTS.caValidityDays;
  if ((pki.certValidityDays ?? DEFAULTS.certValidityDays) > caDays)
    err(['spec', 'pki', pki.certValidityDays === undefined ? 'caValidityDays' : 'certValidityDays'], `certValidityDays (${pki.certValidityDays ?? DEFAULTS.certValidityDays}) is longer than caValidityDays (${caDays}): a certificate cannot outlive the CA that signs it`);
  if (cp?.endpoint && !DNS_NAME_RE.test(cp.endpoint)) err(['spec', 'controlPlane', 'endpoint'], `${JSON.stringify(cp.endpoint)} is not a DNS name (letters, digits, "-" and ".", e.g. k8s-api.lab.local)`);
  if (s.network?.dnsDomain && !DNS_NAME_RE.test(s.network.dnsDomain)) err(['spec', 'network', 'dnsDomain'], `${JSON.stringify(s.network.dnsDomain)} is not a DNS name (letters, digits, "-" and ".", e.g. cluster.local)`);
  s.ssh?.authorizedKeys?.forEach((k, i) => {
    if (!/^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+/.test(k.trim()))
      warn(['spec', 'ssh', 'authorizedKeys', i], 'does not look like an OpenSSH public key ("ssh-ed25519 AAAA... comment")');
  });
  // issue 20: links, proxy and the operator's additions
  linkProblems(cf, err, warn);
  additionProblems(cf, err, warn);
  return out;
}
