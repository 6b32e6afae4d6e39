// The writers refuse, by themselves, a value their file cannot hold: these Specs bypass the
// schema (as a future source of values might — facts a machine reports, say) and every
// one must stop the plan with an error naming the file and setting, never render.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildPlan } from './plan.ts';
import { Unrenderable } from './guard.ts';
import { command, unitFile } from './systemd.ts';
import { haSpec } from '../../test/helpers/spec.ts';
import { fakeSecrets } from '../../test/helpers/secrets.ts';
import type { Spec } from '../spec/types.ts';

const CASES: [string, (s: Spec) => void, RegExp][] = [
  ['a node label value with a unit line', (s) => (s.machines[3]!.labels = { rack: 'r1\nExecStartPre=/bin/touch /tmp/pwned' }), /kubelet's --node-labels: it holds a control character/],
  ['a node label with a space', (s) => (s.machines[3]!.labels = { 'my rack': 'r1' }), /kubelet's --node-labels: it must be one word/],
  ['a node label with a comma', (s) => (s.machines[3]!.labels = { rack: 'r1,x=y' }), /list items cannot hold a comma/],
  ['a node label with $', (s) => (s.machines[3]!.labels = { rack: '$HOME' }), /systemd would expand/],
  ['an interface with a [Network] section', (s) => (s.machines[3]!.interface = 'eth0\n[Network]'), /w1's networkd \[Match\] Name=: not a Linux interface name/],
  ['a control-plane interface keepalived cannot hold', (s) => (s.machines[0]!.interface = 'eth0 x'), /networkd \[Match\] Name=|keepalived\.conf's interface/],
  ['a DHCP interface with a dnsmasq line', (s) => (s.provisioner.dhcp.interface = 'eth0\ndhcp-boot=evil'), /dnsmasq\.conf's interface=|kea-dhcp4\.json's interfaces-config/],
  ['an SSH key over two lines', (s) => (s.ssh.authorizedKeys = ['ssh-ed25519 AAAA a\nssh-ed25519 BBBB evil']), /authorized_keys \(key 1\): it holds a control character/],
  ['a machine name with a newline', (s) => (s.machines[3]!.name = 'w1\nx'), /control character|cannot put/],
];

for (const [name, mutate, expected] of CASES) {
  test(`the writers refuse ${name}`, () => {
    const spec = haSpec();
    mutate(spec);
    assert.throws(() => buildPlan(spec, fakeSecrets(spec)), (e: Error) => {
      assert.ok(e instanceof Unrenderable || /cannot put/.test(e.message), `${e.name}: ${e.message}`);
      assert.match(e.message, expected);
      return true;
    });
  });
}

test('unit values may not hold a line break; flags only the continuation command() writes', () => {
  assert.throws(() => unitFile({ Service: { Description: 'a\nExecStart=/bin/evil' } }), /the unit's Service\.Description=: it holds a control character/);
  assert.throws(() => command('/bin/x', { flag: 'a b' }), /--flag: it must be one word/);
  assert.throws(() => command('/bin/x', { flag: '%h' }), /systemd would expand/);
  const ok = unitFile({ Service: { ExecStart: command('/bin/x', { a: '1', b: ['x', 'y'] }) } });
  assert.equal(ok, '[Service]\nExecStart=/bin/x \\\n  --a=1 \\\n  --b=x,y\n');
});
