// The cluster's secrets as the planner sees them: PEM strings and tokens, already
// loaded from (or created in) the state directory by secrets/store.ts.

import type { ClusterCertId, MemberCertId } from './certlist.ts';

export interface CertKey {
  /** PEM certificate */
  cert: string;
  /** PEM private key (PKCS#8) */
  key: string;
}

/** Every cluster-wide certificate, and each etcd member's pair by its id (certlist.ts). */
export type Certs = Record<ClusterCertId, CertKey> & { [id: MemberCertId]: CertKey | undefined };

export interface Secrets {
  /** by certificate id from certlist.ts: 'ca', 'apiserver', 'etcd/ca', 'etcd/server/cp1', ... */
  certs: Certs;
  /** service-account signing key pair (kubeadm sa.key / sa.pub), PEM */
  serviceAccount: { key: string; pub: string };
  /** kubelet TLS bootstrap token: id [a-z0-9]{6}, secret [a-z0-9]{16} */
  bootstrapToken: { id: string; secret: string };
  /** 32 random bytes, base64: Secret encryption at rest (aescbc) */
  encryptionKey: string;
  /** per-machine token a machine uses to report its progress to the provisioner */
  machineTokens: Record<string, string>;
  /** the provisioner's SSH public key line (its private key stays in <state>/ssh/provisioner) */
  provisionerSshKey: string;
  /** etcd members that joined a running cluster (<state>/etcd-joins.json): name → their --initial-cluster */
  etcdJoins?: Record<string, string>;
  /** bootstrap tokens per provisioning window (<state>/bootstrap-tokens.json): machine → its own token; retired: install token ids gone from the cluster */
  windowTokens?: { machines: Record<string, { id: string; secret: string; expires: string; used?: true }>; retired: string[] };
}
