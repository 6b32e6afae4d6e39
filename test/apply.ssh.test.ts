// apply/ssh.ts against the real OpenSSH: a real sshd (Debian's openssh-server) in a network
// namespace of this test, trusting the authorized_keys file Slipway renders, and the real
// ssh client using the provisioner key from a real state directory. Proves the key (ssh-keygen
// reads it, sshd accepts it), atomic multi-file delivery, and each named failure with
// nothing done on the machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Netns } from './helpers/netns.ts';
import { slipway, EXAMPLE_HA } from './helpers/cli.ts';
import { SshError, SshTransport, type SshMachine } from '../src/apply/ssh.ts';
import { provisionerKeyPath } from '../src/secrets/store.ts';
import { newSshKey } from '../src/secrets/ssh-key.ts';

const SSHD = '/usr/sbin/sshd';
const missing = ['ssh', 'ssh-keygen', 'ip'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
if (!existsSync(SSHD)) missing.push('sshd (openssh-server)');
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : missing.length ? `missing ${missing.join(', ')}` : false;

const ADDR = '10.77.0.1';
const PORT = 2222;
let work: string;
let state: string;
let ns: Netns;
let sshd: ChildProcess;
let hostPub: string;
let ssh: SshTransport;
let box: string; // where the "machine" keeps its files (sshd runs on this host's file system)
const machine = (over: Partial<SshMachine> = {}): SshMachine => ({ name: 'cp1', address: ADDR, port: PORT, hostKey: hostPub, ...over });

before(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'slipway-apply-ssh-'));
  state = join(work, 'state');
  const out = join(work, 'out');
  const r = slipway(['render', '-f', EXAMPLE_HA, '-o', out, '--state', state]);
  assert.equal(r.code, 0, r.stderr);
  box = join(work, 'box');
  mkdirSync(box);
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'host_ed25519')]);
  hostPub = readFileSync(join(work, 'host_ed25519.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege-separation directory
  writeFileSync(
    join(work, 'sshd_config'),
    [
      `ListenAddress ${ADDR}:${PORT}`,
      `HostKey ${join(work, 'host_ed25519')}`,
      // the authorized_keys cp1 was rendered with: the operators' keys and the provisioner's
      `AuthorizedKeysFile ${join(out, 'machines/cp1/root/root/.ssh/authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PidFile none',
      '',
    ].join('\n'),
  );
  ns = Netns.create('slipway-ssh');
  ns.addDummy('eth0');
  ns.addAddress('eth0', `${ADDR}/24`);
  sshd = ns.spawn(SSHD, ['-D', '-e', '-f', join(work, 'sshd_config')]);
  let log = '';
  sshd.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  await ns.waitFor('sshd listening', async () => (await ns.exec('ss', ['-ltn'])).stdout.includes(`${ADDR}:${PORT}`), 10_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${log}`);
  });
  ssh = new SshTransport({ keyFile: provisionerKeyPath(state), ssh: ['ip', 'netns', 'exec', ns.name, 'ssh'], connectTimeoutS: 3 });
});

after(async () => {
  ssh?.close();
  if (sshd) await ns.kill(sshd);
  await ns?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the provisioner key in the state directory is 0600 and what ssh-keygen reads', { skip }, () => {
  const key = provisionerKeyPath(state);
  assert.equal(statSync(key).mode & 0o777, 0o600);
  const derived = spawnSync('ssh-keygen', ['-y', '-f', key], { encoding: 'utf8' });
  assert.equal(derived.status, 0, derived.stderr);
  const pub = readFileSync(`${key}.pub`, 'utf8').trim();
  assert.equal(derived.stdout.trim().split(' ').slice(0, 2).join(' '), pub.split(' ').slice(0, 2).join(' '));
  // every machine's authorized_keys carries it
  for (const m of ['cp1', 'w1']) assert.ok(readFileSync(join(work, 'out/machines', m, 'root/root/.ssh/authorized_keys'), 'utf8').includes(pub), m);
});

test('run: argv words arrive as they were, scripts run in sh, a failing command names its exit', { skip }, async () => {
  const words = ['printf', '%s|', 'a b', "it's", '$HOME', '*', ''];
  const r = await ssh.run(machine(), words);
  assert.equal(r.stdout, "a b|it's|$HOME|*||");
  const s = await ssh.run(machine(), { script: 'x=41\necho $((x + 1))\n' });
  assert.equal(s.stdout, '42\n');
  await assert.rejects(ssh.run(machine(), ['sh', '-c', 'echo nope >&2; exit 3']), (e: SshError) => e.kind === 'command-failed' && e.result?.code === 3 && /exited 3: nope/.test(e.message));
  const soft = await ssh.run(machine(), ['sh', '-c', 'exit 4'], { check: false });
  assert.equal(soft.code, 4);
});

test('putFiles: every file replaced by rename, with its mode, owner and bytes; a failure renames nothing', { skip }, async () => {
  const a = join(box, 'etc/a.conf');
  const b = join(box, 'etc/sub/b.bin');
  await ssh.putFiles(machine(), [{ path: a, mode: 0o644, contents: 'one\n' }]);
  const inode = statSync(a).ino;
  const bytes = Buffer.from([0, 1, 2, 255, 10, 13, 39, 34]);
  await ssh.putFiles(machine(), [
    { path: a, mode: 0o600, contents: 'two\n' },
    { path: b, mode: 0o755, owner: 'root:root', contents: bytes },
  ]);
  assert.equal(readFileSync(a, 'utf8'), 'two\n');
  assert.notEqual(statSync(a).ino, inode, 'replaced by a rename, not rewritten in place');
  assert.equal(statSync(a).mode & 0o777, 0o600);
  assert.deepEqual(readFileSync(b), bytes);
  assert.equal(statSync(b).mode & 0o777, 0o755);
  // the second file's directory cannot be made (a file is in the way): the first is untouched
  writeFileSync(join(box, 'blocker'), '');
  await assert.rejects(
    ssh.putFiles(machine(), [
      { path: a, mode: 0o644, contents: 'three\n' },
      { path: join(box, 'blocker/c'), mode: 0o644, contents: 'x' },
    ]),
    (e: SshError) => e.kind === 'command-failed',
  );
  assert.equal(readFileSync(a, 'utf8'), 'two\n');
  assert.deepEqual(readdirSync(join(box, 'etc')).sort(), ['a.conf', 'sub'], 'no temporary left behind');
  await assert.rejects(ssh.putFiles(machine(), [{ path: 'relative/x', mode: 0o644, contents: '' }]), /not an absolute path/);
});

test('a host key other than the pinned one stops before anything runs', { skip }, async () => {
  const other = newSshKey().publicKey.split(' ').slice(0, 2).join(' ');
  const marker = join(box, 'ran');
  await assert.rejects(ssh.run(machine({ hostKey: other }), ['touch', marker]), (e: SshError) => e.kind === 'host-key-mismatch' && /not the one pinned/.test(e.message) && e.machine === 'cp1');
  assert.equal(existsSync(marker), false);
  await assert.rejects(ssh.putFiles(machine({ hostKey: other }), [{ path: marker, mode: 0o644, contents: 'x' }]), (e: SshError) => e.kind === 'host-key-mismatch');
  assert.equal(existsSync(marker), false);
});

test('a key the machine does not trust is auth-refused', { skip }, async () => {
  const stranger = newSshKey();
  const keyFile = join(work, 'stranger');
  writeFileSync(keyFile, stranger.privateKey, { mode: 0o600 });
  const t = new SshTransport({ keyFile, ssh: ['ip', 'netns', 'exec', ns.name, 'ssh'], connectTimeoutS: 3 });
  try {
    await assert.rejects(t.run(machine(), ['true']), (e: SshError) => e.kind === 'auth-refused' && /refused the provisioner's SSH key/.test(e.message));
  } finally {
    t.close();
  }
});

test('nothing listening, or no route: unreachable; a command that hangs: timeout', { skip }, async () => {
  await assert.rejects(ssh.run(machine({ port: PORT + 1 }), ['true']), (e: SshError) => e.kind === 'unreachable' && /Connection refused/.test(e.message));
  await assert.rejects(ssh.run(machine({ address: '10.78.0.9' }), ['true']), (e: SshError) => e.kind === 'unreachable' && /unreachable/.test(e.message));
  const t0 = Date.now();
  await assert.rejects(ssh.run(machine(), ['sleep', '30'], { timeoutMs: 1500 }), (e: SshError) => e.kind === 'timeout');
  assert.ok(Date.now() - t0 < 10_000);
});
