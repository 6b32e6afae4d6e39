// `slipway apply`, `drain` and `remove` refusing before they reach any machine: usage
// errors (exit 2), a cluster not installed yet (everything left to serve), etcd membership
// changes by file edit (refused naming the rule), drain of a control-plane machine. Each
// leaves the state directory as it was. The state is a real render's, with serve's store
// saying which machines are installed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slipway, BIN, EXAMPLE_HA } from './helpers/cli.ts';
import { SqliteStore } from '../src/store/sqlite.ts';
import { givenOf, machineFiles, saveGiven } from '../src/render/given.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import { buildPlan } from '../src/plan/plan.ts';
import { planTree } from '../src/render/tree.ts';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';

let work: string;
let state: string;
const HA = readFileSync(EXAMPLE_HA, 'utf8');
const fileWith = (name: string, text: string) => {
  const f = join(work, name);
  writeFileSync(f, text);
  return f;
};
/** every file of the state directory with its bytes, to see that nothing changed */
const snapshot = () => readdirSync(state, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && !e.name.startsWith('serve.db')).map((e) => `${join(e.parentPath, e.name)}:${readFileSync(join(e.parentPath, e.name), 'utf8').length}`).sort();

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'slipway-apply-cli-'));
  state = join(work, 'state');
});
after(() => rmSync(work, { recursive: true, force: true }));

test('usage errors: exit 2, naming the flag', () => {
  for (const [args, msg] of [
    [['apply'], /missing -f FILE/],
    [['apply', '-f', EXAMPLE_HA, '--health-timeout', 'soon'], /--health-timeout must be a whole number/],
    [['apply', '-f', EXAMPLE_HA, '--bogus'], /Unknown option '--bogus'/],
    [['drain', '-f', EXAMPLE_HA], /drain takes one machine name/],
    [['remove', 'w1', 'w2', '-f', EXAMPLE_HA], /remove takes one machine name/],
  ] as const) {
    const r = slipway([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, msg);
  }
});

test('nothing installed yet: every machine is left to serve, nothing is reached', () => {
  const r = slipway(['apply', '-f', EXAMPLE_HA, '--state', state, '--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  for (const m of ['cp1', 'cp2', 'cp3', 'w1', 'w2']) assert.match(r.stdout, new RegExp(`^${m}: not installed \\(unknown\\): left to serve`, 'm'));
  assert.match(r.stdout, /0 of 0 installed machines would change/);
});

test('an etcd membership change is refused with its rule when the running members cannot be asked (or two at once), before any machine is reached; the state is unchanged', async () => {
  // cp1..cp3 installed as etcd members (serve's records), host keys pinned
  const spec = parseClusterFile(HA, EXAMPLE_HA).spec!;
  const secrets = await loadOrCreateSecrets(state, spec);
  const tree = planTree(buildPlan(spec, secrets));
  const store = new SqliteStore(join(state, 'serve.db'));
  for (const m of spec.machines) {
    await saveGiven(state, m.name, givenOf(machineFiles(tree, m.name)));
    store.transition(m.name, 'ready', 'test', () => true);
    store.pinHostKey(m.name, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoV7irw7un7QlJFAtFficETkA8oSUkSqFvoIXTO3CUY');
  }
  store.close();
  const before = snapshot();
  const cp4 = '    - name: cp4\n      mac: "52:54:00:20:30:14"\n      ip: 10.20.30.14/24\n      interface: eth0\n      roles: [control-plane, etcd]\n';
  const withCp4 = HA.replace(/(  machines:\n)/, `$1${cp4}`);
  assert.notEqual(withCp4, HA);
  // apply asks etcd's members over the network: from a namespace of its own with only loopback, where none answers
  const { Netns } = await import('./helpers/netns.ts');
  const ns = Netns.create('slipway-acli');
  const inNs = async (args: string[]) => {
    const x = await ns.exec(process.execPath, [BIN, ...args], { timeoutMs: 60_000 });
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  };
  let r;
  try {
    r = await inNs(['apply', '-f', fileWith('add.yaml', withCp4), '--state', state, '--yes']);
  } catch (e) {
    await ns.close();
    throw e;
  }
  assert.equal(r.code, 1, r.stdout + r.stderr);
  // no etcd runs here: apply adds a member only when it knows the running ones and their health
  assert.match(r.stderr, /apply: refused, nothing done: the file changes etcd's members, but the running cluster's member list could not be read \(no etcd member answered: https:\/\/10\.20\.30\.11:2379\/v3\/cluster\/member\/list: .*\[rule members-known\]/);
  // replacing cp3 by cp4 in one edit: two changes
  const cp3 = /    - name: cp3\n(?: {6}.*\n)+/.exec(HA)![0];
  r = slipway(['apply', '-f', fileWith('replace.yaml', withCp4.replace(cp3, '')), '--state', state, '--yes']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /by more than one \(add cp4, remove cp3\).*\[rule one-change-at-a-time\]/);
  try {
    r = await inNs(['apply', '-f', fileWith('remove.yaml', HA.replace(cp3, '')), '--state', state, '--yes']);
  } finally {
    await ns.close();
  }
  assert.equal(r.code, 1);
  assert.match(r.stderr, /member list could not be read .*\[rule members-known\]/);
  // drain: workers only
  r = slipway(['drain', 'cp1', '-f', EXAMPLE_HA, '--state', state]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cp1 is a control-plane and etcd machine: drain and remove take workers only.*\[rule workers-only\]/);
  r = slipway(['remove', 'nope', '-f', EXAMPLE_HA, '--state', state]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /nope is not a machine of the cluster file/);
  assert.deepEqual(snapshot(), before, 'the state directory is as it was');
});

test("the provisioner's SSH key: created once, kept byte for byte, a damaged one refused naming the file with nothing written", () => {
  const dir = join(work, 'keystate');
  let r = slipway(['render', '-f', EXAMPLE_HA, '-o', join(work, 'out1'), '--state', dir]);
  assert.equal(r.code, 0, r.stderr);
  const key = join(dir, 'ssh/provisioner');
  const first = readFileSync(key, 'utf8');
  assert.match(first, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
  r = slipway(['render', '-f', EXAMPLE_HA, '-o', join(work, 'out2'), '--state', dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(key, 'utf8'), first, 'kept: every installed machine trusts it');
  assert.equal(readFileSync(join(work, 'out2/machines/w1/root/root/.ssh/authorized_keys'), 'utf8'), readFileSync(join(work, 'out1/machines/w1/root/root/.ssh/authorized_keys'), 'utf8'));
  // one byte of the private half changed: refused, naming the file; nothing written
  const b64 = first.split('\n').slice(1, -2).join('');
  const raw = Buffer.from(b64, 'base64');
  const pub = Buffer.from(readFileSync(`${key}.pub`, 'utf8').split(' ')[1]!, 'base64').subarray(-32);
  const third = raw.indexOf(pub, raw.indexOf(pub, raw.indexOf(pub) + 1) + 1); // the 64-byte private string's public half
  raw[third - 27] = raw[third - 27]! ^ 0xff; // a byte of its seed

  writeFileSync(key, `-----BEGIN OPENSSH PRIVATE KEY-----\n${raw.toString('base64').match(/.{1,70}/g)!.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`, { mode: 0o600 });
  const tokens = readFileSync(join(dir, 'tokens.json'), 'utf8');
  r = slipway(['render', '-f', EXAMPLE_HA, '-o', join(work, 'out3'), '--state', dir]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`${key.replace(/[.]/g, '\\.')}: the key is damaged \\(its private half does not give its public half\\)`));
  assert.equal(readFileSync(join(dir, 'tokens.json'), 'utf8'), tokens);
  assert.ok(!readdirSync(work).includes('out3'), 'nothing rendered');
});
