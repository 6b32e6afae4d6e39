// The VM engine's own checks: the install path a real machine takes (installed through
// DHCP → iPXE → the installer writing the OS image onto its blank disk → Ignition →
// reboot from the disk, its files on its disk, its static addresses without the
// provisioner, a reset booting its disk), and the API check as far as software
// emulation lets it go. The cluster's checks are ../checks.ts.
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasRole } from '../../spec/types.ts';
import { BIN } from '../../plan/paths.ts';
import { round } from '../progress.ts';
import type { MachinesRun, Outcome } from '../engine.ts';
import { partitions, type VmMachine } from './qemu.ts';
import { INSTALL_STEPS, installerSteps, machineEvents } from './install.ts';
import { readdirSorted } from './units.ts';
import { bondFailover, nodeBond } from './bond.ts';
import { answeredOnWire, nodeVlan } from './vlan.ts';

type VmRun = MachinesRun<VmMachine>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The VMs still running that the provisioner heard from. */
export const live = (r: VmRun) => r.machines.filter((v) => v.running && !r.failedMachines.has(v.m.name));

/** `sha256 path` of every file under a rendered root, sorted: what the VM must hold. */
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

/** Every machine got to installed and did not fail after; the ones that did not, with why. */
export async function installed(r: VmRun): Promise<Outcome> {
  const { spec, progress } = r;
  const failed = (n: string) => r.failedMachines.has(n) || progress.states.get(n)?.state === 'failed';
  const not = spec.machines.filter((m) => !progress.installed(m.name) || failed(m.name));
  const t = spec.machines.map((m) => `${m.name} ${progress.times.get(m.name)?.installed ?? '-'}s`).join(', ');
  const why = (n: string) => r.failedMachines.get(n) ?? `${progress.states.get(n)?.state ?? 'never seen'}${progress.states.get(n)?.reason ? `: ${progress.states.get(n)!.reason}` : ''}`;
  return not.length ? { result: 'failed', detail: `not installed: ${not.map((m) => `${m.name} (${why(m.name)})`).join('; ')}` } : { result: 'ok', detail: `every machine installed through DHCP → iPXE → the installer (image onto its disk, Ignition) → reboot from its disk: ${t}` };
}

/**
 * Each machine that got to installed did so from a blank disk: nothing was on the disk
 * before power on (create() found it unallocated, its first MiB zeros), the installer
 * reported its steps in order (disk → write → grow → ignition → installed, from serve's
 * events), and the disk now holds the image's partition table with the root partition
 * grown to the disk's end.
 */
export async function installedFromBlankDisk(r: VmRun): Promise<Outcome> {
  const bad: string[] = [];
  const ok: string[] = [];
  for (const vm of r.machines.filter((v) => r.progress.installed(v.m.name))) {
    const n = vm.m.name;
    if (!vm.before?.blank) {
      bad.push(`${n}: the disk was not blank before power on (${vm.before?.detail ?? 'not checked'})`);
      continue;
    }
    const events = await machineEvents(r, n);
    const steps = events ? installerSteps(events) : [];
    if (steps.slice(0, INSTALL_STEPS.length).join(' → ') !== INSTALL_STEPS.join(' → ')) {
      bad.push(`${n}: the installer reported ${steps.join(' → ') || 'no steps'}${events ? '' : ' (no answer from the API)'}, not ${INSTALL_STEPS.join(' → ')}`);
      continue;
    }
    const t = partitions(vm.disk);
    const [boot, root] = t.parts;
    const end = root ? root.start + root.size : 0;
    if (t.parts.length !== 2 || boot!.type !== 'c' || root!.type !== '83' || t.sectors - end > 2048) {
      bad.push(`${n}: the disk's partitions are not the image's grown to the disk (${JSON.stringify(t.parts)}, ${t.sectors} sectors)`);
      continue;
    }
    ok.push(`${n} (${vm.hardware}; root partition ${Math.round((root!.size * t.sectorSize) / 1024 ** 2)} MiB)`);
  }
  if (bad.length) return { result: 'failed', detail: bad.join('; ') };
  if (!ok.length) return { result: 'failed', detail: 'no machine got to installed' };
  return { result: 'ok', detail: `blank before power on (nothing allocated, no partition table); the installer reported ${INSTALL_STEPS.join(' → ')}; the disk now holds BOOT + ROOT grown to its end: ${ok.join(', ')}` };
}

/** Every file of each machine's rendered root is on its disk, byte for byte. */
export async function filesMatchRender(r: VmRun): Promise<Outcome> {
  const bad: string[] = [];
  const checked = live(r);
  for (const vm of checked) {
    const want = renderedDigest(join(r.prepared.out, 'machines', vm.m.name, 'root'));
    await vm.waitFor(new RegExp(`root@${vm.m.name}`), 300_000);
    // One digest over every file's sha256 line: a short answer the console cannot garble.
    const digest = createHash('sha256').update(want.lines.join('\n') + '\n').digest('hex');
    // The path list goes over in pieces: a terminal line holds at most 4095 characters.
    await vm.sh('rm -f /tmp/slipway-paths', 30_000);
    for (let i = 0; i < want.paths.length; i += 20) {
      await vm.sh(`printf '%s\\n' ${want.paths.slice(i, i + 20).map((p) => `'.${p}'`).join(' ')} >> /tmp/slipway-paths`, 30_000);
    }
    let got = '';
    for (let i = 0; i < 3 && got !== digest; i++) {
      got = (await vm.sh(`cd / && xargs sha256sum < /tmp/slipway-paths | sed 's#  \\./# /#' | sort | sha256sum | cut -d' ' -f1`, 120_000)).trim().split('\n').pop() ?? '';
    }
    if (got !== digest) bad.push(vm.m.name);
  }
  return bad.length ? { result: 'failed', detail: `files differ on ${bad.join(', ')}` } : { result: 'ok', detail: `every file of each machine's rendered root is on its disk with the same sha256 (${checked.map((v) => v.m.name).join(', ')})` };
}

/** With serve (DHCP included) stopped, every machine still answers on its static address; serve is started again. */
export async function staticNetworking(r: VmRun): Promise<Outcome> {
  const { lab, prepared: p } = r;
  await lab.stopServe();
  await sleep(10_000);
  const silent: string[] = [];
  for (const vm of live(r)) {
    const ping = await lab.exec('/bin/busybox', ['ping', '-c', '3', '-W', '2', vm.m.ip], 20_000);
    if (ping.code !== 0) silent.push(vm.m.name);
  }
  await lab.startServe({ file: r.o.file, state: p.state, assets: p.assets, args: r.serveArgs, logFile: join(r.dir, 'serve.log') });
  return silent.length ? { result: 'failed', detail: `with the provisioner (DHCP) stopped, no answer from ${silent.join(', ')}` } : { result: 'ok', detail: `with the provisioner (DHCP included) stopped for 10 s, every machine still answered on its static address` };
}

/** Reset an installed machine: serve sends it to its disk, which boots without Ignition. */
export async function rebootFromDisk(r: VmRun): Promise<Outcome> {
  // an installed machine that has not failed since: serve sends those to their disk (a
  // failed one, such as an install whose unit failed, installs again)
  const vm = live(r).filter((v) => r.progress.installed(v.m.name) && r.progress.states.get(v.m.name)?.state !== 'failed').at(-1);
  if (!vm) return { result: 'failed', detail: 'no installed machine running' };
  const before = vm.console().length;
  await vm.reset();
  const t = Date.now();
  await vm.waitFor(/booting from local disk/, 180_000, before);
  // SYSLINUX reads the kernel and initramfs through the firmware's disk calls (~1.3 s
  // per MB under TCG, far more on a loaded host: CI saw the kernel still unpacking the
  // initramfs 120 s after iPXE's exit)
  await vm.waitFor(/not a first boot: booting the installed system/, 240_000, before);
  await vm.waitFor(new RegExp(`root@${vm.m.name}`), 180_000, before);
  const again = vm.console().slice(before);
  if (/ignition \S+ stage/.test(again)) return { result: 'failed', detail: `${vm.m.name}: Ignition ran again after reset` };
  return { result: 'ok', detail: `${vm.m.name} reset: serve told iPXE to boot locally, the disk booted without Ignition, console back after ${round(Date.now() - t)}s` };
}

/**
 * The API through the VIP. The units run, but under software emulation on a small host
 * the apiservers may not answer in time; that is reported as not-run with the evidence
 * (units active), never ok. Under KVM a silent API is a failure.
 */
export async function apiViaVip(r: VmRun, accel: 'kvm' | 'tcg'): Promise<Outcome> {
  const { units } = r;
  const skipped = [...units].filter(([, us]) => us.some((u) => u.unit === 'kube-apiserver.service' && u.state === 'not-started')).map(([n]) => n);
  if (skipped.length && skipped.length === [...units.values()].filter((us) => us.some((u) => u.unit === 'kube-apiserver.service')).length) {
    return { result: 'not-run', detail: `kube-apiserver.service was not started on ${skipped.join(', ')}: ${BIN}/kube-apiserver is not in the provisioner's assets${r.o.noKubernetes ? ' (--no-kubernetes)' : ''}` };
  }
  const api = await r.checks.apiViaVip(accel === 'kvm' ? 300_000 : 180_000);
  if (api.result === 'ok' || accel === 'kvm') return api;
  const active: string[] = [];
  for (const vm of live(r).filter((v) => hasRole(v.m, 'control-plane'))) {
    const state = (await vm.sh('systemctl is-active kube-apiserver', 30_000).catch(() => '?')).trim().split('\n').pop();
    if (state !== 'active') return { result: 'failed', detail: `kube-apiserver on ${vm.m.name} is ${state}; ${api.detail}` };
    active.push(vm.m.name);
  }
  return { result: 'not-run', detail: `kube-apiserver is active on ${active.join(', ')} but did not answer through the VIP within 180 s under TCG (software emulation, ${availableParallelism()} host cores for ${r.machines.filter((v) => v.running).length} running VMs): the containers engine proves the API; with KVM this check runs (${api.detail})` };
}

/**
 * bond-failover (issue 20) on every running machine with a bond: ok when each failed over
 * (vm/bond.ts); not-run, with the reason, when a VM lacks the member NICs to cut one.
 */
export async function bondFailovers(r: VmRun): Promise<Outcome> {
  const results: { name: string; o: Outcome }[] = [];
  for (const vm of live(r).filter((v) => nodeBond(v.m))) {
    await vm.waitFor(new RegExp(`root@${vm.m.name}`), 300_000);
    // the wire: the lab's pings answered through the active member before and after the
    // cut (tagged, when the node link is a VLAN)
    const wire = (mac: string) => answeredOnWire(r.lab.hub, { tap: vm.tapOf(mac)!, ip: vm.m.ip, vid: nodeVlan(vm.m) });
    results.push({ name: vm.m.name, o: await bondFailover({ sh: (c, t) => vm.sh(c, t), monitor: (c) => vm.monitorCommand(c), netdevOf: (mac) => vm.netdevOf(mac) }, vm.m, { wire }) });
  }
  if (!results.length) return { result: 'not-run', detail: 'no running machine has a bond' };
  const detail = results.map((x) => x.o.detail).join('; ');
  const worst = results.some((x) => x.o.result === 'failed') ? 'failed' : results.some((x) => x.o.result === 'not-run') ? 'not-run' : 'ok';
  return { result: worst, detail };
}
