// The project's main end-to-end proof: `slipway rehearse --engine containers` brings the
// 5-machine HA example (3 control-plane + etcd machines behind a VIP, 2 workers) up from
// the rendered files with real Kubernetes v1.20.2 binaries (built from Debian's source by
// scripts/build-kubernetes.sh), and every check of the report passes: etcd over TLS, the
// API through the VIP, leader election, kubelet CSRs approved with no human, Ready nodes,
// guide 02's NodePort smoke test, VIP failover and etcd losing a member. Then nothing is
// left behind: no namespace, mount, cgroup, process or run directory. First, what it
// refuses: not root, systemd-nspawn missing, binaries of another version, bad files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ROOT } from './helpers/cli.ts';
import { leftoverCgroups, leftoverProcesses, leftovers, run } from './helpers/rehearse.ts';
import { heavyTestTurn } from './helpers/vm-lock.ts';
import { inMachine, readKeptLab, removeKeptLab } from './helpers/kept-lab.ts';
import { applyOnLiveLab } from './helpers/apply-live.ts';
import { day2OnLiveLab } from './helpers/day2-live.ts';
import { replaceOnLiveLab } from './helpers/replace-live.ts';
import { parseClusterFile } from '../src/spec/parse.ts';

const K8S = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes/v1.20.2`;
const SKIP = !existsSync(`${K8S}/.complete`) ? `no v1.20.2 binaries in ${K8S}: run scripts/build-kubernetes.sh (.ci/run does)` : false;
/** The two full rehearsals wait at most this long (minutes) for the other heavy test files (test/helpers/vm-lock.ts). */
const TURN_MIN = 20;
const CHECKS = ['etcd-healthy', 'api-via-vip', 'leader-election', 'csr-auto-approved', 'nodes-ready', 'smoke-nodeport', 'vip-failover', 'etcd-member-loss'];

// --- bad input: a clear message, a non-zero exit, nothing left behind. In this file so
// they never run beside the rehearsal below (their leftovers checks would see its lab).
const K8S_BIN = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes/v1.20.2/bin`;
const EXAMPLE = readFileSync(join(ROOT, 'examples/rehearsal.yaml'), 'utf8');

function rehearse(args: string[], opts: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}) {
  const argv = [...(opts.prefix ?? []), process.execPath, BIN, 'rehearse', ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 120_000, env: opts.env ?? process.env });
  return { code: r.status, out: r.stdout + r.stderr };
}

function withFile(text: string, fn: (file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-rehearse-bad-'));
  try {
    chmodSync(dir, 0o755); // readable by the unprivileged user of the not-root case
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, text, { mode: 0o644 });
    const before = leftovers();
    fn(file);
    assert.deepEqual(leftovers(), before, 'left something behind');
    assert.ok(!existsSync(join(dir, '.slipway')), 'created a state directory beside the file');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('not root: says so, exit 1', () => {
  withFile(EXAMPLE, (file) => {
    const r = rehearse(['-f', file], { prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /slipway rehearse needs root .* run it with sudo/);
  });
});

test('systemd-nspawn missing: names the tool and its Debian package, exit 1', () => {
  withFile(EXAMPLE, (file) => {
    // A PATH with every tool the rehearsal uses but systemd-nspawn.
    const path = mkdtempSync(join(tmpdir(), 'slipway-path-'));
    try {
      for (const t of ['ip', 'curl', 'etcdctl', 'debootstrap', 'nsenter', 'sh', 'bash', 'sha256sum']) {
        const found = spawnSync('sh', ['-c', `command -v ${t}`], { encoding: 'utf8' }).stdout.trim();
        if (found) symlinkSync(found, join(path, t));
      }
      const r = rehearse(['-f', file], { env: { ...process.env, PATH: path } });
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /missing tools: systemd-nspawn \(Debian package systemd-container: boots each machine as a system container\)/);
      assert.match(r.out, /install with: apt-get install systemd-container/);
    } finally {
      rmSync(path, { recursive: true, force: true });
    }
  });
});

test('binaries of another version than the file says: both versions named, exit 1', { skip: !existsSync(K8S_BIN) && `no binaries in ${K8S_BIN}` }, () => {
  withFile(EXAMPLE.replace('kubernetesVersion: v1.20.2', 'kubernetesVersion: v1.20.3'), (file) => {
    const r = rehearse(['-f', file, '--binaries', K8S_BIN]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /kube-apiserver is v1\.20\.2, but the cluster file says kubernetesVersion: v1\.20\.3/);
  });
  withFile(EXAMPLE.replace('kubernetesVersion: v1.20.2', 'kubernetesVersion: v1.20.3'), (file) => {
    const r = rehearse(['-f', file]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /no Kubernetes binaries for v1\.20\.3 in .*: pass --binaries DIR, or build them from Debian's source with scripts\/build-kubernetes\.sh v1\.20\.3/);
  });
});

test('a --binaries directory lacking a component: named, exit 1', () => {
  withFile(EXAMPLE, (file) => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-bins-'));
    try {
      mkdirSync(join(dir, 'bin'));
      const r = rehearse(['-f', file, '--binaries', join(dir, 'bin')]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /lacks kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('cni: flannel without a flannel binary: says to use cni: bridge, exit 1', { skip: !existsSync(K8S_BIN) && `no binaries in ${K8S_BIN}` }, () => {
  withFile(EXAMPLE.replace(/cni: bridge .*/, 'cni: flannel'), (file) => {
    const r = rehearse(['-f', file]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /network\.cni is flannel, but .* has no flanneld .*set network\.cni: bridge/);
  });
});

test('an invalid cluster file: FILE:LINE:COL, exit 1, nothing started', () => {
  withFile(EXAMPLE.replace('mac: "52:54:00:20:30:21"', 'mac: "52:54:00:20:30"'), (file) => {
    const r = rehearse(['-f', file]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: spec\\.machines\\[3\\]\\.mac`));
  });
});

test('usage errors: exit 2', () => {
  withFile(EXAMPLE, (file) => {
    assert.equal(rehearse(['-f', file, '--engine', 'docker']).code, 2);
    assert.equal(rehearse(['-f', file, '--timeout', 'soon']).code, 2);
    assert.equal(rehearse([]).code, 2);
    const nok = rehearse(['-f', file, '--no-kubernetes']);
    assert.equal(nok.code, 2);
    assert.match(nok.out, /--no-kubernetes goes with --engine vm/);
    assert.match(rehearse(['-f', file, '--engine', 'vm', '--no-kubernetes', '--binaries', '/tmp']).out, /--binaries and --no-kubernetes exclude each other/);
    assert.match(rehearse(['-f', file, '--engine', 'vm', '--fault', 'w1=melted']).out, /--fault w1=melted: the kinds are wrong-mac, failing-unit/);
  });
});

// --- the rehearsal itself

test('rehearse --engine containers: the HA example comes up from its rendered files and passes every check; then day 2 (certs check and renew, etcd snapshot, wipe and restore) and slipway apply over SSH on the same cluster', { skip: SKIP, timeout: (TURN_MIN + 25) * 60_000 }, async () => {
  const release = await heavyTestTurn('rehearse --engine containers', TURN_MIN * 60_000);
  const before = leftovers();
  const dir = mkdtempSync(join(tmpdir(), 'slipway-rehearse-'));
  let kept: string | undefined;
  try {
    const reportFile = join(dir, 'report.json');
    // a copy: day 2 below edits the file the lab's serve reads (w3 added, cp3 replaced by cp4)
    const file = join(dir, 'cluster.yaml');
    copyFileSync(join(ROOT, 'examples/rehearsal.yaml'), file);
    // --keep: the same cluster, once checked, is where `slipway apply` is proved (below)
    const r = await run(['rehearse', '-f', file, '--engine', 'containers', '--keep', '--report', reportFile], 15 * 60_000);
    const keptDirs = leftovers().runDirs.filter((d) => !before.runDirs.includes(d));
    if (keptDirs.length === 1) kept = join('/var/tmp', keptDirs[0]!);
    const context = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-6000)}`;
    assert.ok(existsSync(reportFile), `no report written:\n${context}`);
    const report = JSON.parse(readFileSync(reportFile, 'utf8'));
    process.stdout.write(r.stdout);

    assert.equal(report.engine, 'containers');
    assert.equal(report.kubernetesVersion, 'v1.20.2');
    assert.equal(report.error, undefined, context);
    assert.deepEqual(report.machines.map((m: { name: string }) => m.name), ['cp1', 'cp2', 'cp3', 'w1', 'w2']);
    for (const m of report.machines) {
      assert.equal(m.ready, true, `${m.name} never became a Ready node:\n${context}`);
      assert.deepEqual(m.failedUnits, [], `${m.name} has failed units:\n${JSON.stringify(m.failedUnits, null, 2)}`);
      assert.ok(m.seconds.dhcp >= 0 && m.seconds.configFetched >= m.seconds.dhcp && m.seconds.installed > 0 && m.seconds.ready > 0, `${m.name}: ${JSON.stringify(m.seconds)}`);
    }
    assert.deepEqual(report.machines.map((m: { roles: string[] }) => m.roles.join(',')), ['control-plane,etcd', 'control-plane,etcd', 'control-plane,etcd', 'worker', 'worker']);
    const byName = new Map<string, { result: string; detail: string; seconds: number }>(report.checks.map((c: { name: string }) => [c.name, c]));
    for (const name of CHECKS) {
      const c = byName.get(name);
      assert.ok(c, `check ${name} missing from the report`);
      assert.equal(c.result, 'ok', `${name}: ${c.detail}\n${context}`);
      assert.ok(c.detail.length > 0 && typeof c.seconds === 'number');
    }
    const dns = byName.get('dns');
    assert.equal(dns?.result, 'not-run');
    assert.match(dns!.detail, /CoreDNS image .* cannot be obtained offline/);
    assert.match(byName.get('vip-failover')!.detail, /moved to cp\d/);
    assert.match(byName.get('csr-auto-approved')!.detail, /^5 kubelet client CSRs/);
    assert.match(byName.get('smoke-nodeport')!.detail, /every node: cp1, cp2, cp3, w1, w2$/);
    assert.ok(report.adjustments.length >= 10 && report.adjustments.every((a: { id: string; what: string; why: string }) => a.id && a.what && a.why));
    assert.equal(report.ok, true);
    assert.equal(r.code, 0, context);
    assert.match(r.stdout, /rehearsal \(containers, Kubernetes v1\.20\.2\): OK/);

    // Day 2 on the same machines (test/helpers/apply-live.ts): the machine vip-failover
    // powered off is powered on again, then apply delivers a re-issued kube-proxy
    // certificate over each machine's real sshd: stopped at an unreachable machine and at
    // a wrong host key with nothing written there, continued by a second run, the units
    // restarted, the VIP answering throughout; w3 added to the file (the others route its
    // pod /24) and booted as a new container through serve, a Ready node; then w3 removed
    // (drained, Node deleted, reprovisioned by serve, powered off). Last, with
    // SLIPWAY_DAY2_REPLACE=1, cp3 replaced by cp4 (test/helpers/replace-live.ts): member
    // remove, then member add and a new container that joins etcd; 3 healthy members.
    assert.ok(kept, `the kept run directory:\n${context}`);
    const t0 = performance.now();
    const lab = readKeptLab(kept);
    assert.equal(lab.file, file, "the kept lab's serve reads the test's copy");
    const spec = parseClusterFile(readFileSync(file, 'utf8'), file).spec!;
    const off = /powered off (\S+);/.exec(byName.get('vip-failover')!.detail)?.[1];
    // test/helpers/day2-live.ts first, on the same cluster (one boot for both): certs
    // check against openssl s_client, an etcd snapshot against etcdctl snapshot status, a
    // restore refused while `off` is still down, `off` powered on again, every member
    // wiped and restored (a ConfigMap from before the snapshot back, one from after gone),
    // certs renew --all delivered by apply with /readyz probed through the VIP
    const day2 = await day2OnLiveLab(lab, file, spec, off);
    assert.ok(day2.length >= 5, `day 2 steps: ${day2.map((s) => s.name).join(', ')}`);
    console.log(`# day 2 on the rehearsed cluster: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    if (off) {
      for (let i = 0; i < 90; i++) {
        const ip = spec.machines.find((m) => m.name === off)!.ip;
        const ready = inMachine(lab, off, `systemctl is-active ssh.service && curl -fsS -m 3 --cacert /etc/kubernetes/pki/ca.crt https://${ip}:6443/readyz`).out;
        if (/^active\nok$/m.test(ready.trim())) break;
        await new Promise((res) => setTimeout(res, 2000));
      }
    }
    const t1 = performance.now();
    const steps = await applyOnLiveLab(lab, file, 'kube-proxy-cert');
    // each step is pushed only once its effect was checked on the machines
    for (const st of steps) console.log(`# apply ${st.name}: ${st.seconds.toFixed(1)} s${st.probes ? `, ${st.probes.failed}/${st.probes.sent} probes failed` : ''}: ok: ${st.detail}`);
    console.log(`# apply on the rehearsed cluster: ${((performance.now() - t1) / 1000).toFixed(0)} s, ${off} powered on again first`);
    assert.equal(steps.find((st) => st.name === 'vip-readyz-during-apply')!.probes!.failed, 0, 'the API answered through the VIP throughout');
    // cp3 replaced by cp4 (test/helpers/replace-live.ts): each step prints its line as it
    // ends. ~440 s on 2 cores (each of the two applies restarts cp1's and cp2's apiservers,
    // ~60 s apiece): past the suite's budget, so only with SLIPWAY_DAY2_REPLACE=1
    if (process.env.SLIPWAY_DAY2_REPLACE === '1') {
      const t2 = performance.now();
      const replaced = await replaceOnLiveLab(lab);
      assert.equal(replaced.length, 2);
      console.log(`# cp3 replaced by cp4 on the rehearsed cluster: ${((performance.now() - t2) / 1000).toFixed(0)} s`);
    } else console.log('# cp3 replaced by cp4: not run (SLIPWAY_DAY2_REPLACE=1 runs it, ~440 s more)');
    console.log(`# day 2 in all: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  } finally {
    if (kept) await removeKeptLab(kept);
    release();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leftovers(), before, 'the rehearsal left namespaces, mounts or run directories behind');
    assert.deepEqual(leftoverCgroups(), [], 'cgroups left behind');
  }
});

// --- Ctrl-C: the rehearsal stops and removes everything it made, in the middle of the
// machines' install (containers booting; VMs network-booting). A second Ctrl-C exits at
// once, and what is left is removed on the way out (synchronously: processes by PID,
// mounts lazily, cgroups, namespaces, the run directory).
/** The HA example's rehearsal, and the progress line that says its machines are installing (VMs booting, containers fetching their configs). */
const installing = (engine: 'containers' | 'vm') => ({
  args: ['rehearse', '-f', join(ROOT, 'examples/rehearsal.yaml'), '--engine', engine, ...(engine === 'vm' ? ['--no-kubernetes'] : [])],
  when: engine === 'vm' ? /booting \(http\)/ : /config-fetched \(http\)/,
});

for (const engine of ['containers', 'vm'] as const) {
  for (const twice of [false, true]) {
    test(`rehearse --engine ${engine}: ${twice ? 'Ctrl-C twice' : 'Ctrl-C'} while the machines install stops, removes everything, exit ${twice ? 130 : 1}`, { skip: SKIP, timeout: 10 * 60_000 }, async () => {
      const before = leftovers();
      const { args, when } = installing(engine);
      const r = await run(args, 8 * 60_000, process.env, when, twice);
      const context = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-4000)}`;
      assert.match(r.stderr, /SIGINT: stopping and cleaning up/, context);
      if (twice) {
        assert.equal(r.code, 130, context);
      } else {
        assert.equal(r.code, 1, context);
        assert.match(r.stdout, /error: interrupted/, context);
      }
      // the kernel reaps killed processes and empties their cgroups a moment later
      let left = leftoverProcesses();
      for (let i = 0; i < 50 && left; i++) {
        await new Promise((res) => setTimeout(res, 100));
        left = leftoverProcesses();
      }
      assert.equal(left, '', 'VMs or containers left running');
      assert.deepEqual(leftovers(), before, `namespaces, mounts or run directories left behind\n${context}`);
      assert.deepEqual(leftoverCgroups(), [], 'cgroups left behind');
      assert.equal(spawnSync('pgrep', ['-f', 'bin/slipway.js serve .*slipway-rehearsal-'], { encoding: 'utf8' }).stdout.trim(), '', 'serve left running');
    });
  }
}

// --- --keep: nothing is removed, not even on Ctrl-C, once or twice (keeping a failed
// rehearsal to look into is what it is for), and the README it leaves is enough to remove
// it all by hand.
for (const [engine, twice] of [['containers', false], ['vm', false], ['containers', true], ['vm', true]] as const) {
  test(`rehearse --engine ${engine} --keep: ${twice ? 'Ctrl-C twice' : 'Ctrl-C'} leaves the lab and machines running, and the README's PIDs and paths remove them`, { skip: SKIP, timeout: 10 * 60_000 }, async () => {
    const before = leftovers();
    const { args, when } = installing(engine);
    const r = await run([...args, '--keep'], 8 * 60_000, process.env, when, twice);
    const context = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-4000)}`;
    const run_ = leftovers().runDirs.filter((d) => !before.runDirs.includes(d));
    assert.equal(run_.length, 1, `one run directory kept\n${context}`);
    const dir = join('/var/tmp', run_[0]!);
    let failed: unknown;
    try {
      assert.equal(r.code, twice ? 130 : 1, context);
      assert.match(r.stderr, /kept: the lab and (the VMs|machines) keep running/, context);
      const readme = readFileSync(join(dir, 'README'), 'utf8');
      assert.match(readme, new RegExp(`kept at ${dir}`));
      // five machines still running, as the README says. A second Ctrl-C 200 ms after the
      // first can come before every container was started (VMs all start at power on):
      // the README says so of those, and the removal below proves it names what is left.
      // A container started just then may not have its PID 1 yet: its cgroup removes it.
      const pids = [...readme.matchAll(/(?:qemu pid|systemd-nspawn pid|PID 1 pid) (\d+)/g)].map((m) => Number(m[1]));
      const started = [...readme.matchAll(/(?:qemu pid|systemd-nspawn pid) (\d+)/g)].length;
      if (engine === 'containers' && twice) {
        assert.equal([...readme.matchAll(/root \S+, systemd-nspawn (pid \d+|not running)/g)].length, 5, readme);
      } else {
        assert.equal(started, 5, readme);
      }
      if (engine === 'containers' && !twice) assert.equal(pids.length, 10, readme);
      for (const pid of pids) assert.ok(existsSync(`/proc/${pid}`), `pid ${pid} from the README is not running\n${readme}`);
      assert.ok(leftovers().netns.length > before.netns.length, 'the lab namespace was kept');
    } catch (e) {
      failed = e;
    } finally {
      // remove it all as the README says (by PID; never by name): test/helpers/kept-lab.ts
      try {
        await removeKeptLab(dir);
      } catch (e) {
        // a failure above is the one to report, not what it left for the removal
        if (!failed) throw e;
        console.error(`removing the kept rehearsal after a failure: ${(e as Error).message}`);
      }
      if (failed) throw failed;
      assert.deepEqual(leftovers(), before, 'the README\'s steps did not remove everything');
      assert.equal(leftoverProcesses(), '');
      assert.deepEqual(leftoverCgroups(), []);
    }
  });
}

// --- the VM engine: the HA example as QEMU VMs, each with a blank disk the installer
// writes Slipway's OS image onto (DHCP, iPXE, installer, Ignition, reboot from the disk),
// on mixed firmware and hardware (SeaBIOS and OVMF; virtio and e1000e NICs; virtio-blk,
// AHCI and NVMe disks: src/rehearse/vm/hardware.ts), with no Kubernetes binaries served
// (`--no-kubernetes`: software emulation of five VMs on two cores cannot run the control
// plane; the containers engine above proves Kubernetes) and two machines broken on
// purpose: w1 with a typo in its MAC (`wrong-mac`) and w2 with a stray file planted where
// its binaries go between the install and its first boot (`failing-unit`), which fails
// its slipway-binaries.service. The control plane installs and passes every check; w1
// and w2 are failed with the reason while the others finish. In this file so it never
// runs beside the containers rehearsal: both want both cores. Last in the file: the heavy
// test files take turns (test/helpers/vm-lock.ts).

const VM_CHECKS = ['installed-from-blank-disk', 'files-match-render', 'etcd-healthy', 'static-networking', 'bond-failover', 'reboot-from-disk', 'vip-failover', 'etcd-member-loss'];
const VM_HARDWARE = ['BIOS (SeaBIOS), virtio-net NIC, virtio-blk disk', 'UEFI (OVMF), Intel e1000e NIC, AHCI (SATA) disk, hardware clock starting 2015-01-01', 'BIOS (SeaBIOS), Intel e1000e NIC, NVMe disk, hardware clock starting 2015-01-01', 'BIOS (SeaBIOS), virtio-net NIC, AHCI (SATA) disk', 'UEFI (OVMF), virtio-net NIC, NVMe disk'];

test('rehearse --engine vm: machines on mixed firmware and hardware install from blank disks through DHCP, iPXE, the installer and Ignition, keep their files, addresses and VIP, boot from disk; cp1 on a bond carrying its node network on VLAN 100 joins etcd and fails over; a wrong MAC and a failing unit are failed with the reason; units without binaries are reported not started', { skip: SKIP, timeout: (TURN_MIN + 35) * 60_000 }, async () => {
  const release = await heavyTestTurn('rehearse --engine vm', TURN_MIN * 60_000);
  const before = leftovers();
  const dir = mkdtempSync(join(tmpdir(), 'slipway-rehearse-vm-'));
  try {
    const reportFile = join(dir, 'report.json');
    // cp1 as a rack machine of issue 20: two NICs in an active-backup bond carrying its node
    // network tagged (VLAN 100), PXE untagged on the first member. Its etcd peers, VRRP and
    // the VIP reach cp2 and cp3 (untagged) through the lab's switch port (lab/vlan.ts).
    // (cp1: virtio-net. QEMU's e1000e model does not show its guest a set_link off, so on
    // cp3 the bond never failed over: docs/networks.md.)
    const example = readFileSync(join(ROOT, 'examples/rehearsal.yaml'), 'utf8');
    const cp1 = '    - name: cp1\n      mac: "52:54:00:20:30:11"\n      ip: 10.20.30.11/24\n      interface: eth0               # NIC name: keepalived binds the VIP to it\n      roles: [control-plane, etcd]  # any of: control-plane, etcd, worker\n';
    assert.ok(example.includes(cp1), 'examples/rehearsal.yaml changed: update cp1 here');
    const file = join(dir, 'rehearsal.yaml');
    writeFileSync(file, example.replace(cp1, [
      '    - name: cp1', '      mac: "52:54:00:20:30:11"', '      ip: 10.20.30.11/24', '      roles: [control-plane, etcd]', '      links:',
      '        - {name: bond0, kind: bond, members: ["52:54:00:20:30:11", "52:54:00:20:31:11"]}',
      '        - {name: node0, kind: vlan, on: bond0, id: 100, node: true}', '',
    ].join('\n')));
    const r = await run(['rehearse', '-f', file, '--engine', 'vm', '--no-kubernetes', '--fault', 'w1=wrong-mac', '--fault', 'w2=failing-unit', '--report', reportFile], 30 * 60_000);
    const context = `exit ${r.code}\n${r.stdout}\n${r.stderr.slice(-6000)}`;
    assert.ok(existsSync(reportFile), `no report written:\n${context}`);
    const report = JSON.parse(readFileSync(reportFile, 'utf8'));
    process.stdout.write(r.stdout);
    assert.equal(report.engine, 'vm');
    assert.equal(report.error, undefined, context);
    // the lab answers iPXE's router solicitation (.ci/run installs radvd)
    assert.ok(report.notes.some((n: string) => n.startsWith('the lab network sends IPv6 router advertisements (radvd')), context);
    const byName = new Map<string, { result: string; detail: string }>(report.checks.map((c: { name: string }) => [c.name, c]));
    for (const name of VM_CHECKS) assert.equal(byName.get(name)?.result, 'ok', `${name}: ${byName.get(name)?.detail}\n${context}`);
    // cp1 failed over to its second NIC, its node address and VLAN kept, answered tagged on the new member's wire
    assert.match(byName.get('bond-failover')!.detail, /^cp1: bond0 \(active-backup.*: \S+ \(52:54:00:20:31:11\) active within [\d.]+ s, node0 kept 10\.20\.30\.11\/24.*tagged VLAN 100 on vmtap0;.*tagged VLAN 100 on vmtap0b1/, byName.get('bond-failover')!.detail);
    // every machine that installed did it from a blank disk, in the installer's steps, on its hardware
    const blank = byName.get('installed-from-blank-disk')!.detail;
    assert.match(blank, /the installer reported disk → write → grow → ignition → installed/);
    for (const [i, name] of ['cp1', 'cp2', 'cp3', 'w2'].entries()) assert.ok(blank.includes(`${name} (${VM_HARDWARE[[0, 1, 2, 4][i]!]}; root partition `), `${name} missing from: ${blank}`);
    assert.deepEqual(report.machines.map((m: { hardware?: string }) => m.hardware), VM_HARDWARE);
    assert.match(r.stdout, /hardware: UEFI \(OVMF\), Intel e1000e NIC, AHCI \(SATA\) disk/);
    const api = byName.get('api-via-vip')!;
    assert.equal(api.result, 'not-run');
    assert.equal(api.detail, "kube-apiserver.service was not started on cp1, cp2, cp3: /opt/bin/kube-apiserver is not in the provisioner's assets (--no-kubernetes)");
    // w1 and w2 are not installed, and the report says why
    const installed = byName.get('installed')!;
    assert.equal(installed.result, 'failed');
    assert.match(installed.detail, /^not installed: w1 \(never asked the provisioner for an address; it saw unknown MAC\(s\) 52:54:00:ff:30:21 on the segment: is w1's mac \(52:54:00:20:30:21\) in the file right\?\); w2 \(failed: (binaries could not be fetched|unit slipway-binaries\.service failed)\)$/);
    type M = { name: string; state: string; reason?: string; seconds: Record<string, number>; failedUnits: { unit: string; logs: string }[]; units?: { unit: string; state: string; detail?: string }[] };
    const machines = new Map<string, M>(report.machines.map((m: M) => [m.name, m]));
    assert.equal(machines.get('w1')!.state, 'failed');
    // w2: installed onto its blank disk, then its own unit failed, with the logs that say why
    assert.ok(report.notes.some((n: string) => /^w2: after the installer's reboot, a stray file planted at \/opt\/cni\/bin/.test(n)), report.notes.join('\n'));
    const w2 = machines.get('w2')!;
    assert.equal(w2.state, 'failed');
    const fetch = w2.failedUnits.find((u) => u.unit === 'slipway-binaries.service');
    assert.ok(fetch, `w2's failed units: ${JSON.stringify(w2.failedUnits)}`);
    assert.match(fetch.logs, /^install: cannot create directory '\/opt\/(cni\/)?bin': Not a directory$/m);
    assert.equal(w2.units?.find((u) => u.unit === 'slipway-binaries.service')?.state, 'failed');
    for (const name of ['cp1', 'cp2', 'cp3']) {
      const m = machines.get(name)!;
      assert.ok(m.seconds.installed! > m.seconds.configFetched! && m.seconds.configFetched! > m.seconds.dhcp!, `${name}: ${JSON.stringify(m.seconds)}`);
      assert.equal(m.state, 'installed');
      const state = new Map(m.units!.map((u) => [u.unit, u]));
      for (const u of ['etcd.service', 'haproxy.service', 'keepalived.service', 'slipway-binaries.service']) assert.equal(state.get(u)?.state, 'active', `${name} ${u}: ${JSON.stringify(state.get(u))}`);
      // every Kubernetes unit says plainly that it did not start, and why
      for (const [u, bin] of [['kube-apiserver', 'kube-apiserver'], ['kube-controller-manager', 'kube-controller-manager'], ['kube-scheduler', 'kube-scheduler'], ['kubelet', 'kubelet'], ['kube-proxy', 'kube-proxy'], ['slipway-addons', 'kubectl']]) {
        assert.deepEqual(state.get(`${u}.service`), { unit: `${u}.service`, state: 'not-started', detail: `/opt/bin/${bin} absent: the provisioner does not offer it` });
      }
      assert.deepEqual(m.failedUnits, [], `${name} has failed units`);
    }
    assert.match(r.stdout, /not started: kube-apiserver\.service \(\/opt\/bin\/kube-apiserver absent: the provisioner does not offer it\)/);
    assert.match(r.stderr, /web console: http:\/\/127\.0\.0\.1:\d+\//);
    assert.equal(report.ok, false);
    assert.equal(r.code, 1, context);
  } finally {
    release();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leftovers(), before, 'the VM rehearsal left namespaces, mounts or run directories behind');
    const qemu = spawnSync('pgrep', ['-f', 'qemu-system-x86_64.*slipway-rehearsal-'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(qemu, '', 'qemu processes left running');
  }
});
