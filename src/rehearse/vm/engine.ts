// `slipway rehearse --engine vm`: every machine of the cluster file as a QEMU VM with its
// own MAC on the lab bridge, booting the real way — firmware → DHCP → iPXE → kernel +
// initramfs from `slipway serve` → the real Ignition writes the machine's files onto its
// disk → the disk's systemd starts the units, which fetch their binaries and report —
// then the checks of the boot path (installed, files equal the render, static addresses
// survive a DHCP outage, a reboot boots the disk) and of the cluster (etcd, VIP).
//
// The OS is the Debian stand-in of scripts/build-vm-image.sh (Flatcar images cannot be
// downloaded here); see docs/vm-image.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { hasRole, type Machine, type Spec } from '../../spec/types.ts';
import { Lab } from '../lab/lab.ts';
import { openLab, prepare } from '../setup.ts';
import { RADVD } from '../lab/router-adverts.ts';
import { Checks, type CheckName, type CheckResult, type CheckOutcome } from '../checks.ts';
import { Progress, round } from '../progress.ts';
import { phaseTimer, reportOk, type Report, type UnitState } from '../report.ts';
import { preflight, rehearsalTree, RehearseError, which, type RehearseOptions } from '../preflight.ts';
import { SMOKE_BODY, SMOKE_IMAGE, SMOKE_PORT, writeRehearsalBundle } from '../bundle.ts';
import { versionProfile } from '../../plan/versions.ts';
import { kvmWorks, VmMachine } from './qemu.ts';
import { BIN, UNITS } from '../../plan/paths.ts';
import { binariesFor } from '../../plan/phases/node.ts';

const cpus = () => availableParallelism();
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A VM that has not asked for an address this long after power on never will. */
const SILENT_MS = 120_000;

const VM_TOOLS: { cmd: string; pkg: string }[] = [
  { cmd: 'qemu-system-x86_64', pkg: 'qemu-system-x86' },
  { cmd: 'qemu-img', pkg: 'qemu-utils' },
  { cmd: 'setpriv', pkg: 'util-linux' },
  { cmd: 'mkfs.ext4', pkg: 'e2fsprogs' },
  { cmd: 'debugfs', pkg: 'e2fsprogs' },
  { cmd: 'mkfs.fat', pkg: 'dosfstools' },
  { cmd: 'syslinux', pkg: 'syslinux' },
  { cmd: 'mcopy', pkg: 'mtools' },
  { cmd: 'sfdisk', pkg: 'fdisk' },
];

function vmPreflight(): void {
  const missing = VM_TOOLS.filter((t) => !which(t.cmd)).map((t) => `${t.cmd} (${t.pkg})`);
  if (!existsSync('/usr/share/qemu/efi-virtio.rom') && !existsSync('/usr/lib/ipxe/qemu/efi-virtio.rom')) missing.push("iPXE ROM for virtio-net (ipxe-qemu)");
  if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun (the tun driver)');
  if (missing.length) throw new RehearseError(`the VM engine needs: ${missing.join(', ')}`);
}

function vmImage(log: (l: string) => void): string {
  log('VM image: scripts/build-vm-image.sh (cached after the first build)');
  const r = spawnSync('bash', [join(REPO, 'scripts/build-vm-image.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 1_800_000 });
  const dir = r.stdout.trim().split('\n').pop();
  if (r.status !== 0 || !dir || !existsSync(join(dir, 'disk.img'))) throw new RehearseError(`could not build the VM image (scripts/build-vm-image.sh exited ${r.status})`);
  return dir;
}

/** `sha256 mode path` of every file under a rendered root, sorted: what the VM must hold. */
function renderedDigest(root: string): { lines: string[]; paths: string[] } {
  const lines: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (const e of readdirSorted(dir)) {
      const p = join(dir, e.name);
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p, r);
      else if (e.isFile()) lines.push(`${createHash('sha256').update(readFileSync(p)).digest('hex')} ${r}`);
    }
  };
  walk(root, '');
  lines.sort();
  return { lines, paths: lines.map((l) => l.split(' ')[1]!) };
}

const readdirSorted = (dir: string) => readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));

export async function rehearseVms(o: RehearseOptions): Promise<Report> {
  const t0 = Date.now();
  const { spec, log } = o;
  const pre = preflight({ spec, binaries: o.binaries, noKubernetes: o.noKubernetes });
  vmPreflight();
  const { phases, phase } = phaseTimer();
  const notes: string[] = [];
  const report: Report = { engine: 'vm', kubernetesVersion: spec.kubernetesVersion, ok: false, seconds: 0, machines: [], checks: [], adjustments: [], phases, notes };

  const image = vmImage(log);
  const tree = rehearsalTree(log);
  const run = mkdtempSync('/var/tmp/slipway-rehearsal-');
  log(`run directory ${run}`);
  let lab: Lab | undefined;
  let progress: Progress | undefined;
  const vms: VmMachine[] = [];
  const results: CheckResult[] = [];
  const failed = new Map<string, { unit: string; logs: string }[]>();
  const units = new Map<string, UnitState[]>();
  const silentReasons = new Map<string, string>();
  // A second Ctrl-C exits at once: QEMU dies with this process (pdeathsig), the lab's
  // namespaces by their own exit hook; the run directory goes here. Under --keep all of
  // it stays, as after one Ctrl-C (prepended: before the namespaces' hook would delete them).
  const onExit = () => {
    if (o.keep) keepAll();
    else rmSync(run, { recursive: true, force: true });
  };
  // synchronous: it also runs on the way out
  const keepAll = () => {
    const serve = lab?.serve?.pid;
    lab?.keep();
    for (const v of vms) v.keep();
    writeFileSync(join(run, 'README'), keptReadme(run, lab, serve, vms));
    log(`kept: the lab and the VMs keep running; see ${join(run, 'README')}`);
  };
  process.prependListener('exit', onExit);
  try {
    const p = await prepare(spec, pre.binaries, tree, run, (m) => new RehearseError(m));
    const { state, out, assets } = p;
    notes.push(pre.binaries ? `binaries served from ${pre.binaries}; from the Debian tree: ${p.fromTree.join(', ')}` : `no Kubernetes binaries served (--no-kubernetes): from the Debian tree ${p.fromTree.join(', ')}; not offered: ${p.absent.join(', ')} (their units are skipped on the machines and listed per machine)`);
    const accel = kvmWorks(join(image, 'vmlinuz')) ? 'kvm' : 'tcg';
    notes.push(`VMs run under ${accel === 'kvm' ? 'KVM' : 'TCG (software emulation: KVM did not run a guest here)'}, 1 vCPU each`);
    // The OS reaches the machines as a bundle's does: its kernel and initramfs are the
    // os/ entries of a bundle that serve --bundle offers (with the test images).
    const bundle = join(run, 'bundle.tar');
    await writeRehearsalBundle(bundle, { name: spec.name, kubernetesVersion: spec.kubernetesVersion }, versionProfile(spec.kubernetesVersion).pauseImage, {
      name: 'debian-stand-in', channel: 'rehearsal', version: basename(image),
      files: [{ path: 'os/vmlinuz', source: join(image, 'vmlinuz'), name: 'stand-in kernel' }, { path: 'os/initrd.img', source: join(image, 'initrd.img'), name: 'stand-in initramfs (the real Ignition)' }],
    });
    notes.push(`OS: the Debian stand-in ${image} (no Flatcar image offline); its kernel and initramfs are the os/ entries of the rehearsal's bundle, served by serve --bundle as a Flatcar bundle's are; each VM's disk is an overlay of its disk.img`);
    phase('prepare');

    let token: string;
    ({ lab, token } = await openLab(spec, o.file, p, run, log, ['--bundle', bundle], { consolePort: o.consolePort }));
    notes.push(lab.advertiseRouter(run)
      ? 'the lab network sends IPv6 router advertisements (radvd: no prefix, not a default router), as a segment with a router does: iPXE fetches its script at once instead of waiting ~16 s for one'
      : `no IPv6 router advertisements in the lab (${RADVD} is not installed: apt-get install radvd): each network boot waits ~16 s in iPXE for IPv6 to give up`);
    phase('lab');

    spec.machines.forEach((m, i) => {
      const dir = join(run, 'machines', m.name);
      mkdirSync(dir, { recursive: true });
      // --fault NAME=wrong-mac: the VM's NIC is not the one the file names.
      const nic = o.faults?.[m.name] === 'wrong-mac' ? { ...m, mac: `52:54:00:ff:${m.mac.slice(-5)}` } : m;
      // It is a new machine, so its disk is blank: it boots nothing (the image's OS would
      // otherwise boot from it, unasked, and take a core while the others install).
      if (nic !== m) notes.push(`fault injected: ${m.name}'s NIC has MAC ${nic.mac}, the file says ${m.mac}; its disk is blank, as a new machine's`);
      // --fault NAME=failing-unit: a dirty disk, where the binaries directory is a file.
      // (the directory of the first binary the provisioner offers it)
      const strayFileAt = o.faults?.[m.name] === 'failing-unit' ? dirname(binariesFor(m, spec.network.cni).find(([, name]) => !p.absent.includes(name))![0]) : undefined;
      if (strayFileAt) notes.push(`fault injected: ${m.name}'s disk holds a stray file at ${strayFileAt}, where its binaries go`);
      const memoryMiB = hasRole(m, 'control-plane') && !o.noKubernetes ? 1536 : 1024;
      const vm = new VmMachine({ machine: nic, hub: lab!.hub, dir, baseDisk: join(image, 'disk.img'), memoryMiB, tap: `vmtap${i}`, strayFileAt, blankDisk: nic !== m });
      vm.prepare();
      vms.push(vm);
    });
    progress = new Progress(lab, token, spec.machines.map((m) => m.name), log);
    for (const vm of vms) await vm.start(accel, o.keep);
    progress.startPolling();

    // --- wait: every machine installed (or failed), bounded ---------------------------
    // A machine the provisioner never hears from is failed, with what the provisioner did
    // see (an unknown MAC, say), once the others are done and SILENT_MS have passed since
    // power on: DHCP is the firmware's first step (~3 s here, 32 s seen on a loaded host).
    const poweredOn = Date.now();
    const deadline = poweredOn + o.timeoutSeconds * 1000;
    const finished = (n: string) => progress!.installed(n) || progress!.states.get(n)?.state === 'failed';
    while (Date.now() < deadline && !o.signal?.aborted) {
      if (spec.machines.every((m) => finished(m.name))) break;
      const silent = spec.machines.filter((m) => !progress!.times.get(m.name)?.dhcp);
      if (silent.length && Date.now() - poweredOn > SILENT_MS && spec.machines.every((m) => finished(m.name) || silent.includes(m))) break;
      await sleep(2_000);
    }
    // Interrupted: stop here. The silent machines below are not silent, only not yet heard
    // from, and under --keep they must stay running as they are.
    if (o.signal?.aborted) {
      phase('install');
      throw new RehearseError('interrupted');
    }
    const seen = (await lab.api<{ discovered?: { mac: string }[] }>('/api/v1/machines', token))?.discovered ?? [];
    for (const m of spec.machines.filter((x) => !progress!.times.get(x.name)?.dhcp)) {
      await vms.find((v) => v.m.name === m.name)?.powerOff(); // it would only burn a core
      silentReasons.set(m.name, `never asked the provisioner for an address${seen.length ? `; it saw unknown MAC(s) ${seen.map((d) => d.mac).join(', ')} on the segment: is ${m.name}'s mac (${m.mac}) in the file right?` : ' (no unknown MAC either: is the machine on this segment and set to boot from the network?)'}`);
    }
    phase('install');

    const checks = new Checks({
      lab, spec, out, kubectl: pre.binaries ? join(pre.binaries, 'kubectl') : 'kubectl', etcdctl: pre.etcdctl, log,
      smoke: { ref: SMOKE_IMAGE, port: SMOKE_PORT, body: SMOKE_BODY },
      requestTimeoutSeconds: 60,
      signal: o.signal,
      engine: {
        running: () => vms.filter((v) => v.running && !v.stopped && !silentReasons.has(v.m.name)).map((v) => v.m.name),
        powerOff: async (name) => vms.find((v) => v.m.name === name)?.powerOff(),
        vipHolder: () => vipHolderByArp(lab!, spec, vms),
      },
    });
    const check = async (name: CheckName, fn: () => Promise<{ result: CheckOutcome; detail: string }>) => {
      results.push(await checks.run(name, fn));
    };

    await check('installed', async () => {
      const not = spec.machines.filter((m) => !progress!.installed(m.name));
      const t = spec.machines.map((m) => `${m.name} ${progress!.times.get(m.name)?.installed ?? '-'}s`).join(', ');
      const why = (n: string) => silentReasons.get(n) ?? `${progress!.states.get(n)?.state ?? 'never seen'}${progress!.states.get(n)?.reason ? `: ${progress!.states.get(n)!.reason}` : ''}`;
      return not.length ? { result: 'failed', detail: `not installed: ${not.map((m) => `${m.name} (${why(m.name)})`).join('; ')}` } : { result: 'ok', detail: `every machine installed through DHCP → iPXE → Ignition: ${t}` };
    });

    await check('files-match-render', async () => {
      const bad: string[] = [];
      const checked = vms.filter((v) => v.running && !silentReasons.has(v.m.name));
      for (const vm of checked) {
        const want = renderedDigest(join(out, 'machines', vm.m.name, 'root'));
        await vm.waitFor(new RegExp(`root@${vm.m.name}`), 300_000);
        // One digest over every file's sha256 line: a short answer the console cannot garble.
        const digest = createHash('sha256').update(want.lines.join('\n') + '\n').digest('hex');
        // The path list goes over in pieces: a terminal line holds at most 4095 characters.
        await vm.shell('rm -f /tmp/slipway-paths', 30_000);
        for (let i = 0; i < want.paths.length; i += 20) {
          await vm.shell(`printf '%s\\n' ${want.paths.slice(i, i + 20).map((p) => `'.${p}'`).join(' ')} >> /tmp/slipway-paths`, 30_000);
        }
        let got = '';
        for (let i = 0; i < 3 && got !== digest; i++) {
          got = (await vm.shell(`cd / && xargs sha256sum < /tmp/slipway-paths | sed 's#  \\./# /#' | sort | sha256sum | cut -d' ' -f1`, 120_000)).trim().split('\n').pop() ?? '';
        }
        if (got !== digest) bad.push(vm.m.name);
      }
      return bad.length ? { result: 'failed', detail: `files differ on ${bad.join(', ')}` } : { result: 'ok', detail: `every file of each machine's rendered root is on its disk with the same sha256 (${checked.map((v) => v.m.name).join(', ')})` };
    });

    await check('etcd-healthy', () => checks.etcdHealthy(undefined, 300_000));

    await check('static-networking', async () => {
      await lab!.stopServe();
      await sleep(10_000);
      const silent: string[] = [];
      for (const vm of vms.filter((v) => v.running && !silentReasons.has(v.m.name))) {
        const p = await lab!.exec('/bin/busybox', ['ping', '-c', '3', '-W', '2', vm.m.ip], 20_000);
        if (p.code !== 0) silent.push(vm.m.name);
      }
      await lab!.startServe({ file: o.file, state, assets, args: ['--bundle', bundle], logFile: join(run, 'serve.log') });
      return silent.length ? { result: 'failed', detail: `with the provisioner (DHCP) stopped, no answer from ${silent.join(', ')}` } : { result: 'ok', detail: `with the provisioner (DHCP included) stopped for 10 s, every machine still answered on its static address` };
    });

    for (const vm of vms) {
      if (!vm.running || silentReasons.has(vm.m.name)) continue;
      failed.set(vm.m.name, await failedUnits(vm));
      units.set(vm.m.name, await unitStates(vm, renderedUnits(out, vm.m, spec)));
    }

    await check('reboot-from-disk', async () => {
      // an installed machine: serve sends those to their disk (a failed one installs again)
      const vm = vms.filter((v) => v.running && !silentReasons.has(v.m.name) && progress!.installed(v.m.name)).at(-1);
      if (!vm) return { result: 'failed', detail: 'no installed machine running' };
      const before = vm.serial().length;
      await vm.reset();
      const t = Date.now();
      await vm.waitFor(/booting from local disk/, 180_000, before);
      // SYSLINUX reads the kernel and initramfs through the firmware's disk calls (~1.3 s
      // per MB under TCG, far more on a loaded host: CI saw the kernel still unpacking the
      // initramfs 120 s after iPXE's exit)
      await vm.waitFor(/not a first boot: booting the installed system/, 240_000, before);
      await vm.waitFor(new RegExp(`root@${vm.m.name}`), 180_000, before);
      const again = vm.serial().slice(before);
      if (/ignition \S+ stage/.test(again)) return { result: 'failed', detail: `${vm.m.name}: Ignition ran again after reset` };
      return { result: 'ok', detail: `${vm.m.name} reset: serve told iPXE to boot locally, the disk booted without Ignition, console back after ${round(Date.now() - t)}s` };
    });

    // The API: the units run, but under software emulation on a small host the
    // apiservers may not answer in time; that is reported as not-run with the evidence
    // (units active), never ok. Under KVM a silent API is a failure.
    await check('api-via-vip', async () => {
      const skipped = [...units].filter(([, us]) => us.some((u) => u.unit === 'kube-apiserver.service' && u.state === 'not-started')).map(([n]) => n);
      if (skipped.length && skipped.length === [...units.values()].filter((us) => us.some((u) => u.unit === 'kube-apiserver.service')).length) {
        return { result: 'not-run', detail: `kube-apiserver.service was not started on ${skipped.join(', ')}: ${BIN}/kube-apiserver is not in the provisioner's assets${o.noKubernetes ? ' (--no-kubernetes)' : ''}` };
      }
      const r = await checks.apiViaVip(accel === 'kvm' ? 300_000 : 180_000);
      if (r.result === 'ok' || accel === 'kvm') return r;
      const active: string[] = [];
      for (const vm of vms.filter((v) => v.running && !silentReasons.has(v.m.name) && hasRole(v.m, 'control-plane'))) {
        const state = (await vm.shell('systemctl is-active kube-apiserver', 30_000).catch(() => '?')).trim().split('\n').pop();
        if (state !== 'active') return { result: 'failed', detail: `kube-apiserver on ${vm.m.name} is ${state}; ${r.detail}` };
        active.push(vm.m.name);
      }
      return { result: 'not-run', detail: `kube-apiserver is active on ${active.join(', ')} but did not answer through the VIP within 180 s under TCG (software emulation, ${cpus()} host cores for ${vms.filter((v) => v.running).length} running VMs): the containers engine proves the API; with KVM this check runs (${r.detail})` };
    });
    let stopped: string | undefined;
    await check('vip-failover', async () => {
      const r = await checks.vipMoves();
      stopped = r.stopped;
      return r;
    });
    await check('etcd-member-loss', () => checks.etcdMemberLoss(stopped, 240_000));
    phase('checks');
    report.ok = reportOk(results);
  } catch (e) {
    report.error = (e as Error).message;
    if (e instanceof RehearseError && !lab) throw e;
  } finally {
    await progress?.stop();
    report.checks = results;
    report.machines = spec.machines.map((m) => ({
      name: m.name,
      roles: m.roles,
      ready: progress?.states.get(m.name)?.state === 'ready',
      state: silentReasons.has(m.name) ? 'failed' : progress?.states.get(m.name)?.state ?? 'unknown',
      reason: silentReasons.get(m.name) ?? progress?.states.get(m.name)?.reason,
      seconds: progress?.times.get(m.name) ?? {},
      poweredOff: (!silentReasons.has(m.name) && vms.find((v) => v.m.name === m.name)?.stopped) || undefined,
      failedUnits: failed.get(m.name) ?? [],
      units: units.get(m.name),
    }));
    if (o.keep) {
      // everything stays, a failed or interrupted rehearsal's too: that is what --keep is for
      keepAll();
    } else {
      await Promise.all(vms.map((v) => v.destroy()));
      await lab?.close();
      rmSync(run, { recursive: true, force: true });
    }
    process.off('exit', onExit);
    report.seconds = round(Date.now() - t0);
  }
  return report;
}

function keptReadme(run: string, lab: Lab | undefined, serve: number | undefined, vms: VmMachine[]): string {
  const running = vms.filter((v) => v.pid);
  return [
    `VM rehearsal kept at ${run}`,
    `lab namespace: ${lab?.hub.name ?? '-'} (slipway serve, pid ${serve ?? '-'}; its log: ${run}/serve.log)`,
    `admin kubeconfig and every machine's rendered files: ${run}/out/`,
    '',
    'VMs (serial console: socat - UNIX-CONNECT:<dir>/serial.sock; QEMU monitor: <dir>/monitor.sock):',
    ...vms.map((v) => `  ${v.m.name}: ${v.pid ? `qemu pid ${v.pid}` : 'powered off'}, ${run}/machines/${v.m.name}/ (serial.log)`),
    '',
    'to remove everything:',
    `  kill ${[...running.map((v) => v.pid), ...(serve ? [serve] : [])].join(' ') || '(nothing running)'}`,
    ...(lab ? [`  ip netns delete ${lab.hub.name}`] : []),
    `  rm -rf ${run}`,
  ].join('\n') + '\n';
}

/** Which VM answers ARP for the VIP, seen from the lab. */
async function vipHolderByArp(lab: Lab, spec: Spec, vms: VmMachine[]): Promise<string | undefined> {
  const vip = spec.controlPlane.vip;
  if (!vip) return undefined;
  await lab.exec('ip', ['neigh', 'flush', 'to', vip], 5_000);
  await lab.exec('/bin/busybox', ['ping', '-c', '1', '-W', '2', vip], 5_000);
  const n = await lab.exec('ip', ['neigh', 'show', 'to', vip], 5_000);
  const mac = /lladdr (\S+)/.exec(n.stdout)?.[1]?.toLowerCase();
  return vms.find((v) => v.m.mac.toLowerCase() === mac && v.running && !v.stopped)?.m.name;
}

/** The units Slipway rendered for a machine (and the OS's haproxy/keepalived it configures). */
function renderedUnits(out: string, m: Machine, spec: Spec): { unit: string; binary?: string }[] {
  const dir = join(out, 'machines', m.name, 'root', UNITS.slice(1));
  const list: { unit: string; binary?: string }[] = readdirSorted(dir)
    .filter((e) => e.isFile() && e.name.endsWith('.service') && !e.name.includes('@'))
    .map((e) => ({ unit: e.name, binary: /^ConditionFileIsExecutable=(\S+)$/m.exec(readFileSync(join(dir, e.name), 'utf8'))?.[1] }));
  if (spec.controlPlane.vip && hasRole(m, 'control-plane')) list.push({ unit: 'haproxy.service' }, { unit: 'keepalived.service' });
  return list;
}

/** Each unit's state on the machine: active, failed, not-started (its binary is absent), or systemd's own word. */
async function unitStates(vm: VmMachine, list: { unit: string; binary?: string }[]): Promise<UnitState[]> {
  try {
    const props = 'ActiveState,SubState,Result,ConditionResult';
    const text = await vm.shell(`for u in ${list.map((u) => u.unit).join(' ')}; do echo "U $u" $(systemctl show -p ${props} $u); done`, 60_000);
    const got = new Map(text.split('\n').filter((l) => l.startsWith('U ')).map((l) => {
      const [, unit, ...kv] = l.trim().split(/\s+/);
      const p = Object.fromEntries(kv.map((x) => x.split('=') as [string, string]));
      return [unit!, { active: p.ActiveState ?? '?', sub: p.SubState ?? '?', result: p.Result ?? '?', condition: p.ConditionResult ?? '?' }];
    }));
    return list.map(({ unit, binary }): UnitState => {
      const g = got.get(unit);
      if (!g) return { unit, state: 'unknown', detail: 'no answer from the machine' };
      if (g.condition === 'no') return { unit, state: 'not-started', detail: binary ? `${binary} absent: the provisioner does not offer it` : 'a start condition failed' };
      // a one-shot or finished script that ended well
      if (g.active === 'inactive' && g.result === 'success') return { unit, state: 'done' };
      if (g.active === 'active' || g.active === 'failed') return { unit, state: g.active, detail: g.active === 'failed' ? g.result : undefined };
      return { unit, state: g.active, detail: `${g.sub}${g.result !== 'success' ? `, ${g.result}` : ''}` };
    });
  } catch (e) {
    return list.map(({ unit }) => ({ unit, state: 'unknown', detail: (e as Error).message.split('\n')[0]! }));
  }
}

async function failedUnits(vm: VmMachine): Promise<{ unit: string; logs: string }[]> {
  try {
    const list = await vm.shell('systemctl list-units --failed --plain --no-legend --no-pager | cut -d" " -f1', 60_000);
    const out = [];
    for (const unit of list.split('\n').map((l) => l.trim()).filter((u) => u.endsWith('.service'))) {
      out.push({ unit, logs: await vm.shell(`journalctl -u ${unit} -n 12 --no-pager -o cat`, 60_000) });
    }
    return out;
  } catch {
    return [];
  }
}
