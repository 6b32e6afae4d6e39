// Resolved Specs for tests and benchmarks, read from the bundled examples
// (examples/lab.yaml and examples/single.yaml) so tests and README never drift apart.
// Every call returns fresh objects, so a test may mutate what it gets.
import { readFileSync } from 'node:fs';
import { parseClusterFile } from '../../src/spec/parse.ts';
import type { Machine, Role, Spec } from '../../src/spec/types.ts';

function example(name: string): Spec {
  const file = new URL(`../../examples/${name}`, import.meta.url);
  const { spec, problems } = parseClusterFile(readFileSync(file, 'utf8'), name);
  if (!spec) throw new Error(`examples/${name} is invalid: ${problems.map((p) => p.message).join('; ')}`);
  return spec;
}

/** A machine on the 10.20.30.0/24 lab subnet, with the examples' MAC scheme (10.20.30.11 → 52:54:00:20:30:11). */
export function machine(name: string, ip: string, roles: Role[]): Machine {
  const [, b, c, d] = ip.split('.');
  return { name, mac: `52:54:00:${b}:${c}:${d!.padStart(2, '0').slice(-2)}`, ip, prefix: 24, roles, labels: {} };
}

/** examples/lab.yaml: cp1..cp3 (control-plane+etcd, .11-.13), w1,w2 (worker, .21-.22), VIP .10, endpoint k8s-api.lab.local:6443. Top-level fields of `overrides` replace the example's. */
export function haSpec(overrides: Partial<Spec> = {}): Spec {
  return { ...example('lab.yaml'), ...overrides };
}

/** examples/single.yaml: one machine cp1 (10.20.30.11) doing everything; no VIP, no endpoint name. */
export function singleSpec(overrides: Partial<Spec> = {}): Spec {
  return { ...example('single.yaml'), ...overrides };
}

/**
 * A cluster file with `n` machines (3 control-plane + etcd, the rest workers) on
 * 10.20.0.0/16, provisioner 10.20.30.2 (the lab's address), machines from 10.20.1.0 up.
 */
export function bigClusterFile(n: number): string {
  const lines = [
    'apiVersion: slipway.dev/v1alpha1',
    'kind: Cluster',
    'metadata: {name: big}',
    'spec:',
    '  controlPlane: {vip: 10.20.0.10, endpoint: k8s-api.big.local, port: 6443}',
    '  provisioner:',
    '    address: 10.20.30.2',
    '    dhcp: {mode: full, subnet: 10.20.0.0/16, router: 10.20.0.1, dns: [10.20.0.1]}',
    '  machines:',
  ];
  for (let i = 0; i < n; i++) {
    const host = 256 + i; // 10.20.1.0 upwards
    const ip = `10.20.${host >> 8}.${host & 255}`;
    const mac = `52:54:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    const cp = i < 3;
    lines.push(`    - {name: ${cp ? `cp${i + 1}` : `w${i - 2}`}, mac: "${mac}", ip: ${ip}/16, ${cp ? 'interface: eth0, ' : ''}roles: [${cp ? 'control-plane, etcd' : 'worker'}]}`);
  }
  return lines.join('\n') + '\n';
}
