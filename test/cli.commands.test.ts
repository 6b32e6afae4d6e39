// schema, init, and the default state directory, through the real executable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { slipway, EXAMPLE_HA } from './helpers/cli.ts';

test('schema prints a JSON Schema that accepts the example and rejects a typo', () => {
  const r = slipway(['schema']);
  assert.equal(r.code, 0, r.stderr);
  const schema = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  const validate = new Ajv({ strict: false, validateFormats: false }).compile(schema);
  const doc = parse(readFileSync(EXAMPLE_HA, 'utf8')) as { spec: Record<string, unknown> };
  assert.ok(validate(doc), JSON.stringify(validate.errors));
  doc.spec.machnes = [];
  assert.ok(!validate(doc));
});

for (const shape of ['single', 'ha']) {
  test(`init --shape ${shape} prints a valid, commented cluster file`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-init-'));
    try {
      const r = slipway(['init', '--shape', shape]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^# /m);
      const file = join(dir, 'c.yaml');
      writeFileSync(file, r.stdout);
      const v = slipway(['validate', '-f', file]);
      assert.equal(v.code, 0, v.stderr);
      const machines = (parse(r.stdout) as { spec: { machines: { roles: string[] }[]; controlPlane: { vip?: string } } }).spec;
      if (shape === 'ha') {
        assert.equal(machines.machines.filter((m) => m.roles.includes('control-plane') && m.roles.includes('etcd')).length, 3);
        assert.equal(machines.machines.filter((m) => m.roles.includes('worker')).length, 2);
        assert.ok(machines.controlPlane.vip);
      } else assert.equal(machines.machines.length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('render keeps its state in .slipway/ beside the cluster file, 0700, keys 0600', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-state-'));
  try {
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, readFileSync(EXAMPLE_HA, 'utf8'));
    const r = slipway(['render', '-f', file, '-o', join(dir, 'out')], { cwd: tmpdir() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(join(dir, '.slipway')).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, '.slipway/pki/ca.key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, '.slipway/tokens.json')).mode & 0o777, 0o600);
    assert.ok(existsSync(join(dir, 'out/machines/cp1/ignition.json')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
