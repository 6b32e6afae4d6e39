// The whole cluster PKI as one table of data, in the spirit of kubeadm's certlist.go:
// which certificates exist, who signs them, what names they carry. Pure: x509.ts turns
// a row into a certificate, store.ts decides when a row needs (re)issuing.
import { controlPlanes, etcdMembers, type Spec } from '../spec/types.ts';
import { nthHost } from '../lib/ipv4.ts';

export type Usage = 'server' | 'client';

export interface CertDef {
  /** path-like id: also the file name under <state>/pki/ (without .crt/.key) */
  id: string;
  /** id of the signing CA; null for a self-signed CA */
  ca: string | null;
  isCA: boolean;
  cn: string;
  o?: string[];
  /** extended key usages; empty for CAs */
  usages: Usage[];
  sans?: { dns: string[]; ip: string[] };
  validityDays: number;
}

export const CA_IDS = ['ca', 'front-proxy-ca', 'etcd/ca'] as const;

/** Order-preserving de-duplication: a name given twice (endpoint = machine name) appears once. */
const uniq = (xs: string[]): string[] => [...new Set(xs)];

function caDef(id: string, cn: string, spec: Spec): CertDef {
  return { id, ca: null, isCA: true, cn, usages: [], validityDays: spec.pki.caValidityDays };
}

function leaf(spec: Spec, id: string, ca: string, cn: string, usages: Usage[], extra: Partial<CertDef> = {}): CertDef {
  return { id, ca, isCA: false, cn, usages, validityDays: spec.pki.certValidityDays, ...extra };
}

/** The names every client may use to reach the API: in-cluster service names, the endpoint, each control-plane machine. */
function apiserverSans(spec: Spec): { dns: string[]; ip: string[] } {
  const cps = controlPlanes(spec);
  const svc = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', `kubernetes.default.svc.${spec.network.dnsDomain}`];
  const dns = [...svc, 'localhost', ...(spec.controlPlane.endpoint ? [spec.controlPlane.endpoint] : []), ...cps.map((m) => m.name)];
  const ip = [nthHost(spec.network.serviceCIDR, 1), ...(spec.controlPlane.vip ? [spec.controlPlane.vip] : []), ...cps.map((m) => m.ip), '127.0.0.1'];
  return { dns: uniq(dns), ip: uniq(ip) };
}

function etcdMemberCerts(spec: Spec): CertDef[] {
  return etcdMembers(spec).flatMap((m) => {
    // Same names for server and peer: members dial each other by IP, local tools by localhost.
    const sans = { dns: uniq([m.name, 'localhost']), ip: uniq([m.ip, '127.0.0.1']) };
    return [
      leaf(spec, `etcd/server/${m.name}`, 'etcd/ca', m.name, ['server', 'client'], { sans }),
      leaf(spec, `etcd/peer/${m.name}`, 'etcd/ca', m.name, ['server', 'client'], { sans }),
    ];
  });
}

export function certList(spec: Spec): CertDef[] {
  return [
    caDef('ca', 'kubernetes', spec),
    caDef('front-proxy-ca', 'front-proxy-ca', spec),
    caDef('etcd/ca', 'etcd-ca', spec),
    leaf(spec, 'apiserver', 'ca', 'kube-apiserver', ['server'], { sans: apiserverSans(spec) }),
    leaf(spec, 'apiserver-kubelet-client', 'ca', 'kube-apiserver-kubelet-client', ['client'], { o: ['system:masters'] }),
    leaf(spec, 'front-proxy-client', 'front-proxy-ca', 'front-proxy-client', ['client']),
    leaf(spec, 'apiserver-etcd-client', 'etcd/ca', 'kube-apiserver-etcd-client', ['client']),
    leaf(spec, 'etcd/healthcheck-client', 'etcd/ca', 'kube-etcd-healthcheck-client', ['client']),
    ...etcdMemberCerts(spec),
    // Client certificates embedded in kubeconfigs.
    leaf(spec, 'admin', 'ca', 'kubernetes-admin', ['client'], { o: ['system:masters'] }),
    leaf(spec, 'controller-manager', 'ca', 'system:kube-controller-manager', ['client']),
    leaf(spec, 'scheduler', 'ca', 'system:kube-scheduler', ['client']),
    leaf(spec, 'kube-proxy', 'ca', 'system:kube-proxy', ['client']),
  ];
}
