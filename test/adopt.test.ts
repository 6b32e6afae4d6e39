// `slipway adopt`: a machine added to a commented cluster file through the yaml Document
// API. Every line of the original stays, in order, comments included; the result passes
// `slipway validate` (the real CLI) and renders the new machine; a MAC adopted twice, a
// name in use, an unknown role or an address outside the subnet is refused naming why,
// the file byte for byte unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXAMPLE_HA, slipway } from './helpers/cli.ts';
import { bigClusterFile } from './helpers/spec.ts';

test('adopt keeps every comment and line, fills the next free address, and validate and render take the result', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-adopt-'));
  try {
    const file = join(dir, 'cluster.yaml');
    const original = readFileSync(EXAMPLE_HA, 'utf8');
    writeFileSync(file, original);
    chmodSync(file, 0o640);
    const r = slipway(['adopt', '-f', file, '52-54-00-20-30-23', '--name', 'w3', '--roles', 'worker']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /adopted 52:54:00:20:30:23 as w3 \(worker, 10\.20\.30\.23\/24\)/);
    const after = readFileSync(file, 'utf8');
    // every original line, in order; only the new machine's lines added
    const lines = after.split('\n');
    let at = 0;
    const added: string[] = [];
    for (const l of lines) {
      if (at < original.split('\n').length && l === original.split('\n')[at]) at++;
      else added.push(l);
    }
    assert.equal(at, original.split('\n').length, `original lines missing from:\n${after}`);
    assert.deepEqual(added.filter((l) => l.trim()), ['    - name: w3', '      mac: "52:54:00:20:30:23"', '      ip: 10.20.30.23/24', '      roles: [worker]']);
    assert.ok(original.split('\n').some((l) => l.includes('#')) && after.includes('# NIC name: keepalived binds the VIP to it'));
    assert.equal(statSync(file).mode & 0o777, 0o640, 'the file keeps its mode');
    const v = slipway(['validate', '-f', file]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /valid \(6 machines/);
    const out = join(dir, 'out');
    const rr = slipway(['render', '-f', file, '-o', out, '--state', join(dir, 'state')]);
    assert.equal(rr.code, 0, rr.stderr);
    assert.ok(readdirSync(join(out, 'machines')).includes('w3'));

    // a second adoption after it: the next address again, a given one kept
    assert.equal(slipway(['adopt', '-f', file, '52:54:00:20:30:24', '--name', 'w4', '--roles', 'worker', '--ip', '10.20.30.40/24']).code, 0);
    assert.match(readFileSync(file, 'utf8'), /- name: w4\n\s+mac: "52:54:00:20:30:24"\n\s+ip: 10\.20\.30\.40\/24/);

    // refusals: the file untouched, each naming why
    const before = readFileSync(file, 'utf8');
    const refused = (args: string[], code: number, re: RegExp) => {
      const x = slipway(['adopt', '-f', file, ...args]);
      assert.equal(x.code, code, `${args.join(' ')}: ${x.stderr}`);
      assert.match(x.stderr, re);
      assert.equal(readFileSync(file, 'utf8'), before, `${args.join(' ')} changed the file`);
      assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
    };
    refused(['52:54:00:20:30:23', '--name', 'w9', '--roles', 'worker'], 1, /52:54:00:20:30:23 is already adopted: it is w3/);
    refused(['52:54:00:20:30:99', '--name', 'w3', '--roles', 'worker'], 1, /the name w3 is already used by another machine/);
    refused(['52:54:00:20:30:99', '--name', 'w9', '--roles', 'workr'], 1, /spec\.machines\[7\]\.roles\[0\]: unknown role "workr"/);
    refused(['52:54:00:20:30:99', '--name', 'w9', '--roles', 'worker', '--ip', '10.99.0.1/24'], 1, /machine address 10\.99\.0\.1 is outside the DHCP subnet/);
    refused(['52:54:00:20:30:99', '--name', 'W_9', '--roles', 'worker'], 1, /spec\.machines\[7\]\.name/);
    refused(['not-a-mac', '--name', 'w9', '--roles', 'worker'], 1, /"not-a-mac" is not a MAC address/);
    refused(['52:54:00:20:30:99', '--roles', 'worker'], 2, /missing --name NAME/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('adopt into a list of inline machines writes an inline one, in the same column', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-adopt-'));
  try {
    const file = join(dir, 'big.yaml');
    const original = bigClusterFile(5);
    writeFileSync(file, original);
    const r = slipway(['adopt', '-f', file, '52:54:00:00:00:99', '--name', 'w9', '--roles', 'worker']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(file, 'utf8'), `${original}    - {name: w9, mac: "52:54:00:00:00:99", ip: 10.20.1.5/16, roles: [worker]}\n`);
    assert.equal(slipway(['validate', '-f', file]).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a second adoption goes after the first one and its BMC note, and adds no blank line at the end of the file', async () => {
  const { adoptText } = await import('../src/spec/adopt.ts');
  const original = readFileSync(EXAMPLE_HA, 'utf8');
  const a = adoptText(original, 'cluster.yaml', { mac: '52:54:00:99:00:01', name: 'e1', roles: ['worker'], bmcNote: 'its BMC (enlisted): 10.20.30.201' });
  const b = adoptText(a.text, 'cluster.yaml', { mac: '52:54:00:99:00:02', name: 'e2', roles: ['worker'], bmcNote: 'its BMC (enlisted): 10.20.30.202' });
  assert.ok(b.text.startsWith(a.text.trimEnd()), 'the first adoption and its note stay where they were');
  assert.equal(b.text.slice(a.text.trimEnd().length), '\n    - name: e2\n      mac: "52:54:00:99:00:02"\n      ip: 10.20.30.24/24\n      roles: [worker]\n      # its BMC (enlisted): 10.20.30.202\n' + a.text.slice(a.text.trimEnd().length + 1));
  assert.match(a.text, /roles: \[worker\]\n {6}# its BMC \(enlisted\): 10\.20\.30\.201\n/);
});
