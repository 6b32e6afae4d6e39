// A TLS etcd member per machine with the etcd role: flags on the command line (as
// guide 02), client and peer TLS with client-certificate auth, the full initial cluster.
// Only flags that etcd 3.4, 3.5 and 3.6 all accept. A member `slipway apply` added to a
// running cluster (`member add`, recorded in <state>/etcd-joins.json, Secrets.etcdJoins)
// starts with --initial-cluster-state=existing and the initial cluster recorded at its add:
// the members then, itself last. Bootstrap-only: a running member ignores both flags.
import { etcdMembers, hasRole, type Machine, type Spec } from '../../spec/types.ts';
import { command, unitFile } from '../systemd.ts';
import type { Phase } from '../types.ts';
import { BIN, ETCD_PKI, TIME_SYNC, UNITS } from '../paths.ts';

export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;

/** The flags etcd reads only when its data directory is empty (apply need not restart etcd for them). */
export const BOOTSTRAP_ONLY_FLAGS = ['initial-cluster', 'initial-cluster-state', 'initial-cluster-token', 'initial-advertise-peer-urls'] as const;

/** `joining`: the --initial-cluster recorded when this member was added to a running cluster. */
export function etcdFlags(spec: Spec, m: Machine, dataDir = '/var/lib/etcd', joining?: string): Record<string, string> {
  return {
    name: m.name,
    'data-dir': dataDir,
    'listen-client-urls': `https://${m.ip}:${ETCD_CLIENT_PORT},https://127.0.0.1:${ETCD_CLIENT_PORT}`,
    'advertise-client-urls': `https://${m.ip}:${ETCD_CLIENT_PORT}`,
    'listen-peer-urls': `https://${m.ip}:${ETCD_PEER_PORT}`,
    'initial-advertise-peer-urls': `https://${m.ip}:${ETCD_PEER_PORT}`,
    'initial-cluster': joining ?? etcdMembers(spec).map((e) => `${e.name}=https://${e.ip}:${ETCD_PEER_PORT}`).join(','),
    'initial-cluster-token': `${spec.name}-etcd`,
    'initial-cluster-state': joining ? 'existing' : 'new',
    'client-cert-auth': 'true',
    'trusted-ca-file': `${ETCD_PKI}/ca.crt`,
    'cert-file': `${ETCD_PKI}/server.crt`,
    'key-file': `${ETCD_PKI}/server.key`,
    'peer-client-cert-auth': 'true',
    'peer-trusted-ca-file': `${ETCD_PKI}/ca.crt`,
    'peer-cert-file': `${ETCD_PKI}/peer.crt`,
    'peer-key-file': `${ETCD_PKI}/peer.key`,
    'snapshot-count': '10000',
    'listen-metrics-urls': 'http://127.0.0.1:2381',
  };
}

export const etcdPhase: Phase = {
  name: 'etcd',
  machine(ctx, m) {
    if (!hasRole(m, 'etcd')) return [];
    const unit = unitFile({
      Unit: {
        Description: 'etcd key-value store (Slipway)',
        Documentation: 'https://etcd.io/docs/',
        Wants: ['network-online.target', TIME_SYNC],
        After: ['network-online.target', TIME_SYNC, 'slipway-binaries.service'],
        Requires: 'slipway-binaries.service',
      },
      Service: {
        Type: 'notify',
        ExecStart: command(`${BIN}/etcd`, etcdFlags(ctx.spec, m, undefined, ctx.secrets.etcdJoins?.[m.name])),
        Restart: 'always',
        RestartSec: '5s',
        LimitNOFILE: 65536,
      },
      Install: { WantedBy: 'multi-user.target' },
    });
    return [{ path: `${UNITS}/etcd.service`, mode: 0o644, contents: unit }];
  },
};
