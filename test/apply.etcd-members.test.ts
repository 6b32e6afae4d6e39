// etcd membership through apply's own code against real etcd members (Debian's etcd),
// each in its own network namespace with its machine's IP, started from the rendered
// etcd.service flags and certificates (as test/etcd.cluster.test.ts). cp1..cp3 form the
// cluster of examples/lab.yaml; then, as `slipway apply` does for a file that adds cp4:
// planMembership asks the cluster (member list and /health over TLS with the state's
// client certificate) and plans `add cp4`; recordJoin writes <state>/etcd-joins.json and
// addEtcdMember runs `member add`; `slipway render` (reading that record) gives cp4
// --initial-cluster-state=existing, and cp4 started from that unit joins. Before that, as
// docs/day2.md's replacement does, the file without cp3: `member remove`, cp3's etcd stops
// itself. 3 healthy members after.
// The quorum rules are then checked against the real cluster with a member down.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { slipway, BIN, EXAMPLE_HA, ROOT } from './helpers/cli.ts';
import { SqliteStore } from '../src/store/sqlite.ts';
import { Netns } from './helpers/netns.ts';
import { parseCommand } from '../src/plan/systemd.ts';
import { withoutBootstrapFlags } from '../src/apply/apply.ts';
import { givenOf, machineFiles, saveGiven } from '../src/render/given.ts';
import { readTree } from '../src/render/write.ts';

const IPS: Record<string, string> = { cp1: '10.20.30.11', cp2: '10.20.30.12', cp3: '10.20.30.13', cp4: '10.20.30.14' };
const HA = readFileSync(EXAMPLE_HA, 'utf8');
const CP4 = '    - name: cp4\n      mac: "52:54:00:20:30:14"\n      ip: 10.20.30.14/24\n      interface: eth0\n      roles: [control-plane, etcd]\n';
const CP3 = /    - name: cp3\n(?: {6}.*\n)+/.exec(HA)![0];
const DRIVER = join(ROOT, 'test/helpers/etcd-membership.ts');

let work: string;
let state: string;
let hub: Netns;
const spaces: Netns[] = [];
const procs = new Map<string, { ns: Netns; child: ChildProcess }>();
const logs = new Map<string, string>();

const file = (name: string, text: string) => {
  const f = join(work, name);
  writeFileSync(f, text);
  return f;
};

before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-etcd-members-'));
  state = join(work, 'state');
  hub = Netns.create('slipway-em');
  hub.addBridge('br0');
  hub.addAddress('br0', '10.20.30.2/24'); // the provisioner
  hub.up('br0');
});

after(async () => {
  for (const ns of spaces) await ns.close();
  await hub?.close();
  rmSync(work, { recursive: true, force: true });
});

/** `slipway render` of a cluster file into out/ with the shared state; returns the etcd unit of each member. */
function render(f: string, out: string): void {
  const r = slipway(['render', '-f', f, '-o', out, '--state', state]);
  assert.equal(r.code, 0, r.stderr);
}
const unitOf = (out: string, m: string) => readFileSync(join(out, 'machines', m, 'root/etc/systemd/system/etcd.service'), 'utf8');

/** What serve records when a machine fetches its configuration: apply's view of what is installed. */
async function recordGiven(out: string, m: string): Promise<void> {
  await saveGiven(state, m, givenOf(machineFiles(await readTree(out), m)));
}

/** Starts member `m` from its rendered unit, in a namespace with its machine's address. */
function start(out: string, m: string): void {
  const { binary, args } = parseCommand(/^ExecStart=((?:.*\\\n)*.*)$/m.exec(unitOf(out, m))![1]!);
  assert.equal(binary, '/opt/bin/etcd');
  const pki = join(work, m, 'pki');
  cpSync(join(out, 'machines', m, 'root/etc/kubernetes/pki/etcd'), pki, { recursive: true });
  mkdirSync(join(work, m, 'data'), { recursive: true, mode: 0o700 });
  const ns = Netns.create('slipway-em');
  spaces.push(ns);
  const i = spaces.length;
  hub.addVeth(`v${i}`, 'eth0', ns);
  hub.setMaster(`v${i}`, 'br0');
  ns.addAddress('eth0', `${IPS[m]}/24`);
  const child = ns.spawn('etcd', args.map((a) => a.replace('/etc/kubernetes/pki/etcd', pki).replace(/^--data-dir=.*/, `--data-dir=${join(work, m, 'data')}`)));
  logs.set(m, '');
  const add = (d: Buffer) => logs.set(m, (logs.get(m)! + d.toString()).slice(-6000));
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  procs.set(m, { ns, child });
}

const etcdctl = (endpoints: string[], args: string[]) =>
  hub.exec('etcdctl', ['--endpoints', endpoints.map((m) => `https://${IPS[m]}:2379`).join(','), '--cacert', join(state, 'pki/etcd/ca.crt'), '--cert', join(state, 'pki/etcd/healthcheck-client.crt'), '--key', join(state, 'pki/etcd/healthcheck-client.key'), '--dial-timeout=3s', '--command-timeout=5s', ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    timeoutMs: 20_000,
  });

async function healthy(members: string[]): Promise<void> {
  let last = '';
  try {
    await hub.waitFor(`${members.join(', ')} healthy`, async () => {
      const r = await etcdctl(members, ['endpoint', 'health']);
      last = r.out;
      return r.code === 0 && (r.out.match(/is healthy/g) ?? []).length === members.length;
    }, 60_000, 1_000);
  } catch (e) {
    assert.fail(`${(e as Error).message}\nlast etcdctl:\n${last}\n${[...logs].map(([k, v]) => `--- ${k}\n${v}`).join('\n')}`);
  }
}

/** apply's membership code, run as the provisioner from inside the hub namespace. */
async function membership(op: 'plan' | 'add' | 'remove', f: string, installed: string[]): Promise<{ step: { kind: string; name?: string; rule?: string; message?: string; initialCluster?: string; forget?: string[] }; lines: string[] }> {
  const r = await hub.exec(process.execPath, [DRIVER, JSON.stringify({ op, file: f, state, installed })], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.out);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const memberNames = async (endpoint: string[]) => {
  const r = await etcdctl(endpoint, ['member', 'list', '-w', 'json']);
  assert.equal(r.code, 0, r.out);
  return (JSON.parse(r.stdout).members as { name?: string; peerURLs: string[] }[]).map((m) => m.name || `unstarted ${m.peerURLs[0]}`).sort();
};

test('apply replaces cp3 by cp4 in a running 3-member etcd: member remove, then member add with existing state; 3 healthy members after, the quorum rules checked on the real cluster', { timeout: 240_000 }, async () => {
  const t0 = performance.now();
  const three = file('three.yaml', HA);
  const two = file('two.yaml', HA.replace(CP3, ''));
  const replaced = file('replaced.yaml', HA.replace(CP3, CP4)); // cp1, cp2, cp4
  const out3 = join(work, 'out3');
  render(three, out3);
  const store = new SqliteStore(join(state, 'serve.db'));
  try {
    for (const m of ['cp1', 'cp2', 'cp3', 'w1', 'w2']) {
      // installed: serve recorded what it gave them, and their host keys (never used here: the dry runs only)
      await recordGiven(out3, m);
      store.transition(m, 'ready', 'test', () => true);
      store.pinHostKey(m, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoV7irw7un7QlJFAtFficETkA8oSUkSqFvoIXTO3CUY');
    }
  } finally {
    store.close();
  }
  for (const m of ['cp1', 'cp2', 'cp3']) {
    assert.match(unitOf(out3, m), /--initial-cluster-state=new/);
    start(out3, m);
  }
  await healthy(['cp1', 'cp2', 'cp3']);

  // replacing in one edit is two changes: refused before etcd is asked
  const both = await membership('plan', replaced, ['cp1', 'cp2', 'cp3', 'w1', 'w2']);
  assert.equal(both.step.rule, 'one-change-at-a-time', JSON.stringify(both));

  // 1. the file without cp3: planned from the running cluster (planning changes nothing), then removed
  const rm3 = await membership('plan', two, ['cp1', 'cp2', 'w1', 'w2']);
  assert.equal(rm3.step.kind, 'remove', JSON.stringify(rm3));
  assert.equal(rm3.step.name, 'cp3');
  assert.deepEqual(await memberNames(['cp1']), ['cp1', 'cp2', 'cp3']);
  // `slipway apply --dry-run` (the CLI, from the provisioner's namespace) shows the etcd step first and changes nothing
  let dry = await hub.exec(process.execPath, [BIN, 'apply', '-f', two, '--state', state, '--dry-run'], { timeoutMs: 60_000 });
  assert.equal(dry.code, 3, dry.out);
  assert.match(dry.stdout, /^etcd: remove member cp3 first: drain it and delete its Node \(kubectl on cp1\), `member remove` \d+, stop its units; then the others get their new lists$/m, dry.out);
  assert.match(dry.stdout, /^cp1:   ~ \/etc\/systemd\/system\/kube-apiserver\.service$/m, "cp1's apiserver loses cp3's etcd endpoint");
  assert.match(dry.stdout, /^apply --dry-run: 4 of 4 installed machines would change, and etcd's members \(remove cp3\); nothing done$/m, dry.out);
  assert.doesNotMatch(dry.stdout, /bootstrap token/, 'every machine installed, the install token young: no token change');
  assert.deepEqual(await memberNames(['cp1']), ['cp1', 'cp2', 'cp3']);
  const removed = await membership('remove', two, ['cp1', 'cp2', 'w1', 'w2']);
  assert.match(removed.lines.join('\n'), /etcd: member cp3 \([0-9]+\) removed; 2 members/);
  assert.equal(existsSync(join(state, 'given/cp3.json')), false, "cp3's record is forgotten");
  // etcd on cp3 learns it was removed and stops itself
  const cp3 = procs.get('cp3')!;
  await hub.waitFor('cp3 etcd exits once removed', () => cp3.child.exitCode !== null || cp3.child.signalCode !== null, 30_000, 250);
  assert.match(logs.get('cp3')!, /removed|not a member/i);
  await healthy(['cp1', 'cp2']);
  assert.deepEqual(await memberNames(['cp1']), ['cp1', 'cp2']);
  // a second run has nothing left to do
  assert.deepEqual((await membership('plan', two, ['cp1', 'cp2', 'w1', 'w2'])).step, { kind: 'none', forget: [] });

  // 2. the file with cp4 in cp3's place: member add, recorded for render
  const plan = await membership('plan', replaced, ['cp1', 'cp2', 'w1', 'w2']);
  assert.equal(plan.step.kind, 'add', JSON.stringify(plan));
  assert.equal(plan.step.initialCluster, 'cp1=https://10.20.30.11:2380,cp2=https://10.20.30.12:2380,cp4=https://10.20.30.14:2380');
  assert.equal(existsSync(join(state, 'etcd-joins.json')), false);
  dry = await hub.exec(process.execPath, [BIN, 'apply', '-f', replaced, '--state', state, '--dry-run'], { timeoutMs: 60_000 });
  assert.equal(dry.code, 3, dry.out);
  assert.match(dry.stdout, /^etcd: add member cp4 \(https:\/\/10\.20\.30\.14:2380\) to cp1, cp2, after the others are delivered \(before cp4 is provisioned\)$/m, dry.out);
  assert.match(dry.stdout, /^etcd: cp4 is recorded as joining: it starts with --initial-cluster-state=existing --initial-cluster=cp1=https:\/\/10\.20\.30\.11:2380,cp2=https:\/\/10\.20\.30\.12:2380,cp4=https:\/\/10\.20\.30\.14:2380$/m, dry.out);
  // cp4 left to serve opens its provisioning window: a token of its own; the install token retires
  assert.match(dry.stdout, /^cp4: a bootstrap token of its own for its provisioning window: [a-z0-9]{6}, expires \S+Z \(Secret kube-system\/bootstrap-token-[a-z0-9]{6}\)$/m, dry.out);
  assert.match(dry.stdout, /^bootstrap token [a-z0-9]{6}: delete from the cluster \(the install token: no machine installs with it any more\)$/m, dry.out);
  assert.match(dry.stdout, /^cp4: not installed \(unknown\): left to serve/m, dry.out);
  assert.equal(existsSync(join(state, 'etcd-joins.json')), false, 'a dry run records nothing');
  assert.equal(existsSync(join(state, 'bootstrap-tokens.json')), false, 'a dry run records nothing');
  const add = await membership('add', replaced, ['cp1', 'cp2', 'w1', 'w2']);
  assert.match(add.lines.join('\n'), /etcd: member cp4 added \([0-9]+\); until it runs etcd has 3 members with 2 running and tolerates 0 failure/);
  assert.deepEqual(await memberNames(['cp1']), ['cp1', 'cp2', 'unstarted https://10.20.30.14:2380']);
  assert.equal(statSync(join(state, 'etcd-joins.json')).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(readFileSync(join(state, 'etcd-joins.json'), 'utf8')), { cp4: plan.step.initialCluster });
  // a second run continues: the member is there, nothing more to add
  assert.equal((await membership('plan', replaced, ['cp1', 'cp2', 'w1', 'w2'])).step.kind, 'none');

  // render reads the record: cp4 joins the existing cluster; the others' units differ only in bootstrap-only flags
  const out4 = join(work, 'out4');
  render(replaced, out4);
  const cp4 = unitOf(out4, 'cp4');
  assert.match(cp4, /--initial-cluster-state=existing/);
  assert.match(cp4, /--initial-cluster=cp1=https:\/\/10\.20\.30\.11:2380,cp2=https:\/\/10\.20\.30\.12:2380,cp4=https:\/\/10\.20\.30\.14:2380 /);
  for (const m of ['cp1', 'cp2']) {
    assert.notEqual(unitOf(out4, m), unitOf(out3, m), `${m}: its initial cluster names cp4`);
    assert.equal(withoutBootstrapFlags(unitOf(out4, m)), withoutBootstrapFlags(unitOf(out3, m)), `${m}: only bootstrap-only flags changed (apply does not restart etcd)`);
    assert.match(unitOf(out4, m), /--initial-cluster-state=new/);
  }
  start(out4, 'cp4');
  await healthy(['cp1', 'cp2', 'cp4']);
  assert.deepEqual(await memberNames(['cp4']), ['cp1', 'cp2', 'cp4']);
  const r = await etcdctl(['cp1', 'cp2', 'cp4'], ['endpoint', 'health', '--cluster']);
  assert.equal(r.code, 0, r.out);
  assert.equal((r.out.match(/is healthy/g) ?? []).length, 3, r.out);
  await recordGiven(out4, 'cp4'); // serve gave cp4 its configuration
  assert.deepEqual((await membership('plan', replaced, ['cp1', 'cp2', 'cp4', 'w1', 'w2'])).step, { kind: 'none', forget: [] });

  // the rules on the real cluster: with cp2 down, adding or removing a member is refused
  await procs.get('cp2')!.ns.kill(procs.get('cp2')!.child);
  const five = file('five.yaml', readFileSync(replaced, 'utf8').replace(/(  machines:\n)/, `$1${CP4.replace(/cp4/g, 'cp5').replace('30:14', '30:15').replace('10.20.30.14', '10.20.30.15')}`));
  const refusedAdd = await membership('plan', five, ['cp1', 'cp2', 'cp4', 'w1', 'w2']);
  assert.equal(refusedAdd.step.rule, 'quorum-after-add', JSON.stringify(refusedAdd));
  assert.match(refusedAdd.step.message!, /adding cp5 makes 4 members, whose quorum is 3, but only 2 of the 3 members are healthy \(cp1, cp4\)/);
  const without4 = file('without4.yaml', readFileSync(replaced, 'utf8').replace(/    - name: cp4\n(?: {6}.*\n)+/, ''));
  const refusedRemove = await membership('plan', without4, ['cp1', 'cp2', 'cp4', 'w1', 'w2']);
  assert.equal(refusedRemove.step.rule, 'quorum-after-remove', JSON.stringify(refusedRemove));
  assert.deepEqual(await memberNames(['cp1']), ['cp1', 'cp2', 'cp4'], 'nothing changed');
  console.log(`# etcd membership against real members: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
