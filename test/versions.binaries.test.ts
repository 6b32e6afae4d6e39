// The v1.20 profile of src/catalog/versions.ts and what Slipway renders for v1.20, checked
// by the real v1.20.2 binaries, built offline from Debian's Kubernetes source by
// scripts/build-kubernetes.sh (cached under /var/cache/slipway/kubernetes/v1.20.2/):
// - every flag of every rendered kube-* unit is one the binary documents in --help, and
//   the binary parses the whole rendered command line (values included);
// - the rendered KubeletConfiguration, KubeSchedulerConfiguration and
//   KubeProxyConfiguration decode strictly and validate with the components' own code,
//   and kube-scheduler / kube-proxy load them (--write-config-to);
// - each table entry (config API groups, runtime flags, insecure ports, pause/CoreDNS/etcd
//   pairing) matches the binaries or the source they were built from;
// - one control-plane machine (etcd, kube-apiserver, controller-manager, scheduler, all
//   with their rendered flags) comes up in a network namespace holding cp1's address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { slipway, ROOT, EXAMPLE_HA } from './helpers/cli.ts';
import { parseCommand } from '../src/plan/systemd.ts';
import { versionProfile } from '../src/catalog/versions.ts';
import { checkWindowTokens, checkReprovisionWindow } from './helpers/token-checks.ts';
import { Lab as RehearsalLab } from '../src/rehearse/lab/lab.ts';
import { parseClusterFile } from '../src/spec/parse.ts';

const VERSION = 'v1.20.2';
const CACHE = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes`;
const OUT = `${CACHE}/${VERSION}`;
const BIN = `${OUT}/bin`;
const CONFIGCHECK = `${OUT}/tools/slipway-configcheck`;
/** The source tree the binaries were built from (kept by the build script). */
const SRC = `${CACHE}/work/${VERSION}/gopath/src/k8s.io/kubernetes`;
const COMPONENTS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy'] as const;
type Component = (typeof COMPONENTS)[number];

const cached = existsSync(`${OUT}/.complete`);
const SKIP = !cached && !process.env.SLIPWAY_BUILD_K8S
  ? `no ${VERSION} binaries in ${BIN}: run scripts/build-kubernetes.sh (about 5 minutes cold), or set SLIPWAY_BUILD_K8S=1 to build them from this test`
  : false;

const profile = versionProfile(VERSION);
let work: string;
let out: string;
const help = new Map<Component, string>();

function run(cmd: string, args: string[], timeout = 60_000) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}` };
}

const machineRoot = (m: string) => join(out, 'machines', m, 'root');

/** The rendered unit's ExecStart as binary + args (the writer's own parser). */
function execStart(machine: string, unit: string): { binary: string; args: string[] } {
  const text = readFileSync(join(machineRoot(machine), 'etc/systemd/system', `${unit}.service`), 'utf8');
  const exec = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(text)?.[1];
  assert.ok(exec, `${machine}/${unit}: no ExecStart`);
  return parseCommand(exec);
}

const flagName = (arg: string) => /^--([a-z0-9-]+)(=|$)/.exec(arg)?.[1];

/** Every long flag a binary's --help documents (hidden and removed flags are not listed). */
function documentedFlags(c: Component): Set<string> {
  return new Set([...help.get(c)!.matchAll(/^\s+(?:-[a-zA-Z], )?--([a-z0-9-]+)/gm)].map((m) => m[1]!));
}

/** On-machine paths → this test's copy of the machine's rendered root. */
function localize(machine: string, s: string): string {
  return s
    .replaceAll('/etc/kubernetes/', `${machineRoot(machine)}/etc/kubernetes/`)
    .replaceAll('/var/log/kubernetes/', `${work}/${machine}/log/`)
    .replaceAll('/var/lib/kubelet/', `${work}/${machine}/kubelet/`);
}

before(() => {
  if (SKIP) return;
  if (!cached) {
    // SLIPWAY_BUILD_K8S is set: build here (CI normally runs the script before npm test).
    const r = spawnSync('bash', [join(ROOT, 'scripts/build-kubernetes.sh'), VERSION], { encoding: 'utf8', timeout: 40 * 60_000, stdio: ['ignore', 'pipe', 'inherit'] });
    assert.equal(r.status, 0, 'scripts/build-kubernetes.sh failed');
    assert.equal(r.stdout.trim().split('\n').pop(), BIN);
  }
  work = mkdtempSync(join(tmpdir(), 'slipway-k8s120-'));
  const file = join(work, 'lab.yaml');
  writeFileSync(file, readFileSync(EXAMPLE_HA, 'utf8').replace(/kubernetesVersion: v\S+/, `kubernetesVersion: ${VERSION}`));
  out = join(work, 'out');
  const r = slipway(['render', '-f', file, '-o', out, '--state', join(work, 'state')]);
  assert.equal(r.code, 0, r.stderr);
  for (const c of COMPONENTS) {
    const h = run(join(BIN, c), ['--help']);
    assert.equal(h.code, 0, `${c} --help: ${h.out}`);
    help.set(c, h.out);
  }
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the cached binaries are v1.20.2, and the build left its checksums and build info', { skip: SKIP }, () => {
  for (const c of [...COMPONENTS, 'kubectl']) {
    const r = c === 'kubectl' ? run(join(BIN, c), ['version', '--client', '--short']) : run(join(BIN, c), ['--version']);
    assert.equal(r.code, 0, `${c}: ${r.out}`);
    assert.match(r.out, /v1\.20\.2\b/, `${c} reports ${r.out.trim()}`);
  }
  const sums = spawnSync('sha256sum', ['--quiet', '-c', 'SHA256SUMS'], { cwd: BIN, encoding: 'utf8', timeout: 120_000 });
  assert.equal(sums.status, 0, `${sums.stdout}${sums.stderr}`);
  const info = readFileSync(`${OUT}/BUILDINFO`, 'utf8');
  assert.match(info, /^version=v1\.20\.2$/m);
  assert.match(info, /^git_commit=[0-9a-f]{40}$/m);
});

// Machines whose units cover every kube-* unit: a control-plane machine and a worker.
const UNITS: [string, Component][] = [
  ['cp1', 'kube-apiserver'], ['cp1', 'kube-controller-manager'], ['cp1', 'kube-scheduler'], ['cp1', 'kubelet'], ['cp1', 'kube-proxy'],
  ['w1', 'kubelet'], ['w1', 'kube-proxy'],
];

test('every flag Slipway renders for v1.20 is documented in that binary\'s --help', { skip: SKIP }, () => {
  // Anything rendered but missing from --help (hidden, removed) fails here.
  const missing: string[] = [];
  for (const [m, c] of UNITS) {
    const { binary, args } = execStart(m, c);
    assert.equal(binary, `/opt/bin/${c}`);
    const documented = documentedFlags(c);
    assert.ok(documented.size > 20, `${c} --help lists only ${documented.size} flags: parser out of step with the help format`);
    for (const a of args) {
      const f = flagName(a);
      assert.ok(f, `${m}/${c}: argument ${a} is not a --flag`);
      if (!documented.has(f)) missing.push(`${m}/${c}: --${f}`);
    }
  }
  assert.deepEqual(missing, [], `flags the v1.20 binaries do not document:\n${missing.join('\n')}`);
});

test('each binary parses its whole rendered v1.20 command line', { skip: SKIP }, () => {
  // --version is acted on right after flag parsing: an unknown flag or a value of the wrong
  // type (an IP, a port, a list) fails here, before anything starts.
  for (const [m, c] of UNITS) {
    const { args } = execStart(m, c);
    const r = run(join(BIN, c), [...args, '--version']);
    assert.equal(r.code, 0, `${m}/${c} rejects its rendered flags:\n${r.out}`);
    assert.match(r.stdout, /Kubernetes v1\.20\.2/);
  }
});

test('no rendered v1.20 flag is a deprecated no-op', { skip: SKIP }, () => {
  const noops: string[] = [];
  for (const [m, c] of UNITS) {
    const r = run(join(BIN, c), [...execStart(m, c).args, '--version']);
    for (const line of r.stderr.split('\n')) if (/has no effect/.test(line)) noops.push(`${m}/${c}: ${line.trim()}`);
  }
  assert.deepEqual(noops, []);
});

test('the rendered component configs decode strictly and validate with the v1.20 code', { skip: SKIP }, () => {
  const files: [Component, string][] = [
    ['kubelet', 'cp1/root/var/lib/kubelet/config.yaml'],
    ['kubelet', 'w1/root/var/lib/kubelet/config.yaml'],
    ['kube-proxy', 'cp1/root/var/lib/kube-proxy/config.yaml'],
    ['kube-proxy', 'w1/root/var/lib/kube-proxy/config.yaml'],
    ['kube-scheduler', 'cp1/root/etc/kubernetes/kube-scheduler.yaml'],
  ];
  for (const [c, rel] of files) {
    const r = run(CONFIGCHECK, [c, join(out, 'machines', rel)]);
    assert.equal(r.code, 0, `${rel}: ${r.out}`);
    assert.match(r.stdout, /^ok /);
  }
  // The checker is strict: an unknown field must fail it (else this test proves nothing).
  const bad = join(work, 'bad-kubelet.yaml');
  writeFileSync(bad, readFileSync(join(machineRoot('w1'), 'var/lib/kubelet/config.yaml'), 'utf8') + 'notAField: true\n');
  const r = run(CONFIGCHECK, ['kubelet', bad]);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /unknown field/);
});

test('kube-scheduler v1.20 loads the rendered config and flags (--write-config-to)', { skip: SKIP }, () => {
  const conf = join(work, 'kube-scheduler.yaml');
  writeFileSync(conf, localize('cp1', readFileSync(join(machineRoot('cp1'), 'etc/kubernetes/kube-scheduler.yaml'), 'utf8')));
  const written = join(work, 'scheduler-effective.yaml');
  const args = execStart('cp1', 'kube-scheduler').args.map((a) => (a.startsWith('--config=') ? `--config=${conf}` : localize('cp1', a)));
  // --secure-port=0: load everything, but bind nothing on this host.
  const r = run(join(BIN, 'kube-scheduler'), [...args, '--secure-port=0', `--write-config-to=${written}`]);
  assert.equal(r.code, 0, r.out);
  const eff = parse(readFileSync(written, 'utf8'));
  assert.equal(eff.apiVersion, profile.schedulerConfigAPI);
  assert.equal(eff.clientConnection.kubeconfig, join(machineRoot('cp1'), 'etc/kubernetes/scheduler.conf'));
  assert.equal(eff.leaderElection.leaderElect, true);
});

test('kube-proxy v1.20 loads the rendered config without falling back to lenient decoding', { skip: SKIP }, () => {
  for (const m of ['cp1', 'w1']) {
    const conf = join(work, `${m}-kube-proxy.yaml`);
    writeFileSync(conf, localize(m, readFileSync(join(machineRoot(m), 'var/lib/kube-proxy/config.yaml'), 'utf8')));
    const written = join(work, `${m}-kube-proxy-effective.yaml`);
    const r = run(join(BIN, 'kube-proxy'), [`--config=${conf}`, `--write-config-to=${written}`]);
    assert.equal(r.code, 0, r.out);
    assert.doesNotMatch(r.out, /lenient decoding|strict decod/i, r.out);
    const eff = parse(readFileSync(written, 'utf8'));
    assert.equal(eff.apiVersion, profile.kubeProxyConfigAPI);
    assert.equal(eff.mode, 'iptables');
    assert.equal(eff.clusterCIDR, '10.244.0.0/16');
    assert.equal(eff.hostnameOverride, m);
  }
});

test('the v1.20 profile in src/catalog/versions.ts matches the binaries and their source', { skip: SKIP }, () => {
  // Config API groups: the table's is the newest one each v1.20 component decodes.
  const newest = (c: Component, kind: string, candidates: string[]) => {
    for (const apiVersion of candidates) {
      const f = join(work, `probe-${c}.yaml`);
      writeFileSync(f, `apiVersion: ${apiVersion}\nkind: ${kind}\n`);
      if (run(CONFIGCHECK, [c, f]).code === 0) return apiVersion;
    }
    return undefined;
  };
  assert.equal(newest('kube-scheduler', 'KubeSchedulerConfiguration', ['v1', 'v1beta3', 'v1beta2', 'v1beta1', 'v1alpha2', 'v1alpha1'].map((v) => `kubescheduler.config.k8s.io/${v}`)), profile.schedulerConfigAPI);
  assert.equal(newest('kube-proxy', 'KubeProxyConfiguration', ['v1', 'v1beta1', 'v1alpha1'].map((v) => `kubeproxy.config.k8s.io/${v}`)), profile.kubeProxyConfigAPI);
  assert.equal(newest('kubelet', 'KubeletConfiguration', ['v1', 'v1beta1'].map((v) => `kubelet.config.k8s.io/${v}`)), profile.kubeletConfigAPI);

  // Container runtime by flags: v1.20's kubelet has --container-runtime with 'remote'.
  assert.equal(profile.kubeletRuntimeFlags, 'remote+endpoint');
  const kubelet = documentedFlags('kubelet');
  assert.ok(kubelet.has('container-runtime') && kubelet.has('container-runtime-endpoint'));
  assert.match(help.get('kubelet')!, /--container-runtime string\s+The container runtime to use\. Possible values: 'docker', 'remote'/);
  assert.ok(!/^\s+--container-runtime-endpoint/m.test(readFileSync(join(machineRoot('cp1'), 'var/lib/kubelet/config.yaml'), 'utf8')));

  // Insecure ports: controller-manager and scheduler still serve plain HTTP by default
  // (10252/10251) unless --port=0.
  assert.equal(profile.insecurePortFlag, true);
  assert.match(help.get('kube-controller-manager')!, /--port int\s+The port on which to serve unsecured.*\(default 10252\)/);
  assert.match(help.get('kube-scheduler')!, /--port int\s+DEPRECATED: the port on which to serve HTTP insecurely.*\(default 10251\)/);

  // pause: the v1.20 kubelet's own default sandbox image has the table's tag.
  const pause = /--pod-infra-container-image string.*\(default "([^"]+)"\)/.exec(help.get('kubelet')!)?.[1];
  assert.ok(pause, 'kubelet --help names no default pause image');
  assert.equal(pause.split(':')[1], profile.pauseImage.split(':')[1]);
  assert.equal(pause.split('/').pop()!.split(':')[0], 'pause');

  // CoreDNS and etcd: kubeadm v1.20's pairing, from the source the binaries were built from.
  const constants = readFileSync(join(SRC, 'cmd/kubeadm/app/constants/constants.go'), 'utf8');
  // kubeadm v1.20 pulls <repository>/<CoreDNSImageName>:<CoreDNSVersion>, i.e. coredns:1.7.0
  // (the coredns/coredns path and "v" tags came with 1.21); registry.k8s.io serves the
  // same paths as k8s.gcr.io.
  const corednsName = /CoreDNSImageName = "([^"]+)"/.exec(constants)?.[1];
  const corednsTag = /CoreDNSVersion = "([^"]+)"/.exec(constants)?.[1];
  assert.equal(profile.coreDNSImage.replace(/^[^/]+\//, ''), `${corednsName}:${corednsTag}`);
  assert.equal(/DefaultEtcdVersion = "([^"-]+)/.exec(constants)?.[1], profile.etcdVersion);
  assert.equal(/PauseVersion = "([^"]+)"/.exec(readFileSync(join(SRC, 'cmd/kubeadm/app/constants/constants_unix.go'), 'utf8'))?.[1], profile.pauseImage.split(':')[1]);
});

/** `ss -Hltn` inside the control-plane namespace, once all four daemons run. */
let listening: string | undefined;

test('one v1.20 control-plane machine comes up from its rendered units (netns with cp1\'s address)', { skip: SKIP || (!existsSync('/usr/bin/etcd') && 'etcd-server is not installed'), timeout: 240_000 }, async () => {
  // cp1 on a lab bridge (the rehearsal's lab), so the real `slipway serve` in the lab's hub
  // can reach its apiserver for the reprovision check at the end
  const spec = parseClusterFile(readFileSync(join(work, 'lab.yaml'), 'utf8'), 'lab.yaml').spec!;
  const net = RehearsalLab.create(spec, 'slipway-k8s-lab', 'slipway-k8s');
  const logs = new Map<string, string>();
  try {
    const ns = net.attach('cp1', spec.machines[0]!.mac);
    ns.addAddress('eth0', '10.20.30.11/24');
    // the VIP, as keepalived would hold it on cp1 (no haproxy here: serve's API client is refused there and asks cp1's own apiserver)
    ns.addAddress('eth0', `${spec.controlPlane.vip}/32`);
    ns.up('lo');
    const start = (name: string, cmd: string, args: string[]) => {
      logs.set(name, '');
      const child = ns.spawn(cmd, args);
      const add = (d: Buffer) => logs.set(name, (logs.get(name)! + d.toString()).slice(-6000));
      child.stdout?.on('data', add);
      child.stderr?.on('data', add);
    };
    const dump = () => [...logs].map(([k, v]) => `--- ${k}\n${v}`).join('\n');
    mkdirSync(join(work, 'cp1/log'), { recursive: true });
    mkdirSync(join(work, 'cp1/etcd'), { mode: 0o700, recursive: true });

    // etcd from its rendered unit, as a one-member cluster (cp2/cp3 are not here).
    const etcd = execStart('cp1', 'etcd').args.map((a) => {
      if (a.startsWith('--initial-cluster=')) return '--initial-cluster=cp1=https://10.20.30.11:2380';
      if (a.startsWith('--data-dir=')) return `--data-dir=${join(work, 'cp1/etcd')}`;
      return localize('cp1', a);
    });
    start('etcd', 'etcd', etcd);

    const kubectl = (args: string[]) => ns.exec(join(BIN, 'kubectl'), [`--kubeconfig=${join(machineRoot('cp1'), 'etc/kubernetes/admin.conf')}`, '--request-timeout=5s', ...args], { timeoutMs: 20_000 });
    start('kube-apiserver', join(BIN, 'kube-apiserver'), execStart('cp1', 'kube-apiserver').args.map((a) => localize('cp1', a)));
    let last = '';
    try {
      await ns.waitFor('kube-apiserver /readyz', async () => {
        const r = await kubectl(['get', '--raw', '/readyz']);
        last = r.out;
        return r.code === 0 && r.stdout.trim() === 'ok';
      }, 120_000, 2_000);
    } catch (e) {
      assert.fail(`${(e as Error).message}\nlast: ${last}\n${dump()}`);
    }
    start('kube-controller-manager', join(BIN, 'kube-controller-manager'), execStart('cp1', 'kube-controller-manager').args.map((a) => localize('cp1', a)));
    const conf = join(work, 'cp1-kube-scheduler.yaml');
    writeFileSync(conf, localize('cp1', readFileSync(join(machineRoot('cp1'), 'etc/kubernetes/kube-scheduler.yaml'), 'utf8')));
    start('kube-scheduler', join(BIN, 'kube-scheduler'), execStart('cp1', 'kube-scheduler').args.map((a) => (a.startsWith('--config=') ? `--config=${conf}` : localize('cp1', a))));

    const ns1 = await kubectl(['create', 'namespace', 'slipway-probe']);
    assert.equal(ns1.code, 0, `${ns1.out}\n${dump()}`);
    const lab = await kubectl(['label', 'namespace', 'slipway-probe', 'slipway.dev/probe=yes']);
    assert.equal(lab.code, 0, lab.out);
    const got = await kubectl(['get', 'namespace', 'slipway-probe', '-o', 'json']);
    assert.equal(got.code, 0, got.out);
    assert.equal(JSON.parse(got.stdout).metadata.labels['slipway.dev/probe'], 'yes');
    // The apiserver's YAML encoder walks maps (labels) with json-iterator + reflect2: with
    // the vendored reflect2 1.0.1 under Go >= 1.18 this request kills the handler (see the
    // "vendor fix" in scripts/build-kubernetes.sh).
    const admin = parse(readFileSync(join(machineRoot('cp1'), 'etc/kubernetes/admin.conf'), 'utf8'));
    const pem = (name: string, b64: string) => {
      const f = join(work, name);
      writeFileSync(f, Buffer.from(b64, 'base64'), { mode: 0o600 });
      return f;
    };
    const yaml = await ns.exec('curl', ['-sS', '--max-time', '10', '-H', 'Accept: application/yaml',
      '--cacert', pem('ca.crt', admin.clusters[0].cluster['certificate-authority-data']),
      '--cert', pem('admin.crt', admin.users[0].user['client-certificate-data']),
      '--key', pem('admin.key', admin.users[0].user['client-key-data']),
      'https://10.20.30.11:6443/api/v1/namespaces/slipway-probe'], { timeoutMs: 20_000 });
    assert.equal(yaml.code, 0, `${yaml.out}\n${dump()}`);
    assert.equal(parse(yaml.stdout).metadata.labels['slipway.dev/probe'], 'yes', yaml.out);

    // Both leaders elected through the apiserver, with their rendered kubeconfigs.
    for (const lease of ['kube-controller-manager', 'kube-scheduler']) {
      try {
        await ns.waitFor(`${lease} leader lease`, async () => {
          const r = await kubectl(['-n', 'kube-system', 'get', 'lease', lease, '-o', 'jsonpath={.spec.holderIdentity}']);
          last = r.out;
          return r.code === 0 && r.stdout.trim() !== '';
        }, 90_000, 2_000);
      } catch (e) {
        assert.fail(`${(e as Error).message}\nlast: ${last}\n${dump()}`);
      }
    }
    // The secure ports serve on loopback; the insecure ones are checked by the next test.
    const ports = await ns.exec('ss', ['-Hltn']);
    listening = ports.stdout;
    assert.match(ports.stdout, /127\.0\.0\.1:10257\b/, ports.stdout);
    assert.match(ports.stdout, /127\.0\.0\.1:10259\b/, ports.stdout);
    // The controller-manager's ServiceAccount controller has worked through the API.
    await ns.waitFor('default ServiceAccount in slipway-probe', async () => (await kubectl(['-n', 'slipway-probe', 'get', 'serviceaccount', 'default'])).code === 0, 60_000, 2_000);
    // issue 17: bootstrap tokens per provisioning window, checked by this apiserver and its tokencleaner
    console.log(`# ${await checkWindowTokens({ ns, kubectl: join(BIN, 'kubectl'), adminConf: join(machineRoot('cp1'), 'etc/kubernetes/admin.conf'), bootstrapAddons: join(machineRoot('cp1'), 'etc/kubernetes/addons/10-bootstrap.yaml'), specFile: join(work, 'lab.yaml'), stateDir: join(work, 'state'), server: 'https://10.20.30.11:6443', work })}`);
    // and serve's reprovision (the console, the API, `slipway provision`) opens one through this apiserver
    console.log(`# ${await checkReprovisionWindow({ lab: net, cp1: ns, kubectl: join(BIN, 'kubectl'), adminConf: join(machineRoot('cp1'), 'etc/kubernetes/admin.conf'), specFile: join(work, 'lab.yaml'), stateDir: join(work, 'state'), server: 'https://10.20.30.11:6443', work })}`);
  } finally {
    await net.close();
  }
});

test('the v1.20 controller-manager and scheduler serve no insecure (plain HTTP) port beyond loopback', { skip: SKIP }, () => {
  // kube-scheduler v1.20 run with --config ignores --port=0 and its v1beta1 config rejects
  // port 0, so Slipway binds that port to 127.0.0.1 (control-plane.ts); nothing plain-HTTP
  // may listen on the machine's own address or all addresses.
  assert.ok(listening, 'the control-plane test did not get as far as listing the sockets');
  assert.doesNotMatch(listening, /:10252\b/, `kube-controller-manager serves its insecure port:\n${listening}`);
  assert.doesNotMatch(listening, /(\*|0\.0\.0\.0|10\.20\.30\.11|\[::\]):10251\b/, `kube-scheduler serves its insecure port beyond loopback:\n${listening}`);
});
