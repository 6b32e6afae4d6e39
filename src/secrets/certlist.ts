// The whole cluster PKI as one table of data, in the spirit of kubeadm's certlist.go:
// which certificates exist, who signs them, what names they carry. Pure: x509.ts turns
// a row into a certificate, store.ts decides when a row needs (re)issuing.
import { controlPlanes, etcdMembers, type Spec } from '../spec/types.ts';
import { nthHost } from '../lib/ipv4.ts';

export type Usage = 'server' | 'client';

/**
 * The cluster-wide certificates, one row each as kubeadm's certlist.go keeps them: the
 * id (its file under <state>/pki/ and in the operator's copy), the CA that signs it, the
 * subject, the extended usages, and `file`, its name under /etc/kubernetes/pki on a
 * machine (plan/phases/pki.ts decides which machines receive it). The ids are a type, so
 * a certificate asked for by a name the table lacks does not compile.
 */
const CLUSTER_CERTS = [
  { id: 'ca', ca: null, cn: 'kubernetes', usages: [], file: 'ca' },
  { id: 'front-proxy-ca', ca: null, cn: 'front-proxy-ca', usages: [], file: 'front-proxy-ca' },
  { id: 'etcd/ca', ca: null, cn: 'etcd-ca', usages: [], file: 'etcd/ca' },
  { id: 'apiserver', ca: 'ca', cn: 'kube-apiserver', usages: ['server'], file: 'apiserver', sans: 'apiserver' },
  { id: 'apiserver-kubelet-client', ca: 'ca', cn: 'kube-apiserver-kubelet-client', usages: ['client'], o: ['system:masters'], file: 'apiserver-kubelet-client' },
  { id: 'front-proxy-client', ca: 'front-proxy-ca', cn: 'front-proxy-client', usages: ['client'], file: 'front-proxy-client' },
  { id: 'apiserver-etcd-client', ca: 'etcd/ca', cn: 'kube-apiserver-etcd-client', usages: ['client'], file: 'apiserver-etcd-client' },
  { id: 'etcd/healthcheck-client', ca: 'etcd/ca', cn: 'kube-etcd-healthcheck-client', usages: ['client'], file: 'etcd/healthcheck-client' },
  // Client certificates embedded in kubeconfigs (no file of their own on a machine).
  { id: 'admin', ca: 'ca', cn: 'kubernetes-admin', usages: ['client'], o: ['system:masters'] },
  { id: 'controller-manager', ca: 'ca', cn: 'system:kube-controller-manager', usages: ['client'] },
  { id: 'scheduler', ca: 'ca', cn: 'system:kube-scheduler', usages: ['client'] },
  { id: 'kube-proxy', ca: 'ca', cn: 'system:kube-proxy', usages: ['client'] },
] as const satisfies readonly ClusterRow[];

interface ClusterRow {
  id: string;
  ca: string | null;
  cn: string;
  o?: readonly string[];
  usages: readonly Usage[];
  /** under /etc/kubernetes/pki on a machine, without .crt/.key */
  file?: string;
  /** the names it carries, computed from the spec */
  sans?: 'apiserver';
}

export type ClusterCertId = (typeof CLUSTER_CERTS)[number]['id'];
/** The cluster certificates that have a file of their own on machines. */
export type FileCertId = Extract<(typeof CLUSTER_CERTS)[number], { file: string }>['id'];
export type CaId = Extract<(typeof CLUSTER_CERTS)[number], { ca: null }>['id'];
/** Each etcd member's own pair, per machine name. */
export type MemberCertId = `etcd/server/${string}` | `etcd/peer/${string}`;
export type CertId = ClusterCertId | MemberCertId;

export const CA_IDS: readonly CaId[] = CLUSTER_CERTS.flatMap((r) => (r.ca === null ? [r.id] : []));

/** Every cluster certificate that has a file of its own (kubeadm's pki/ layout), in table order. */
export const FILE_CERT_IDS: readonly FileCertId[] = CLUSTER_CERTS.flatMap((r) => ('file' in r ? [r.id] : []));

/** A cluster row by id, typed: its file name and CA come from the table, not from a second list. */
export const clusterCert = <I extends ClusterCertId>(id: I): Extract<(typeof CLUSTER_CERTS)[number], { id: I }> =>
  CLUSTER_CERTS.find((r) => r.id === id) as Extract<(typeof CLUSTER_CERTS)[number], { id: I }>;

/** Member certificates' file names under /etc/kubernetes/pki on their machine. */
export const MEMBER_FILES = { server: 'etcd/server', peer: 'etcd/peer' } as const;

export interface CertDef {
  /** path-like id: also the file name under <state>/pki/ (without .crt/.key) */
  id: CertId;
  /** id of the signing CA; null for a self-signed CA */
  ca: CaId | null;
  isCA: boolean;
  cn: string;
  o?: string[];
  /** extended key usages; empty for CAs */
  usages: Usage[];
  sans?: { dns: string[]; ip: string[] };
  validityDays: number;
}

/** Order-preserving de-duplication: a name given twice (endpoint = machine name) appears once. */
const uniq = (xs: string[]): string[] => [...new Set(xs)];

/** The names every client may use to reach the API: in-cluster service names, the endpoint, each control-plane machine. */
function apiserverSans(spec: Spec): { dns: string[]; ip: string[] } {
  const cps = controlPlanes(spec);
  const svc = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', `kubernetes.default.svc.${spec.network.dnsDomain}`];
  const dns = [...svc, 'localhost', ...(spec.controlPlane.endpoint ? [spec.controlPlane.endpoint] : []), ...cps.map((m) => m.name)];
  const ip = [nthHost(spec.network.serviceCIDR, 1), ...(spec.controlPlane.vip ? [spec.controlPlane.vip] : []), ...cps.map((m) => m.ip), '127.0.0.1'];
  return { dns: uniq(dns), ip: uniq(ip) };
}

function clusterDef(spec: Spec, r: ClusterRow & { id: ClusterCertId }): CertDef {
  const isCA = r.ca === null;
  return {
    id: r.id,
    ca: r.ca as CaId | null,
    isCA,
    cn: r.cn,
    ...(r.o ? { o: [...r.o] } : {}),
    usages: [...r.usages],
    ...(r.sans === 'apiserver' ? { sans: apiserverSans(spec) } : {}),
    validityDays: isCA ? spec.pki.caValidityDays : spec.pki.certValidityDays,
  };
}

function etcdMemberCerts(spec: Spec): CertDef[] {
  return etcdMembers(spec).flatMap((m) => {
    // Same names for server and peer: members dial each other by IP, local tools by localhost.
    const sans = { dns: uniq([m.name, 'localhost']), ip: uniq([m.ip, '127.0.0.1']) };
    const member = (id: MemberCertId): CertDef => ({ id, ca: 'etcd/ca', isCA: false, cn: m.name, usages: ['server', 'client'], sans, validityDays: spec.pki.certValidityDays });
    return [member(`etcd/server/${m.name}`), member(`etcd/peer/${m.name}`)];
  });
}

/** Every certificate of the cluster: the table's rows in order, the etcd members' after the healthcheck client. */
export function certList(spec: Spec): CertDef[] {
  const rows = CLUSTER_CERTS.map((r) => clusterDef(spec, r));
  const at = rows.findIndex((d) => d.id === 'etcd/healthcheck-client') + 1;
  return [...rows.slice(0, at), ...etcdMemberCerts(spec), ...rows.slice(at)];
}
