// Host keys are pinned at install: the machine's own rendered report.sh (run in its
// namespace with its rendered /etc and an SSH host key as the node OS makes one) sends it
// with `installed`; the real `slipway serve` pins it in serve.db; apply's targets read it
// from there. A different key later is refused, a reprovision forgets the pin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from './helpers/serve.ts';
import { slipway } from './helpers/cli.ts';
import type { Netns } from './helpers/netns.ts';
import { parseClusterFile } from '../src/spec/parse.ts';
import { machineTargets } from '../src/apply/targets.ts';

const BASE = 'http://10.20.30.2:8080';
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : spawnSync('sh', ['-c', 'command -v ssh-keygen']).status !== 0 ? 'missing ssh-keygen (openssh-client)' : false;
let lab: Lab;
let rendered: string;
let cp1: Netns;

before(async () => {
  if (skip) return;
  lab = Lab.create();
  await lab.start();
  rendered = join(lab.dir, 'out');
  const r = slipway(['render', '-f', lab.file, '-o', rendered, '--state', lab.state]);
  assert.equal(r.code, 0, r.stderr);
  cp1 = lab.host('52:54:00:20:30:11', '10.20.30.11');
});
after(async () => lab?.close());

/** cp1's rendered /etc with a fresh ed25519 host key in etc/ssh, as slipway-ssh-hostkeys makes one. */
function etcWithHostKey(tag: string): { etc: string; pub: string } {
  const etc = join(lab.dir, `etc-${tag}`);
  cpSync(join(rendered, 'machines/cp1/root/etc'), etc, { recursive: true });
  mkdirSync(join(etc, 'ssh'));
  assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'root@cp1', '-f', join(etc, 'ssh/ssh_host_ed25519_key')]).status, 0);
  return { etc, pub: readFileSync(join(etc, 'ssh/ssh_host_ed25519_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ') };
}

const report = (etc: string, seqDir: string, ...args: string[]) =>
  cp1.exec('unshare', ['-m', 'sh', '-c', `mount --make-rprivate / && mount --bind ${etc} /etc && mkdir -p ${seqDir} && mount --bind ${seqDir} /var/lib && sh /etc/slipway/report.sh "$@"`, 'report', ...args], { timeoutMs: 60_000 });

const spec = () => parseClusterFile(readFileSync(lab.file, 'utf8'), lab.file).spec!;

test('serve records what a machine was given when it fetches its configuration: a sha256 per file, 0600', { skip, timeout: 60_000 }, async () => {
  const r = await cp1.exec('curl', ['-sS', '-f', '-o', '/dev/null', `${BASE}/machines/cp1/ignition.json`]);
  assert.equal(r.code, 0, r.out);
  const file = join(lab.state, 'given/cp1.json');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const given = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { sha256: string; mode: number }>;
  const root = join(rendered, 'machines/cp1/root');
  const files = readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() || e.isSymbolicLink()).map((e) => join(e.parentPath, e.name).slice(root.length)).sort();
  assert.deepEqual(Object.keys(given).sort(), files);
  assert.equal(given['/etc/hosts']!.sha256, createHash('sha256').update(readFileSync(join(root, 'etc/hosts'))).digest('hex'));
  assert.ok(!readFileSync(file, 'utf8').includes('PRIVATE KEY'), 'hashes, never contents');
});

test('installed carries the host key; serve pins the first one, refuses another, forgets it on reprovision', { skip, timeout: 120_000 }, async () => {
  assert.deepEqual(machineTargets(lab.state, spec()).reachable, [], 'nothing installed yet');
  const seq = join(lab.dir, 'var-lib');
  const first = etcWithHostKey('a');
  // no host key with other states: installing says nothing of one
  assert.equal((await report(first.etc, seq, 'installing', 'writing image')).code, 0);
  assert.equal(machineTargets(lab.state, spec()).reachable.length, 0);
  const r = await report(first.etc, seq, 'installed');
  assert.equal(r.code, 0, r.out);
  const t = machineTargets(lab.state, spec());
  assert.deepEqual(t.reachable.map((x) => [x.machine.name, x.ssh.address, x.ssh.hostKey]), [['cp1', '10.20.30.11', first.pub]]);
  assert.ok(t.notInstalled.some((x) => x.machine.name === 'w1'));
  // the same key again (every boot reports installed): fine
  assert.equal((await report(first.etc, seq, 'installed')).code, 0);
  // another key without a reprovision: refused, the pin stays
  const second = etcWithHostKey('b');
  const refused = await report(second.etc, seq, 'installed');
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /400/);
  assert.match(lab.log, /host key differs from the one pinned at install/);
  assert.equal(machineTargets(lab.state, spec()).reachable[0]!.ssh.hostKey, first.pub);
  // the operator reprovisions cp1: the pin goes; its next install pins its new key
  const auth = ['-H', `Authorization: Bearer ${lab.apiToken()}`];
  const rep = await cp1.exec('curl', ['-sS', '-f', '-X', 'POST', ...auth, `${BASE}/api/v1/machines/cp1/reprovision`]);
  assert.equal(rep.code, 0, rep.out);
  assert.equal(machineTargets(lab.state, spec()).reachable.length, 0);
});
