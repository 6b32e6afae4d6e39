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
}

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
  pki: { keyAlgorithm: KeyAlgorithm; caValidityDays: number; certValidityDays: number };
  ssh: { authorizedKeys: string[] };
  machines: Machine[];
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
