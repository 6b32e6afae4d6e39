// `slipway render` output checked by the programs that consume it: ignition-validate and
// the real Ignition binary (the tree it writes must equal root/), systemd-analyze verify,
// kubectl on every kubeconfig; plus least privilege, byte-identical re-renders and plan.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, symlinkSync, copyFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { slipway, EXAMPLE_HA } from './helpers/cli.ts';

const IGNITION_BIN = '/usr/lib/dracut/modules.d/30ignition/ignition';
const MACHINES = ['cp1', 'cp2', 'cp3', 'w1', 'w2'];

let work: string;
const rendered: Record<string, string> = {}; // version label → DIR

/** Walk a directory into path → {mode, contents | link}. */
function snapshot(root: string): Map<string, { mode: number; data?: string; link?: string }> {
  const out = new Map<string, { mode: number; data?: string; link?: string }>();
  const walk = (rel: string) => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      const r = `${rel}/${e.name}`;
      const abs = join(root, r);
      if (e.isDirectory()) walk(r);
      else if (e.isSymbolicLink()) out.set(r, { mode: 0o777, link: readlinkSync(abs) });
      else out.set(r, { mode: lstatSync(abs).mode & 0o7777, data: readFileSync(abs, 'utf8') });
    }
  };
  walk('');
  return out;
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, ...opts });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-render-'));
  const versions: [string, string][] = [['newest', ''], ['v1.20', 'v1.20.2']];
  for (const [label, version] of versions) {
    const file = join(work, `${label}.yaml`);
    let text = readFileSync(EXAMPLE_HA, 'utf8');
    if (version) text = text.replace(/kubernetesVersion: v\S+/, `kubernetesVersion: ${version}`);
    writeFileSync(file, text);
    const dir = join(work, `out-${label}`);
    const r = slipway(['render', '-f', file, '-o', dir, '--state', join(work, `state-${label}`)]);
    assert.equal(r.code, 0, r.stderr);
    rendered[label] = dir;
  }
  // cni: bridge (its networkd routes and CNI config are proved in cni.bridge.test.ts)
  const bridge = join(work, 'bridge.yaml');
  writeFileSync(bridge, readFileSync(EXAMPLE_HA, 'utf8').replace(/^ {4}cni: flannel$/m, '    cni: bridge'));
  const r = slipway(['render', '-f', bridge, '-o', join(work, 'out-bridge'), '--state', join(work, 'state-bridge')]);
  assert.equal(r.code, 0, r.stderr);
  rendered.bridge = join(work, 'out-bridge');
});
after(() => rmSync(work, { recursive: true, force: true }));

test('the output layout is the documented one', () => {
  const dir = rendered.newest!;
  for (const f of ['ca.crt', 'ca.key', 'apiserver.crt', 'apiserver.key', 'apiserver-kubelet-client.crt', 'apiserver-kubelet-client.key', 'front-proxy-ca.crt', 'front-proxy-ca.key', 'front-proxy-client.crt', 'front-proxy-client.key', 'apiserver-etcd-client.crt', 'apiserver-etcd-client.key', 'sa.key', 'sa.pub', 'etcd/ca.crt', 'etcd/ca.key', 'etcd/healthcheck-client.crt', 'etcd/healthcheck-client.key'])
    assert.ok(existsSync(join(dir, 'cluster/pki', f)), `cluster/pki/${f}`);
  assert.ok(existsSync(join(dir, 'cluster/admin.conf')));
  for (const m of MACHINES) {
    for (const f of ['root/etc/systemd/system/kubelet.service', 'ignition.json', 'cloud-config.yml']) assert.ok(existsSync(join(dir, 'machines', m, f)), `${m}/${f}`);
  }
  for (const f of ['dhcpd.conf', 'kea-dhcp4.json', 'dnsmasq.conf', 'pxelinux.cfg/01-52-54-00-20-30-11', 'ipxe/cp1.ipxe']) assert.ok(existsSync(join(dir, 'pxe', f)), `pxe/${f}`);
});

for (const label of ['newest', 'v1.20']) {
  test(`${label}: ignition-validate accepts every ignition.json, and the real Ignition writes exactly root/`, () => {
    const dir = rendered[label]!;
    const apply = join(work, 'ignition-apply');
    if (!existsSync(apply)) symlinkSync(IGNITION_BIN, apply); // the binary picks its mode from its name
    for (const m of MACHINES) {
      const cfg = join(dir, 'machines', m, 'ignition.json');
      const v = run('ignition-validate', [cfg]);
      assert.equal(v.code, 0, `${m}: ${v.out}`);
      const target = join(work, `applied-${label}-${m}`);
      mkdirSync(target);
      const a = run(apply, ['--offline', '--ignore-unsupported', '--root', target, cfg]);
      assert.equal(a.code, 0, `${m}: ${a.out}`);
      assert.deepEqual(snapshot(target), snapshot(join(dir, 'machines', m, 'root')), `${m}: Ignition's tree differs from root/`);
    }
  });
}

test('cloud-config carries the same files and enables the same units', () => {
  const dir = rendered.newest!;
  for (const m of MACHINES) {
    const text = readFileSync(join(dir, 'machines', m, 'cloud-config.yml'), 'utf8');
    assert.ok(text.startsWith('#cloud-config\n'));
    const doc = parse(text) as { hostname: string; write_files: { path: string; permissions: string; content: string }[]; coreos: { units: { name: string; enable: boolean }[] } };
    assert.equal(doc.hostname, m);
    const root = snapshot(join(dir, 'machines', m, 'root'));
    const files = [...root].filter(([, f]) => f.data !== undefined);
    assert.equal(doc.write_files.length, files.length);
    for (const wf of doc.write_files) {
      const f = root.get(wf.path)!;
      assert.ok(f, wf.path);
      assert.equal(Buffer.from(wf.content, 'base64').toString('utf8'), f.data, wf.path);
      assert.equal(Number.parseInt(wf.permissions, 8), f.mode, wf.path);
    }
    const wants = [...root.keys()].filter((p) => /^\/etc\/systemd\/system\/[^/]+\.wants\//.test(p)).map((p) => p.split('/').pop()).sort();
    assert.deepEqual(doc.coreos.units.map((u) => u.name).sort(), wants);
  }
});

test('systemd-analyze verify accepts every unit', (t) => {
  const probe = run('systemd-analyze', ['--version']);
  if (probe.code !== 0) return t.skip('systemd-analyze is not available');
  for (const label of ['newest', 'v1.20', 'bridge']) {
    for (const m of MACHINES) {
      // Verify inside a copy of the machine's tree with the binaries the units name
      // standing in place (the real ones arrive from the provisioner at boot).
      const root = join(work, `verify-${label}-${m}`);
      cpSync(join(rendered[label]!, 'machines', m, 'root'), root, { recursive: true, verbatimSymlinks: true });
      // systemd's own units (sysinit.target, network-online.target, ...) as on a real host
      cpSync('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
      const units = readdirSync(join(root, 'etc/systemd/system')).filter((f) => f.endsWith('.service'));
      for (const u of units) {
        const text = readFileSync(join(root, 'etc/systemd/system', u), 'utf8');
        for (const [, bin] of text.matchAll(/^Exec\w*=(?:[-@!+:]*)(\/\S+)/gm)) {
          const p = join(root, bin!);
          if (!existsSync(p)) {
            mkdirSync(join(p, '..'), { recursive: true });
            copyFileSync('/bin/true', p);
            chmodSync(p, 0o755);
          }
        }
      }
      const r = run('systemd-analyze', ['verify', `--root=${root}`, ...units.map((u) => `/etc/systemd/system/${u}`)]);
      assert.equal(r.code, 0, `${label} ${m}:\n${r.out}`);
      assert.deepEqual(r.out.split('\n').filter((l) => units.some((u) => l.includes(u))), [], `${label} ${m}:\n${r.out}`);
    }
  }
});

test('kubectl reads every kubeconfig and finds the right server', () => {
  const dir = rendered.newest!;
  const check = (file: string, server: string) => {
    const r = run('kubectl', ['config', 'view', '--kubeconfig', file, '--raw', '-o', 'jsonpath={.clusters[0].cluster.server}']);
    assert.equal(r.code, 0, `${file}: ${r.out}`);
    assert.equal(r.out.trim(), server, file);
  };
  check(join(dir, 'cluster/admin.conf'), 'https://10.20.30.10:6443');
  for (const m of MACHINES) {
    const etc = join(dir, 'machines', m, 'root/etc/kubernetes');
    check(join(etc, 'bootstrap-kubelet.conf'), 'https://k8s-api.lab.local:6443');
    check(join(etc, 'kube-proxy.conf'), 'https://k8s-api.lab.local:6443');
    if (m.startsWith('cp')) for (const c of ['admin.conf', 'controller-manager.conf', 'scheduler.conf']) check(join(etc, c), `https://10.20.30.1${m.slice(2)}:6443`);
  }
});

test('least privilege: who holds which private key', () => {
  const dir = rendered.newest!;
  const keysOf = (m: string) => [...snapshot(join(dir, 'machines', m, 'root')).entries()].filter(([p, f]) => f.data?.includes('PRIVATE KEY') && p.endsWith('.key'));
  for (const w of ['w1', 'w2']) assert.deepEqual(keysOf(w).map(([p]) => p), [], `${w} holds no private key file`);
  const cp1 = new Map(keysOf('cp1'));
  for (const k of ['/etc/kubernetes/pki/ca.key', '/etc/kubernetes/pki/sa.key', '/etc/kubernetes/pki/etcd/server.key', '/etc/kubernetes/pki/etcd/peer.key']) assert.ok(cp1.has(k), k);
  assert.ok(!cp1.has('/etc/kubernetes/pki/etcd/ca.key'), 'no machine holds the etcd CA key');
  assert.ok(!cp1.has('/etc/kubernetes/pki/front-proxy-ca.key'), 'no machine holds the front-proxy CA key');
  // each etcd member holds only its own server/peer keys
  const server = (m: string) => readFileSync(join(dir, 'machines', m, 'root/etc/kubernetes/pki/etcd/server.key'), 'utf8');
  assert.equal(new Set(['cp1', 'cp2', 'cp3'].map(server)).size, 3);
  // every private key 0600 on disk and in ignition.json
  for (const m of MACHINES) {
    for (const [p, f] of snapshot(join(dir, 'machines', m, 'root'))) if (f.data?.includes('PRIVATE KEY') || /token|encryption/.test(p)) assert.equal(f.mode, 0o600, `${m}:${p}`);
    const ign = JSON.parse(readFileSync(join(dir, 'machines', m, 'ignition.json'), 'utf8')) as { storage: { files: { path: string; mode: number; contents: { source: string } }[] } };
    for (const f of ign.storage.files) {
      const data = Buffer.from(f.contents.source.replace(/^data:;base64,/, ''), 'base64').toString();
      if (data.includes('PRIVATE KEY')) assert.equal(f.mode, 0o600, `${m}: ${f.path} in ignition.json`);
    }
  }
  // worker kubeconfigs carry no admin credential
  const w1 = snapshot(join(dir, 'machines/w1/root'));
  assert.ok(!w1.has('/etc/kubernetes/admin.conf'));
});

test('re-rendering an unchanged file is byte-identical, and plan then reports no change', () => {
  const file = join(work, 'newest.yaml');
  const again = join(work, 'again');
  const r = slipway(['render', '-f', file, '-o', again, '--state', join(work, 'state-newest')]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(snapshot(again), snapshot(rendered.newest!));
  const p = slipway(['plan', '-f', file, '-o', again, '--state', join(work, 'state-newest')]);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /no changes/);
});

test('plan lists adds and changes for a new worker, masks secrets, and writes nothing', () => {
  const file = join(work, 'grown.yaml');
  writeFileSync(file, readFileSync(join(work, 'newest.yaml'), 'utf8') + '    - name: w3\n      mac: "52:54:00:20:30:23"\n      ip: 10.20.30.23/24\n      roles: [worker]\n');
  const dir = rendered.newest!;
  const before = snapshot(dir);
  const p = slipway(['plan', '-f', file, '-o', dir, '--state', join(work, 'state-newest')]);
  assert.equal(p.code, 3, `changes pending: exit 3; ${p.stderr}`);
  assert.match(p.stdout, /^\+ machines\/w3\/ignition\.json \[secret\]$/m);
  assert.match(p.stdout, /^\+ pxe\/pxelinux\.cfg\/01-52-54-00-20-30-23$/m);
  assert.match(p.stdout, /^~ pxe\/dhcpd\.conf \(contents\)$/m);
  assert.doesNotMatch(p.stdout, /PRIVATE KEY|BEGIN CERTIFICATE/);
  assert.deepEqual(snapshot(dir), before, 'plan changed the output directory');
  const state = snapshot(join(work, 'state-newest'));
  assert.ok(![...state.keys()].some((k) => k.includes('w3')), 'plan created no state for w3');
  assert.doesNotMatch(state.get('/tokens.json')!.data!, /"w3"/, 'plan stored no token for w3');
});
