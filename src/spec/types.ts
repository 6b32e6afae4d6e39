// The cluster as the rest of Slipway sees it: the cluster file with every default
// filled in and addresses already parsed. Everything downstream of spec/ reads this,
// never the raw YAML.
import type { Ipv4Net } from '../lib/ipv4.ts';
import type { Cni, Role } from '../catalog/cluster.ts';
import type { OsName } from '../catalog/os.ts';

export type { Cni, Role };

export type DhcpMode = 'full' | 'proxy' | 'off';
export type KeyAlgorithm = 'ecdsa-p256' | 'rsa-2048';

export interface Machine {
  name: string;
  /** lower case, colon separated */
  mac: string;
  /** address without prefix */
  ip: string;
  prefix: number;
  roles: Role[];
  /** NIC name used by the static network config; undefined means "match by MAC" */
  interface?: string;
  /** the install disk as the file names it; undefined: the installer takes the only non-removable disk */
  disk?: string;
  labels: Record<string, string>;
  /** the machine's links (its own or its role's default); undefined: the simple form, one link from `interface`/`mac` */
  links?: Link[];
  /** issue 18: the machine's BMC (power/), when the file gives one */
  bmc?: BmcSpec;
}

// --- BMC power control (issue 18; docs/power.md) ---
export interface BmcSpec {
  address: string;
  port: number;
  username: string;
  /** where the password is read when it is needed (an absolute path, or a variable): never the password */
  password: { file: string } | { env: string };
  protocol: 'ipmi';
  cipher: 3 | 17;
}

// --- Rack networks, proxy and the operator's additions (issue 20) ---
export type BondMode = 'active-backup' | '802.3ad' | 'balance-xor';
export interface Link {
  name: string;
  kind: 'nic' | 'bond' | 'vlan';
  /** nic: matched by this MAC (normalized) instead of by name */
  mac?: string;
  /** bond */
  mode?: BondMode;
  lacpRate?: 'slow' | 'fast';
  /** bond: member NICs, each a normalized MAC or a kernel name */
  members?: string[];
  /** vlan */
  id?: number;
  on?: string;
  mtu?: number;
  /** static addresses besides the node address, CIDR */
  addresses: string[];
  routes: { to: string; via: string }[];
  dns: string[];
  /** carries the node address, the VIP and the pod traffic */
  node: boolean;
  ipv6: boolean;
}
/** What an addition applies to: no roles and no machines means every machine. */
export interface Selector {
  roles?: Role[];
  machines?: string[];
}
/** Where an addition was written in the cluster file, e.g. "spec.files[2]" (plan names it). */
export interface Origin {
  origin: string;
}
export interface FileAddition extends Selector, Origin {
  path: string;
  mode: number;
  /** USER:GROUP */
  owner: string;
  contents: string;
}
export interface UnitAddition extends Selector, Origin {
  name: string;
  enabled: boolean;
  contents: string;
}
export interface SysctlAddition extends Selector, Origin {
  name: string;
  value: string;
}
/** Kernel arguments for the installed system's boot loader (the installer appends them). */
export interface KernelArgsAddition extends Selector, Origin {
  args: string[];
}
export interface Additions {
  files: FileAddition[];
  units: UnitAddition[];
  sysctls: SysctlAddition[];
  kernelArgs: KernelArgsAddition[];
}
export interface Proxy {
  http?: string;
  https?: string;
  /** the file's list; the cluster's own ranges are added where it is rendered */
  noProxy: string[];
}
export const applies = (sel: Selector, m: Machine): boolean =>
  (!sel.roles || sel.roles.some((r) => m.roles.includes(r))) && (!sel.machines || sel.machines.includes(m.name));
/** The link that carries the node address: undefined in the simple form. */
export const nodeLink = (m: Machine): Link | undefined => m.links?.find((l) => l.node);
// --- end of issue 20's block ---

export interface Spec {
  name: string;
  kubernetesVersion: string;
  controlPlane: {
    endpoint?: string;
    vip?: string;
    port: number;
    vrid: number;
  };
  network: {
    serviceCIDR: Ipv4Net;
    podCIDR: Ipv4Net;
    dnsDomain: string;
    cni: Cni;
  };
  provisioner: {
    address: string;
    httpPort: number;
    dhcp: {
      mode: DhcpMode;
      subnet: Ipv4Net;
      router?: string;
      dns: string[];
      interface: string;
      pool?: { start: string; end: string };
    };
  };
  /** the OS every machine is installed with */
  os: OsName;
  /** NTP servers the machines sync to: the file's, else the provisioner */
  ntp: { servers: string[] };
  /** bootstrapTokenValidityHours: the TTL of a provisioning window's bootstrap token (apply, remove, a reprovision) */
  pki: { keyAlgorithm: KeyAlgorithm; caValidityDays: number; certValidityDays: number; bootstrapTokenValidityHours: number };
  ssh: { authorizedKeys: string[] };
  machines: Machine[];
  /** issue 20: a proxy for what goes outside; undefined: none */
  proxy?: Proxy;
  /** issue 20: the operator's own files, units and sysctls; undefined: none */
  additions?: Additions;
}

export const hasRole = (m: Machine, r: Role): boolean => m.roles.includes(r);
export const controlPlanes = (s: Spec): Machine[] => s.machines.filter((m) => hasRole(m, 'control-plane'));
export const etcdMembers = (s: Spec): Machine[] => s.machines.filter((m) => hasRole(m, 'etcd'));

/** Address clients use for the API: the VIP, else the only control-plane machine. */
export function apiHost(s: Spec): string {
  return s.controlPlane.vip ?? controlPlanes(s)[0]?.ip ?? s.machines[0]!.ip;
}
/** URL machines use for the API: the endpoint name when given (each machine's /etc/hosts maps it), else the VIP/IP. */
export function apiServerURL(s: Spec): string {
  return `https://${s.controlPlane.endpoint ?? apiHost(s)}:${s.controlPlane.port}`;
}

/** Where `slipway serve` answers: boot scripts, machine files, assets, the API. */
export const provisionerURL = (s: Spec): string => `http://${s.provisioner.address}:${s.provisioner.httpPort}`;
