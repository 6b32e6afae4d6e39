// Units that run a fetched binary start only when it arrived: a provisioner without
// Kubernetes (a bundle lacking it) leaves those units skipped, not restart-looping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildPlan } from './plan.ts';
import { binariesFor } from './phases/node.ts';
import { BIN, UNITS } from './paths.ts';
import { unitFile } from './systemd.ts';
import { haSpec } from '../../test/helpers/spec.ts';
import { fakeSecrets } from '../../test/helpers/secrets.ts';

test('every unit whose ExecStart is a fetched binary is conditioned on that binary', () => {
  const spec = haSpec();
  const plan = buildPlan(spec, fakeSecrets(spec));
  let conditioned = 0;
  for (const { machine, files } of plan.machines) {
    const fetched = new Set(binariesFor(machine, spec.network.cni).map(([dest]) => dest));
    for (const f of files.filter((x) => x.path.startsWith(`${UNITS}/`) && x.path.endsWith('.service'))) {
      const exec = /^ExecStart=(\S+)/m.exec(f.contents)?.[1];
      const condition = /^ConditionFileIsExecutable=(\S+)$/m.exec(f.contents)?.[1];
      if (exec?.startsWith(`${BIN}/`)) {
        assert.equal(condition, exec, `${machine.name} ${f.path}`);
        assert.ok(fetched.has(exec), `${machine.name} ${f.path}: ${exec} is fetched by binaries.list`);
        assert.match(f.contents.split('[Service]')[0]!, /ConditionFileIsExecutable=/, 'in [Unit]');
        conditioned++;
      } else if (condition) {
        // a script that runs a fetched binary (the add-ons' kubectl) says so itself
        assert.ok(fetched.has(condition), `${machine.name} ${f.path}: ${condition}`);
        assert.match(f.contents, /^ExecStart=\/bin\/sh /m);
      }
    }
  }
  assert.ok(conditioned >= 20, `${conditioned} units conditioned`);
});

test('a unit running a system binary gets no condition', () => {
  assert.doesNotMatch(unitFile({ Unit: { Description: 'x' }, Service: { ExecStart: '/sbin/iptables -L' } }), /Condition/);
  assert.match(unitFile({ Service: { ExecStart: `${BIN}/etcd --name=a` } }), /^\[Unit\]\nConditionFileIsExecutable=\/opt\/bin\/etcd\n\n\[Service\]/);
});
