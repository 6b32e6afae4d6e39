// Secrets of the right shape for planner tests, not real keys (those are secrets/'s tests).
import type { Secrets } from '../../src/secrets/types.ts';
import type { Spec } from '../../src/spec/types.ts';

export function fakeSecrets(spec: Spec): Secrets {
  const pair = (id: string) => ({ cert: `-----BEGIN CERTIFICATE-----\n${id}\n-----END CERTIFICATE-----\n`, key: `-----BEGIN PRIVATE KEY-----\n${id}\n-----END PRIVATE KEY-----\n` });
  const ids = ['ca', 'front-proxy-ca', 'etcd/ca', 'apiserver', 'apiserver-kubelet-client', 'front-proxy-client', 'apiserver-etcd-client', 'etcd/healthcheck-client', 'admin', 'controller-manager', 'scheduler', 'kube-proxy'];
  for (const m of spec.machines) ids.push(`etcd/server/${m.name}`, `etcd/peer/${m.name}`);
  return {
    certs: Object.fromEntries(ids.map((id) => [id, pair(id)])),
    serviceAccount: { key: 'sa-key', pub: 'sa-pub' },
    bootstrapToken: { id: 'abcdef', secret: '0123456789abcdef' },
    encryptionKey: 'a2V5',
    machineTokens: Object.fromEntries(spec.machines.map((m) => [m.name, `token-${m.name}`])),
  };
}
