// Broken cluster files: each must give its FILE:LINE:COL error, exit 1, and write nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slipway, EXAMPLE_HA } from './helpers/cli.ts';

const base = readFileSync(EXAMPLE_HA, 'utf8');
const edit = (pairs: [string | RegExp, string][]) => pairs.reduce<string>((s, [a, b]) => {
  const next = s.replace(a, b);
  assert.notEqual(next, s, `edit ${a} did not apply`);
  return next;
}, base);

// [case, edits, expected lines (after "bad.yaml:")]
const CASES: [string, [string | RegExp, string][], string[]][] = [
  ['duplicate MAC', [['"52:54:00:20:30:12"', '"52:54:00:20:30:11"']], ['37:12: spec.machines[1].mac: duplicate mac 52:54:00:20:30:11 (also spec.machines[0].mac, cp1)']],
  ['malformed MAC', [['"52:54:00:20:30:13"', '"52:54:00:20:30:1"']], ['42:12: spec.machines[2].mac: "52:54:00:20:30:1" is not a MAC address']],
  ['IP outside the DHCP subnet', [['10.20.30.21/24', '10.20.99.21/24']], ['48:11: spec.machines[3].ip: machine address 10.20.99.21 is outside the DHCP subnet 10.20.30.0/24']],
  ['duplicate name', [['name: w2', 'name: w1']], ['50:13: spec.machines[4].name: duplicate name w1']],
  ['duplicate IP', [['10.20.30.22/24', '10.20.30.21/24']], ['52:11: spec.machines[4].ip: duplicate ip 10.20.30.21']],
  ['VIP outside the subnet', [['vip: 10.20.30.10 ', 'vip: 10.20.40.10 ']], ['11:10: spec.controlPlane.vip: vip 10.20.40.10 is outside the DHCP subnet']],
  ['VIP equal to a machine IP', [['vip: 10.20.30.10 ', 'vip: 10.20.30.11 ']], ['11:10: spec.controlPlane.vip: vip 10.20.30.11 is also the address of machine cp1']],
  ['pod network overlaps service network', [['podCIDR: 10.244.0.0/16', 'podCIDR: 10.96.0.0/16']], ['15:14: spec.network.podCIDR: pod network 10.96.0.0/16 overlaps the service network 10.96.0.0/12']],
  ['service network overlaps machine network', [['serviceCIDR: 10.96.0.0/12', 'serviceCIDR: 10.20.0.0/16']], ['14:18: spec.network.serviceCIDR: service network 10.20.0.0/16 overlaps the machine subnet 10.20.30.0/24']],
  ['no etcd member', [[/roles: \[control-plane, etcd\]/g, 'roles: [control-plane]']], ['31:5: spec.machines: no machine has the etcd role']],
  ['several control planes without a VIP', [[/ {4}vip: .*\n/, '']], ['10:5: spec.controlPlane: 3 control-plane machines need a vip']],
  ['unknown role', [['roles: [worker]', 'roles: [wrker]']], ['49:15: spec.machines[3].roles[0]: unknown role "wrker"']],
  ['unsupported Kubernetes version', [['v1.34.2 ', 'v1.19.3 ']], ['8:22: spec.kubernetesVersion: Kubernetes v1.19.3 is not supported']],
  ['unknown field', [['    port: 6443 ', '    foo: bar\n    port: 6443 ']], ['12:5: spec.controlPlane.foo: unknown field "foo"']],
  ['misspelt field', [['    port: 6443 ', '    prot: 6443 ']], ['12:5: spec.controlPlane.prot: unknown field "prot": did you mean "port"?']],
  ['wrong type', [['httpPort: 8080', 'httpPort: eighty']], ['20:15: spec.provisioner.httpPort: must be integer']],
  ['missing required field', [[/ {6}subnet: .*\n/, '']], ['22:7: spec.provisioner.dhcp: missing required field "subnet"']],
  ['value not in the enum', [['mode: full ', 'mode: fulll ']], ['22:13: spec.provisioner.dhcp.mode: must be one of: full, proxy, off']],
  ['podCIDR too small for cni: bridge', [['cni: flannel', 'cni: bridge'], ['podCIDR: 10.244.0.0/16', 'podCIDR: 10.244.0.0/23']], ['15:14: spec.network.podCIDR: podCIDR 10.244.0.0/23 has 2 /24 slices for 5 machines']],
  ['cni: bridge with a machine whose network misses the others', [['cni: flannel', 'cni: bridge'], ['10.20.30.21/24', '10.20.30.21/28']], ['48:11: spec.machines[3].ip: cni: bridge routes pods through the other machines\' addresses, but cp1 (10.20.30.11) is outside this machine\'s network 10.20.30.16/28']],
  ['unknown cni', [['cni: flannel', 'cni: calico']], ['17:10: spec.network.cni: must be one of: flannel, bridge']],
  ['YAML syntax error', [['roles: [worker]', 'roles: [worker']], ['YAML: ']],
  [
    'several problems at once',
    [['"52:54:00:20:30:12"', '"52:54:00:20:30:11"'], ['10.20.30.21/24', '10.20.99.21/24'], ['roles: [worker]', 'roles: [wrker]']],
    ['37:12: spec.machines[1].mac: duplicate mac', '48:11: spec.machines[3].ip: machine address 10.20.99.21', '49:15: spec.machines[3].roles[0]: unknown role']],
];

for (const [name, edits, expected] of CASES) {
  test(`bad input: ${name}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-bad-'));
    try {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, edit(edits));
      for (const verb of ['validate', 'render', 'plan']) {
        const r = slipway(verb === 'validate' ? [verb, '-f', file] : [verb, '-f', file, '-o', join(dir, 'out')]);
        assert.equal(r.code, 1, `${verb} exit code; stderr: ${r.stderr}`);
        for (const e of expected) assert.ok(r.stderr.includes(`${file}:${e}`) || (e.startsWith('YAML') && new RegExp(`${file}:\\d+:\\d+: \\(file\\): YAML: `).test(r.stderr)), `${verb}: expected "${e}" in:\n${r.stderr}`);
      }
      assert.ok(!existsSync(join(dir, 'out')), 'no output directory written');
      assert.ok(!existsSync(join(dir, '.slipway')), 'no state directory created');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** `validate` on the example with `edits` as NAME.yaml: it must pass (exit 0); its stderr. */
function validateWarns(name: string, edits: [string | RegExp, string][]): string {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-warn-'));
  try {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, edit(edits));
    const r = slipway(['validate', '-f', file]);
    assert.equal(r.code, 0, r.stderr);
    return r.stderr;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('an even number of etcd members is a warning, not an error', () => {
  assert.match(validateWarns('even', [['roles: [worker]', 'roles: [worker, etcd]']]), /even\.yaml:31:5: spec\.machines: warning: 4 etcd members tolerate no more failures than 3/);
});

test('a patch release Slipway does not know is a warning that says which release the files are for', () => {
  assert.match(validateWarns('patch', [['v1.34.2 ', 'v1.34.99 ']]), /patch\.yaml:8:22: spec\.kubernetesVersion: warning: Slipway knows v1\.34\.2 of this minor line, not v1\.34\.99: files are rendered as for v1\.34\.2/);
  assert.doesNotMatch(validateWarns('known', []), /kubernetesVersion/);
});

test('usage errors exit 2', () => {
  assert.equal(slipway([]).code, 2);
  assert.equal(slipway(['frobnicate']).code, 2);
  assert.equal(slipway(['validate']).code, 2);
  assert.equal(slipway(['validate', '-f', '/nonexistent/cluster.yaml']).code, 2);
  assert.equal(slipway(['render', '-f', EXAMPLE_HA]).code, 2, 'render without -o');
  assert.equal(slipway(['validate', '-f', EXAMPLE_HA, '--bogus']).code, 2);
  assert.equal(slipway(['init', '--shape', 'huge']).code, 2);
});

test('the bundled examples are valid', () => {
  const r = slipway(['validate', '-f', EXAMPLE_HA]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
});
