// Secrets of the right shape for planner tests, not real keys (those are secrets/'s tests).
import type { Certs, Secrets } from '../../src/secrets/types.ts';
import { certList } from '../../src/secrets/certlist.ts';
import type { Spec } from '../../src/spec/types.ts';

export function fakeSecrets(spec: Spec): Secrets {
  const pair = (id: string) => ({ cert: `-----BEGIN CERTIFICATE-----\n${id}\n-----END CERTIFICATE-----\n`, key: `-----BEGIN PRIVATE KEY-----\n${id}\n-----END PRIVATE KEY-----\n` });
  return {
    // one per row of the real certificate list, so the ids are the ones the planner asks for
    certs: Object.fromEntries(certList(spec).map((d) => [d.id, pair(d.id)])) as Certs,
    serviceAccount: { key: 'sa-key', pub: 'sa-pub' },
    bootstrapToken: { id: 'abcdef', secret: '0123456789abcdef' },
    encryptionKey: 'a2V5',
    machineTokens: Object.fromEntries(spec.machines.map((m) => [m.name, `token-${m.name}`])),
    provisionerSshKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoV7irw7un7QlJFAtFficETkA8oSUkSqFvoIXTO3CUY slipway-provisioner',
  };
}
