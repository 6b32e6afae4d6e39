// A TLS etcd member per machine with the etcd role: flags on the command line (as
// guide 02), client and peer TLS with client-certificate auth, the full initial cluster.
// Only flags that etcd 3.4, 3.5 and 3.6 all accept.
import { etcdMembers, hasRole, type Machine, type Spec } from '../../spec/types.ts';
import { command, unitFile } from '../systemd.ts';
import type { Phase } from '../types.ts';
import { BIN, ETCD_PKI, TIME_SYNC, UNITS } from '../paths.ts';

export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;

export function etcdFlags(spec: Spec, m: Machine, dataDir = '/var/lib/etcd'): Record<string, string> {
  return {
    name: m.name,
    'data-dir': dataDir,
    'listen-client-urls': `https://${m.ip}:${ETCD_CLIENT_PORT},https://127.0.0.1:${ETCD_CLIENT_PORT}`,
    'advertise-client-urls': `https://${m.ip}:${ETCD_CLIENT_PORT}`,
    'listen-peer-urls': `https://${m.ip}:${ETCD_PEER_PORT}`,
    'initial-advertise-peer-urls': `https://${m.ip}:${ETCD_PEER_PORT}`,
    'initial-cluster': etcdMembers(spec).map((e) => `${e.name}=https://${e.ip}:${ETCD_PEER_PORT}`).join(','),
    'initial-cluster-token': `${spec.name}-etcd`,
    'initial-cluster-state': 'new',
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
        ExecStart: command(`${BIN}/etcd`, etcdFlags(ctx.spec, m)),
        Restart: 'always',
        RestartSec: '5s',
        LimitNOFILE: 65536,
      },
      Install: { WantedBy: 'multi-user.target' },
    });
    return [{ path: `${UNITS}/etcd.service`, mode: 0o644, contents: unit }];
  },
};
