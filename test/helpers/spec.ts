// Resolved Specs for tests and benchmarks, built directly (no YAML), matching
// examples/lab.yaml and examples/single.yaml after resolve(). Every call returns fresh
// objects, so a test may mutate what it gets.
import { parseCidr } from '../../src/lib/ipv4.ts';
import { DEFAULTS } from '../../src/spec/resolve.ts';
import type { Machine, Role, Spec } from '../../src/spec/types.ts';

const TEST_SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJbGMd8yq0N2Lw7AfJbqUnLk4Y8pQ1r9Pz7aS0xq3aBc ops@example';

/** A machine on the 10.20.30.0/24 lab subnet; the MAC is derived from the IP so it stays unique. */
export function machine(name: string, ip: string, roles: Role[]): Machine {
  const [, , c, d] = ip.split('.').map(Number);
  const hex = (n: number | undefined) => (n ?? 0).toString(16).padStart(2, '0');
  return { name, mac: `52:54:00:${hex(20)}:${hex(c)}:${hex(d)}`, ip, prefix: 24, roles, disk: DEFAULTS.disk, labels: {} };
}

function base(machines: Machine[], controlPlane: Spec['controlPlane']): Spec {
  return {
    name: 'lab',
    kubernetesVersion: DEFAULTS.kubernetesVersion,
    controlPlane,
    network: {
      serviceCIDR: parseCidr(DEFAULTS.serviceCIDR)!,
      podCIDR: parseCidr(DEFAULTS.podCIDR)!,
      dnsDomain: DEFAULTS.dnsDomain,
      cni: 'flannel',
    },
    provisioner: {
      address: '10.20.30.2',
      httpPort: 8080,
      dhcp: { mode: 'full', subnet: parseCidr('10.20.30.0/24')!, router: '10.20.30.1', dns: ['10.20.30.1'], interface: DEFAULTS.dhcpInterface },
    },
    pki: { keyAlgorithm: 'ecdsa-p256', caValidityDays: DEFAULTS.caValidityDays, certValidityDays: DEFAULTS.certValidityDays },
    ssh: { authorizedKeys: [TEST_SSH_KEY] },
    machines,
  };
}

/** cp1..cp3 (control-plane+etcd, .11-.13), w1,w2 (worker, .21-.22), VIP .10, endpoint k8s-api.lab.local:6443. Top-level fields of `overrides` replace the defaults. */
export function haSpec(overrides: Partial<Spec> = {}): Spec {
  const machines = [
    machine('cp1', '10.20.30.11', ['control-plane', 'etcd']),
    machine('cp2', '10.20.30.12', ['control-plane', 'etcd']),
    machine('cp3', '10.20.30.13', ['control-plane', 'etcd']),
    machine('w1', '10.20.30.21', ['worker']),
    machine('w2', '10.20.30.22', ['worker']),
  ];
  const cp = { endpoint: 'k8s-api.lab.local', vip: '10.20.30.10', port: 6443, vrid: DEFAULTS.vrid };
  return { ...base(machines, cp), ...overrides };
}

/** One machine cp1 (10.20.30.11) doing everything; no VIP, no endpoint name. */
export function singleSpec(overrides: Partial<Spec> = {}): Spec {
  const machines = [machine('cp1', '10.20.30.11', ['control-plane', 'etcd', 'worker'])];
  return { ...base(machines, { port: 6443, vrid: DEFAULTS.vrid }), ...overrides };
}
