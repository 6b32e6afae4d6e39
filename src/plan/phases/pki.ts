// Who receives which certificate and key, as one table (the "which roles receive it"
// column of kubeadm's certlist). Least privilege falls out of it: workers get only the
// cluster CA certificate, etcd members only their own server/peer keys, and the CA and
// service-account keys go only to control-plane machines.
import { hasRole, type Machine, type Role } from '../../spec/types.ts';
import { clusterCert, FILE_CERT_IDS, MEMBER_FILES, type CertId, type FileCertId } from '../../secrets/certlist.ts';
import type { File, Phase, PhaseContext } from '../types.ts';
import { PKI } from '../paths.ts';

interface Row {
  /** certificate id in the secrets (per-member ids take the machine) */
  id: (m: Machine) => CertId;
  /** its file under PKI, without .crt/.key: from the certificate list, the one place names live */
  file: string;
  /** roles whose machines receive the certificate */
  cert: Role[] | 'all';
  /** roles whose machines also receive the private key */
  key: Role[];
}

const ALL: Role[] = ['control-plane', 'etcd', 'worker'];
const cluster = (id: FileCertId, cert: Row['cert'], key: Role[]): Row => ({ id: () => id, file: clusterCert(id).file, cert, key });
const TABLE: Row[] = [
  cluster('ca', 'all', ['control-plane']), // controller-manager signs kubelet CSRs
  cluster('front-proxy-ca', ['control-plane'], []),
  cluster('etcd/ca', ['control-plane', 'etcd'], []),
  cluster('apiserver', ['control-plane'], ['control-plane']),
  cluster('apiserver-kubelet-client', ['control-plane'], ['control-plane']),
  cluster('front-proxy-client', ['control-plane'], ['control-plane']),
  cluster('apiserver-etcd-client', ['control-plane'], ['control-plane']),
  { id: (m) => `etcd/server/${m.name}`, file: MEMBER_FILES.server, cert: ['etcd'], key: ['etcd'] },
  { id: (m) => `etcd/peer/${m.name}`, file: MEMBER_FILES.peer, cert: ['etcd'], key: ['etcd'] },
];

const receives = (m: Machine, roles: Role[] | 'all') => (roles === 'all' ? ALL : roles).some((r) => hasRole(m, r));

function machineFiles(ctx: PhaseContext, m: Machine): File[] {
  const files: File[] = [];
  for (const row of TABLE) {
    if (!receives(m, row.cert)) continue;
    const pair = ctx.secrets.certs[row.id(m)];
    if (!pair) throw new Error(`secrets have no certificate ${row.id(m)} (state directory out of date?)`);
    const path = `${PKI}/${row.file}`;
    files.push({ path: `${path}.crt`, mode: 0o644, contents: pair.cert });
    if (receives(m, row.key)) files.push({ path: `${path}.key`, mode: 0o600, contents: pair.key, secret: true });
  }
  if (hasRole(m, 'control-plane')) {
    files.push({ path: `${PKI}/sa.key`, mode: 0o600, contents: ctx.secrets.serviceAccount.key, secret: true });
    files.push({ path: `${PKI}/sa.pub`, mode: 0o644, contents: ctx.secrets.serviceAccount.pub });
  }
  return files;
}

function clusterFiles(ctx: PhaseContext): File[] {
  const files: File[] = [];
  // the operator's copy in DIR/cluster/pki: every certificate with a kubeadm file, by its id
  for (const id of FILE_CERT_IDS) {
    const pair = ctx.secrets.certs[id];
    files.push({ path: `pki/${id}.crt`, mode: 0o644, contents: pair.cert });
    files.push({ path: `pki/${id}.key`, mode: 0o600, contents: pair.key, secret: true });
  }
  files.push({ path: 'pki/sa.key', mode: 0o600, contents: ctx.secrets.serviceAccount.key, secret: true });
  files.push({ path: 'pki/sa.pub', mode: 0o644, contents: ctx.secrets.serviceAccount.pub });
  return files;
}

export const pkiPhase: Phase = { name: 'pki', machine: machineFiles, cluster: clusterFiles };
