// Fill in every default of a valid cluster file, producing the Spec the planner reads.
import { parseCidr } from '../lib/ipv4.ts';
import { normalizeMac } from '../lib/mac.ts';
import { NEWEST_VERSION } from '../catalog/versions.ts';
import { DEFAULT_OS } from '../catalog/os.ts';
import type { ClusterFile } from './schema.ts';
import type { Role, Spec } from './types.ts';
import { resolveLinks } from './links.ts';
import { resolveBmc } from './bmc.ts'; // issue 18
import { resolveAdditions, resolveProxy } from './additions.ts';

export const DEFAULTS = {
  kubernetesVersion: NEWEST_VERSION,
  port: 6443,
  vrid: 51,
  serviceCIDR: '10.96.0.0/12',
  podCIDR: '10.244.0.0/16',
  dnsDomain: 'cluster.local',
  httpPort: 8080,
  dhcpMode: 'full',
  dhcpInterface: 'eth0',
  keyAlgorithm: 'ecdsa-p256',
  caValidityDays: 3650,
  certValidityDays: 365,
  /** kubeadm's token TTL */
  bootstrapTokenValidityHours: 24,
  cni: 'flannel',
} as const;

export function resolve(cf: ClusterFile, sources: Map<string, string> = new Map(), baseDir = '.'): Spec {
  const s = cf.spec;
  const subnet = parseCidr(s.provisioner.dhcp.subnet)!;
  return {
    name: cf.metadata.name,
    kubernetesVersion: s.kubernetesVersion ?? DEFAULTS.kubernetesVersion,
    controlPlane: {
      endpoint: s.controlPlane?.endpoint,
      vip: s.controlPlane?.vip,
      port: s.controlPlane?.port ?? DEFAULTS.port,
      vrid: s.controlPlane?.vrid ?? DEFAULTS.vrid,
    },
    network: {
      serviceCIDR: parseCidr(s.network?.serviceCIDR ?? DEFAULTS.serviceCIDR)!,
      podCIDR: parseCidr(s.network?.podCIDR ?? DEFAULTS.podCIDR)!,
      dnsDomain: s.network?.dnsDomain ?? DEFAULTS.dnsDomain,
      cni: s.network?.cni ?? DEFAULTS.cni,
    },
    provisioner: {
      address: s.provisioner.address,
      httpPort: s.provisioner.httpPort ?? DEFAULTS.httpPort,
      dhcp: {
        mode: s.provisioner.dhcp.mode ?? DEFAULTS.dhcpMode,
        subnet,
        router: s.provisioner.dhcp.router,
        dns: s.provisioner.dhcp.dns ?? [],
        interface: s.provisioner.dhcp.interface ?? DEFAULTS.dhcpInterface,
        pool: s.provisioner.dhcp.pool,
      },
    },
    os: s.os ?? DEFAULT_OS,
    ntp: { servers: s.ntp?.servers ?? [s.provisioner.address] },
    pki: {
      keyAlgorithm: s.pki?.keyAlgorithm ?? DEFAULTS.keyAlgorithm,
      caValidityDays: s.pki?.caValidityDays ?? DEFAULTS.caValidityDays,
      certValidityDays: s.pki?.certValidityDays ?? DEFAULTS.certValidityDays,
      bootstrapTokenValidityHours: s.pki?.bootstrapTokenValidityHours ?? DEFAULTS.bootstrapTokenValidityHours,
    },
    ssh: { authorizedKeys: s.ssh?.authorizedKeys ?? [] },
    // issue 20: proxy, additions and per-machine links (undefined when the file has none)
    ...(s.proxy ? { proxy: resolveProxy(cf) } : {}),
    ...(s.files || s.units || s.sysctls || s.kernelArgs ? { additions: resolveAdditions(cf, sources) } : {}),
    machines: s.machines.map((m, i) => {
      const [ip, prefix] = m.ip.split('/');
      return {
        name: m.name,
        mac: normalizeMac(m.mac),
        ip: ip!,
        prefix: prefix === undefined ? subnet.prefix : Number(prefix),
        roles: [...new Set(m.roles)] as Role[],
        interface: m.interface,
        disk: m.disk,
        labels: m.labels ?? {},
        ...(resolveLinks(cf, i) ? { links: resolveLinks(cf, i) } : {}),
        ...(m.bmc ? { bmc: resolveBmc(cf, i, baseDir) } : {}), // issue 18
      };
    }),
  };
}
