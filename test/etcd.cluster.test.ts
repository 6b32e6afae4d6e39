// Three real etcd members started from the rendered etcd.service flags and the rendered
// certificates, each in its own network namespace with its machine's IP (as on three
// machines), joined by a bridge. The cluster must become healthy for `etcdctl endpoint
// health --cluster` with the rendered client certificates, and refuse a client whose
// certificate comes from another CA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slipway, EXAMPLE_HA } from './helpers/cli.ts';
import { Netns } from './helpers/netns.ts';
import { parseCommand } from '../src/plan/systemd.ts';

const MEMBERS = [
  { name: 'cp1', ip: '10.20.30.11' },
  { name: 'cp2', ip: '10.20.30.12' },
  { name: 'cp3', ip: '10.20.30.13' },
];
const ENDPOINTS = MEMBERS.map((m) => `https://${m.ip}:2379`).join(',');

let work: string;
let out: string;
const spaces: Netns[] = [];
let hub: Netns;
const logs = new Map<string, string>();

before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-etcd-'));
  out = join(work, 'out');
  const r = slipway(['render', '-f', EXAMPLE_HA, '-o', out, '--state', join(work, 'state')]);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  for (const ns of spaces) await ns.close();
  await hub?.close();
  rmSync(work, { recursive: true, force: true });
});

/** The unit's ExecStart, with on-machine paths mapped into this test's folders. */
function etcdArgs(member: string): string[] {
  const unit = readFileSync(join(out, 'machines', member, 'root/etc/systemd/system/etcd.service'), 'utf8');
  const exec = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)?.[1];
  assert.ok(exec, `${member}: no ExecStart`);
  const { binary, args } = parseCommand(exec);
  assert.equal(binary, '/opt/bin/etcd');
  const pki = join(work, member, 'pki');
  cpSync(join(out, 'machines', member, 'root/etc/kubernetes/pki/etcd'), pki, { recursive: true });
  mkdirSync(join(work, member, 'data'), { mode: 0o700 });
  return args.map((a) => a.replace('/etc/kubernetes/pki/etcd', pki).replace(/^--data-dir=.*/, `--data-dir=${join(work, member, 'data')}`));
}

const etcdctl = (cert: string, key: string, args: string[]) =>
  hub.exec('etcdctl', ['--endpoints', ENDPOINTS, '--cacert', join(out, 'cluster/pki/etcd/ca.crt'), '--cert', join(out, cert), '--key', join(out, key), '--dial-timeout=3s', '--command-timeout=5s', ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    timeoutMs: 20_000,
  });

test('three etcd members from the rendered units form a healthy TLS cluster', { timeout: 120_000 }, async () => {
  hub = Netns.create('slipway-etcd');
  hub.addBridge('br0');
  hub.addAddress('br0', '10.20.30.2/24'); // the provisioner's address, where the operator stands
  hub.up('br0');
  for (const [i, m] of MEMBERS.entries()) {
    const ns = Netns.create('slipway-etcd');
    spaces.push(ns);
    hub.addVeth(`v${i}`, 'eth0', ns);
    hub.setMaster(`v${i}`, 'br0');
    ns.addAddress('eth0', `${m.ip}/24`);
    const child = ns.spawn('etcd', etcdArgs(m.name));
    logs.set(m.name, '');
    const add = (d: Buffer) => logs.set(m.name, (logs.get(m.name)! + d.toString()).slice(-8000));
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
  }
  let last = '';
  try {
    await hub.waitFor('a healthy 3-member cluster', async () => {
      const r = await etcdctl('cluster/pki/etcd/healthcheck-client.crt', 'cluster/pki/etcd/healthcheck-client.key', ['endpoint', 'health', '--cluster']);
      last = r.out;
      return r.code === 0 && (r.out.match(/is healthy/g) ?? []).length === 3;
    }, 60_000, 1_000);
  } catch (e) {
    assert.fail(`${(e as Error).message}\nlast etcdctl:\n${last}\n${[...logs].map(([k, v]) => `--- ${k}\n${v}`).join('\n')}`);
  }
  const list = await etcdctl('cluster/pki/etcd/healthcheck-client.crt', 'cluster/pki/etcd/healthcheck-client.key', ['member', 'list', '-w', 'simple']);
  assert.equal(list.code, 0, list.out);
  for (const m of MEMBERS) assert.match(list.out, new RegExp(`started, ${m.name}, https://${m.ip.replace(/\./g, '\\.')}:2380, https://${m.ip.replace(/\./g, '\\.')}:2379`));
});

test('the apiserver\'s etcd client certificate can write and read', { timeout: 30_000 }, async () => {
  const put = await etcdctl('cluster/pki/apiserver-etcd-client.crt', 'cluster/pki/apiserver-etcd-client.key', ['put', '/registry/slipway-test', 'ok']);
  assert.equal(put.code, 0, put.out);
  const get = await etcdctl('cluster/pki/apiserver-etcd-client.crt', 'cluster/pki/apiserver-etcd-client.key', ['get', '/registry/slipway-test', '--print-value-only']);
  assert.equal(get.stdout.trim(), 'ok');
});

test('a client certificate from another CA is refused', { timeout: 30_000 }, async () => {
  const r = await etcdctl('cluster/pki/front-proxy-client.crt', 'cluster/pki/front-proxy-client.key', ['endpoint', 'health']);
  assert.notEqual(r.code, 0, 'etcd accepted a certificate signed by the front-proxy CA');
  assert.match(r.out, /unhealthy|certificate|tls|bad/i);
});
