// Issue 20's additions and proxy, read by their real consumers, on the rack fixture
// (test/fixtures/rack/cluster.yaml):
//
//   - the real Ignition (the installer's) writes each machine's ignition.json into a root
//     holding the node OS's /etc/passwd and /etc/group: the operator's files arrive with
//     their mode and owner (root:adm looked up there), a `source` file's bytes as they are
//     beside the cluster file, an enabled unit linked where its [Install] says, a disabled
//     one not, role and machine selectors honoured, the sysctls per role;
//   - systemd-analyze verify accepts the operator's units and containerd.service (the node
//     OS's) with Slipway's proxy drop-in;
//   - curl, in a namespace this test creates, with the environment of the rendered
//     /etc/profile.d/slipway-proxy.sh: a host outside goes through the proxy, the
//     provisioner, a pod address and a noProxy domain of the file never do.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slipway, ROOT } from './helpers/cli.ts';
import { Netns } from './helpers/netns.ts';

const IGNITION_BIN = '/usr/lib/dracut/modules.d/30ignition/ignition';
const FIXTURE = join(ROOT, 'test/fixtures/rack');
const OS_TREES = '/var/cache/slipway/os-image';

let work: string;
let out: string;
/** the node OS tree (its /etc/group, its containerd.service); the host's Debian as a fallback for /etc */
let osRoot: string | undefined;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-files-'));
  out = join(work, 'out');
  const r = slipway(['render', '-f', join(FIXTURE, 'cluster.yaml'), '-o', out, '--state', join(work, 'state')]);
  assert.equal(r.code, 0, r.stderr);
  osRoot = existsSync(OS_TREES) ? readdirSync(OS_TREES).map((d) => join(OS_TREES, d, 'root')).find((r) => existsSync(join(r, 'lib/systemd/system/containerd.service'))) : undefined;
});
after(() => rmSync(work, { recursive: true, force: true }));

/** The machine's ignition.json applied by the real Ignition to a root with the OS's users and groups. */
function applied(m: string): string {
  const target = join(work, `applied-${m}`);
  if (existsSync(target)) return target;
  mkdirSync(join(target, 'etc'), { recursive: true });
  for (const f of ['passwd', 'group']) copyFileSync(join(osRoot ?? '/', 'etc', f), join(target, 'etc', f));
  const apply = join(work, 'ignition-apply');
  if (!existsSync(apply)) symlinkSync(IGNITION_BIN, apply); // the binary picks its mode from its name
  const r = spawnSync(apply, ['--offline', '--ignore-unsupported', '--root', target, join(out, 'machines', m, 'ignition.json')], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${m}: ${r.stdout}${r.stderr}`);
  return target;
}

const gid = (root: string, group: string) => Number(readFileSync(join(root, 'etc/group'), 'utf8').split('\n').find((l) => l.startsWith(`${group}:`))!.split(':')[2]);

test('Ignition writes the operator\'s files with their mode and owner, on the machines they select', () => {
  const w1 = applied('w1');
  const conf = statSync(join(w1, 'etc/log-shipper.conf'));
  assert.equal(conf.mode & 0o7777, 0o640);
  assert.equal(conf.uid, 0);
  assert.equal(conf.gid, gid(w1, 'adm'), 'group adm, as the node OS numbers it');
  assert.equal(readFileSync(join(w1, 'etc/log-shipper.conf'), 'utf8'), 'target = 10.20.30.5:514\n');
  // `source`: the bytes of the file beside the cluster file
  assert.deepEqual(readFileSync(join(w1, 'usr/local/share/ca-certificates/site.crt')), readFileSync(join(FIXTURE, 'site.crt')));
  assert.equal(statSync(join(w1, 'usr/local/share/ca-certificates/site.crt')).mode & 0o7777, 0o644);
  // enabled: linked into the target its [Install] names
  assert.equal(readlinkSync(join(w1, 'etc/systemd/system/multi-user.target.wants/log-shipper.service')), '/etc/systemd/system/log-shipper.service');
  assert.match(readFileSync(join(w1, 'etc/sysctl.d/95-slipway-site.conf'), 'utf8'), /^net\.core\.somaxconn = 4096\nvm\.max_map_count = 262144\n$/m);
  assert.ok(!existsSync(join(w1, 'etc/systemd/system/site-cleanup.timer')), 'machines: [w2] only');
  // spec.kernelArgs: the line the installer appends to the boot loader's (roles: [worker] adds the console)
  assert.equal(readFileSync(join(w1, 'etc/slipway/kernel-args'), 'utf8').split('\n')[1], 'intel_iommu=on hugepages=16 console=ttyS1,115200n8');

  const cp1 = applied('cp1');
  assert.ok(!existsSync(join(cp1, 'etc/log-shipper.conf')), 'roles: [worker] only');
  assert.ok(existsSync(join(cp1, 'etc/systemd/system/log-shipper.service')), 'a unit without a selector is everywhere');
  assert.doesNotMatch(readFileSync(join(cp1, 'etc/sysctl.d/95-slipway-site.conf'), 'utf8'), /max_map_count/);
  assert.equal(readFileSync(join(cp1, 'etc/slipway/kernel-args'), 'utf8').split('\n')[1], 'intel_iommu=on hugepages=16');

  const w2 = applied('w2');
  assert.ok(existsSync(join(w2, 'etc/systemd/system/site-cleanup.timer')));
  assert.ok(!existsSync(join(w2, 'etc/systemd/system/timers.target.wants')), 'enabled: false: not linked');
  assert.ok(lstatSync(join(w2, 'etc/systemd/system/multi-user.target.wants/log-shipper.service')).isSymbolicLink());
});

test('plan lists the operator\'s files with the entry that asked for them', () => {
  const r = slipway(['plan', '-f', join(FIXTURE, 'cluster.yaml'), '-o', join(work, 'empty'), '--state', join(work, 'state')]);
  assert.equal(r.code, 3, r.stderr); // 3: there are changes
  assert.match(r.stdout, /^\+ machines\/w1\/root\/etc\/log-shipper\.conf \[spec\.files\[1\]\]$/m);
  assert.match(r.stdout, /^\+ machines\/w2\/root\/etc\/systemd\/system\/site-cleanup\.timer \[spec\.units\[1\]\]$/m);
  assert.match(r.stdout, /^\+ machines\/cp1\/root\/etc\/systemd\/system\/multi-user\.target\.wants\/log-shipper\.service \[spec\.units\[0\]\]$/m);
  assert.match(r.stdout, /^\+ machines\/w1\/root\/etc\/sysctl\.d\/95-slipway-site\.conf \[spec\.sysctls\[0\], spec\.sysctls\[1\]\]$/m);
  assert.match(r.stdout, /^\+ machines\/w1\/root\/etc\/slipway\/kernel-args \[spec\.kernelArgs\[0\], spec\.kernelArgs\[1\]\]$/m);
});

test('systemd-analyze verify: the operator\'s units, and containerd.service with the proxy drop-in', (t) => {
  if (!osRoot) return t.skip(`no node OS tree under ${OS_TREES} (its containerd.service): build it with scripts/rehearsal-deps.sh`);
  for (const m of ['w1', 'w2']) {
    const root = join(work, `verify-${m}`);
    cpSync(applied(m), root, { recursive: true, verbatimSymlinks: true });
    cpSync('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    copyFileSync(join(osRoot, 'lib/systemd/system/containerd.service'), join(root, 'usr/lib/systemd/system/containerd.service'));
    // the binaries the units name, present as on the machine
    for (const bin of ['/bin/sh', '/usr/sbin/modprobe', '/usr/bin/containerd']) {
      mkdirSync(join(root, bin, '..'), { recursive: true });
      if (!existsSync(join(root, bin))) copyFileSync('/bin/true', join(root, bin));
    }
    const units = ['/etc/systemd/system/log-shipper.service', 'containerd.service', ...(m === 'w2' ? ['/etc/systemd/system/site-cleanup.timer'] : [])];
    const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, ...units], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `${m}: ${r.stdout}${r.stderr}`);
    assert.deepEqual(`${r.stdout}${r.stderr}`.split('\n').filter((l) => /log-shipper|site-cleanup|containerd|proxy/.test(l)), [], m);
    // the drop-in is the one systemd reads for containerd, with the proxy in its environment
    const show = spawnSync('systemd-analyze', ['cat-config', `--root=${root}`, 'systemd/system/containerd.service.d/10-slipway-proxy.conf'], { encoding: 'utf8' });
    assert.match(`${show.stdout}`, /Environment=.*"HTTPS_PROXY=http:\/\/10\.20\.30\.5:3128"/);
  }
});

test('curl with the node\'s proxy environment: outside through the proxy, the cluster never', async (t) => {
  const ns = Netns.create('slipway-proxy');
  t.after(() => ns.close());
  for (const a of ['10.20.30.5/32', '10.20.30.2/32']) ns.addAddress('lo', a);
  // the proxy and the provisioner: each prints what reached it
  const server = (name: string, host: string, port: number) => {
    const child = ns.spawn(process.execPath, ['-e', `require('node:http').createServer((q, s) => { console.log('${name} ' + q.url); s.end('${name}\\n'); }).listen(${port}, '${host}', () => console.log('listening'))`]);
    let log = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (log += d));
    return () => log;
  };
  const proxy = server('proxy', '10.20.30.5', 3128);
  const provisioner = server('provisioner', '10.20.30.2', 8080);
  await ns.waitFor('both servers', () => proxy().includes('listening') && provisioner().includes('listening'), 10_000);
  const profile = join(out, 'machines/w1/root/etc/profile.d/slipway-proxy.sh');
  const curl = (url: string) => ns.exec('sh', ['-c', `. "$0"; exec curl -sS -m 3 "$1"`, profile, url], { timeoutMs: 10_000 });

  const outside = await curl('http://203.0.113.7/outside');
  assert.equal(outside.stdout, 'proxy\n', outside.out);
  assert.match(proxy(), /^proxy http:\/\/203\.0\.113\.7\/outside$/m);
  const direct = await curl('http://10.20.30.2:8080/assets/bin/SHA256SUMS');
  assert.equal(direct.stdout, 'provisioner\n', direct.out);
  // not through the proxy: they fail to connect or resolve, and the proxy never hears of them
  for (const url of ['http://10.244.1.5/pod', 'http://10.96.0.1/svc', 'http://repo.example.internal/x', 'http://k8s-api.lab.local:6443/'])
    assert.notEqual((await curl(url)).stdout, 'proxy\n', url);
  assert.deepEqual(proxy().split('\n').filter((l) => l.startsWith('proxy ')), ['proxy http://203.0.113.7/outside']);
});
