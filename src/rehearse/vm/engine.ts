// `slipway rehearse --engine vm`: every machine of the cluster file as a QEMU VM with its
// own MAC on the lab bridge and a blank disk, installed the way a rack machine is —
// firmware → DHCP → iPXE → kernel + installer initramfs from `slipway serve` → the
// installer writes the OS image onto the disk, grows it, runs the real Ignition onto it,
// reports each step and reboots → serve says "boot local" → the disk's systemd starts the
// units, which fetch their binaries and report — then the checks of the install path
// (installed from a blank disk, files equal the render, static addresses survive a DHCP
// outage, a reset boots the disk) and of the cluster (etcd, VIP). The machines mix
// firmware, NICs and disk controllers (hardware.ts). The frame (run directory, lab,
// report, keep and cleanup) is ../runner.ts.
//
// The OS is Slipway's node OS (scripts/build-os-image.sh, docs/os-image.md), served from
// the assets as a rack's provisioner serves `slipway image build`'s output.
import type { Adjustment } from '../containers/adjustments.ts';
import { REHEARSAL_PRODUCT_NAME } from '../../catalog/os.ts';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { hasRole, type Machine } from '../../spec/types.ts';
import type { Lab } from '../lab/lab.ts';
import { RADVD } from '../lab/router-adverts.ts';
import { lostMachineChecks } from '../checks.ts';
import { preflight, RehearseError, which, type RehearseOptions } from '../preflight.ts';
import { writeRehearsalBundle } from '../bundle.ts';
import { versionProfile } from '../../catalog/versions.ts';
import { binariesFor } from '../../plan/phases/node.ts';
import type { Engine, LabRun, MachinesRun, Preflight, Run, Step } from '../engine.ts';
import { kvmWorks, VmMachine } from './qemu.ts';
import { DISK_BYTES, hardwareFor, missingFirmware } from './hardware.ts';
import { machineEvents, systemReported } from './install.ts';
import { apiViaVip, bondFailovers, filesMatchRender, installed, installedFromBlankDisk, live, rebootFromDisk, staticNetworking } from './checks.ts';
import { nodeBond } from './bond.ts';
import { nodeVlan } from './vlan.ts';
import { vlanToolsMissing } from '../lab/vlan.ts';
import { renderedUnits, unitStates } from './units.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A VM that has not asked for an address this long after power on never will. */
const SILENT_MS = 120_000;

const VM_TOOLS: { cmd: string; pkg: string }[] = [
  { cmd: 'qemu-system-x86_64', pkg: 'qemu-system-x86' },
  { cmd: 'setpriv', pkg: 'util-linux' },
  { cmd: 'debugfs', pkg: 'e2fsprogs' },
  { cmd: 'sfdisk', pkg: 'fdisk' },
];

type VmRun = MachinesRun<VmMachine>;

export class VmEngine implements Engine<VmMachine> {
  readonly name = 'vm';
  /** the one thing a rehearsal VM has that a rack machine has not */
  readonly adjustments: Adjustment[] = [{
    id: 'rehearsal-console-shell',
    what: `every VM carries the SMBIOS product name ${REHEARSAL_PRODUCT_NAME}: the node OS gives root a shell on its serial console`,
    why: 'the checks type into the serial console; a rack machine gets a login prompt there, root locked',
  }];
  readonly keptMachines = 'the VMs';
  readonly saysKeptRun = false;
  /** one API request may take this long: VMs under TCG answer slowly */
  readonly requestTimeoutSeconds = 60;
  private accel: 'kvm' | 'tcg' = 'tcg';

  preflight(o: RehearseOptions): Preflight {
    const pre = preflight({ spec: o.spec, binaries: o.binaries, noKubernetes: o.noKubernetes });
    const missing = VM_TOOLS.filter((t) => !which(t.cmd)).map((t) => `${t.cmd} (${t.pkg})`);
    missing.push(...missingFirmware(o.spec.machines.map((_, i) => hardwareFor(i))));
    if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun (the tun driver)');
    // a node link on a VLAN: its taps become lab switch ports (eBPF built by llc, loaded by tc)
    if (o.spec.machines.some((m) => nodeVlan(m))) {
      const vlanTools = vlanToolsMissing();
      if (vlanTools) missing.push(vlanTools);
      if (!which('tcpdump')) missing.push('tcpdump (tcpdump: bond-failover reads the tags on the wire)');
    }
    if (missing.length) throw new RehearseError(`the VM engine needs: ${missing.join(', ')}`);
    return pre;
  }

  /** KVM or TCG; the bundle of test images; the OS image is in the assets (setup.ts). */
  async prepare(r: Run): Promise<string[]> {
    const { spec, notes, prepared: p, pre, image } = r;
    notes.push(pre.binaries ? `binaries served from ${pre.binaries}; from the OS image: ${p.fromTree.join(', ')}` : `no Kubernetes binaries served (--no-kubernetes): from the OS image ${p.fromTree.join(', ')}; not offered: ${p.absent.join(', ')} (their units are skipped on the machines and listed per machine)`);
    this.accel = kvmWorks(join(image.dir, 'vmlinuz')) ? 'kvm' : 'tcg';
    notes.push(`VMs run under ${this.accel === 'kvm' ? 'KVM' : 'TCG (software emulation: KVM did not run a guest here)'}, 1 vCPU each`);
    const bundle = join(r.dir, 'bundle.tar');
    await writeRehearsalBundle(bundle, { name: spec.name, kubernetesVersion: spec.kubernetesVersion }, versionProfile(spec.kubernetesVersion).pauseImage);
    notes.push(`OS: Slipway's node OS ${image.dir} (scripts/build-os-image.sh), served as assets os/ (kernel, installer initramfs, disk.img.zst, os.json) as a rack's provisioner serves \`slipway image build\`'s output; every VM's disk is blank (${DISK_BYTES / 1024 ** 3} GiB, nothing written) and the installer writes the image onto it`);
    return ['--bundle', bundle];
  }

  labOpened(r: LabRun): void {
    r.notes.push(r.lab.advertiseRouter(r.dir)
      ? 'the lab network sends IPv6 router advertisements (radvd: no prefix, not a default router), as a segment with a router does: iPXE fetches its script at once instead of waiting ~16 s for one'
      : `no IPv6 router advertisements in the lab (${RADVD} is not installed: apt-get install radvd): each network boot waits ~16 s in iPXE for IPv6 to give up`);
  }

  /** A VM with the machine's MAC (or, --fault wrong-mac, another), its hardware row, a blank disk. */
  machine(r: LabRun, m: Machine, i: number): VmMachine {
    const { o, spec, notes } = r;
    const dir = join(r.dir, 'machines', m.name);
    mkdirSync(dir, { recursive: true });
    // --fault NAME=wrong-mac: the VM's NIC is not the one the file names.
    const nic = o.faults?.[m.name] === 'wrong-mac' ? { ...m, mac: `52:54:00:ff:${m.mac.slice(-5)}` } : m;
    if (nic !== m) notes.push(`fault injected: ${m.name}'s NIC has MAC ${nic.mac}, the file says ${m.mac}`);
    // --fault NAME=failing-unit: a stray file where its binaries go, planted after the
    // install (the directory of the first binary the provisioner offers it).
    const strayFileAt = o.faults?.[m.name] === 'failing-unit' ? dirname(binariesFor(m, spec.network.cni).find(([, name]) => !r.prepared.absent.includes(name))![0]) : undefined;
    if (strayFileAt) notes.push(`fault injected: ${m.name} installs onto its blank disk; before the installed system's first boot a stray file is planted at ${strayFileAt}, where its binaries go`);
    const vid = nodeVlan(m);
    if (vid) notes.push(`${m.name}'s node link is VLAN ${vid}: its taps are lab switch ports joining VLAN ${vid} to the lab segment (eBPF on tc, src/rehearse/lab/vlan.ts: this host's kernel has no 8021q), untagged towards it while it boots from the network, tagged once its installed system speaks on VLAN ${vid}`);
    const memoryMiB = hasRole(m, 'control-plane') && !o.noKubernetes ? 1536 : 1024;
    return new VmMachine({ machine: nic, hub: r.lab.hub, dir, hardware: hardwareFor(i), memoryMiB, tap: `vmtap${i}`, strayFileAt, accel: this.accel, outlive: o.keep });
  }

  /**
   * Power on every VM; wait until each is installed and up — the installer reported
   * `installed` and rebooted, and the installed system reported from the disk — or failed,
   * bounded. A machine the
   * provisioner never hears from is failed, with what the provisioner did see (an unknown
   * MAC, say), once the others are done and SILENT_MS have passed since power on: DHCP is
   * the firmware's first step (~3 s here, 32 s seen on a loaded host).
   */
  async bringUp(r: VmRun): Promise<void> {
    const { o, spec, progress, machines: vms } = r;
    for (const vm of vms) await vm.powerOn();
    progress.startPolling();

    const poweredOn = Date.now();
    const deadline = poweredOn + o.timeoutSeconds * 1000;
    // machines whose installed system has reported (read from their events once installed)
    const up = new Set<string>();
    const finished = (n: string) => up.has(n) || progress.states.get(n)?.state === 'failed';
    while (Date.now() < deadline && !o.signal?.aborted) {
      for (const m of spec.machines) {
        if (up.has(m.name) || !progress.installed(m.name)) continue;
        const events = await machineEvents(r, m.name);
        if (events && systemReported(events)) up.add(m.name);
      }
      if (spec.machines.every((m) => finished(m.name))) break;
      const silent = spec.machines.filter((m) => !progress.times.get(m.name)?.dhcp);
      if (silent.length && Date.now() - poweredOn > SILENT_MS && spec.machines.every((m) => finished(m.name) || silent.includes(m))) break;
      await sleep(2_000);
    }
    // Interrupted: stop here. The silent machines below are not silent, only not yet heard
    // from, and under --keep they must stay running as they are.
    if (o.signal?.aborted) {
      r.phase('install');
      throw new RehearseError('interrupted');
    }
    const seen = (await r.lab.api<{ discovered?: { mac: string }[] }>('/api/v1/machines', r.token))?.discovered ?? [];
    for (const m of spec.machines.filter((x) => !progress.times.get(x.name)?.dhcp)) {
      await vms.find((v) => v.m.name === m.name)?.powerOff(); // it would only burn a core
      r.failedMachines.set(m.name, `never asked the provisioner for an address${seen.length ? `; it saw unknown MAC(s) ${seen.map((d) => d.mac).join(', ')} on the segment: is ${m.name}'s mac (${m.mac}) in the file right?` : ' (no unknown MAC either: is the machine on this segment and set to boot from the network?)'}`);
    }
    r.phase('install');
  }

  checks(r: VmRun): Step[] {
    return [
      { check: 'installed', run: () => installed(r) },
      { check: 'installed-from-blank-disk', run: () => installedFromBlankDisk(r) },
      { check: 'files-match-render', run: () => filesMatchRender(r) },
      { check: 'etcd-healthy', run: () => r.checks.etcdHealthy(undefined, 300_000) },
      { check: 'static-networking', run: () => staticNetworking(r) },
      // issue 20: only when a machine has a bond
      ...(r.spec.machines.some((m) => nodeBond(m)) ? [{ check: 'bond-failover' as const, run: () => bondFailovers(r) }] : []),
      // Each machine's units, for the report, before a check resets or powers one off.
      { step: 'units', run: async () => {
        for (const vm of live(r)) {
          r.failedUnits.set(vm.m.name, await vm.failedUnits());
          r.units.set(vm.m.name, await unitStates(vm, renderedUnits(r.prepared.out, vm.m, r.spec)));
        }
      } },
      { check: 'reboot-from-disk', run: () => rebootFromDisk(r) },
      { check: 'api-via-vip', run: () => apiViaVip(r, this.accel) },
      // the VIP alone: five VMs under TCG cannot be asked to serve the API
      ...lostMachineChecks(r.checks, () => r.checks.vipMoves(), 240_000),
    ];
  }

  /** What a fault did (planted after the install, or why it could not), for the report. */
  async lastLook(r: VmRun): Promise<void> {
    for (const vm of r.machines) if (vm.faultNote) r.notes.push(`${vm.m.name}: ${vm.faultNote}`);
  }

  /** Which VM answers ARP for the VIP, seen from the lab. */
  async vipHolder(r: VmRun): Promise<string | undefined> {
    const { lab } = r;
    const vip = r.spec.controlPlane.vip;
    if (!vip) return undefined;
    await lab.exec('ip', ['neigh', 'flush', 'to', vip], 5_000);
    await lab.exec('/bin/busybox', ['ping', '-c', '1', '-W', '2', vip], 5_000);
    const n = await lab.exec('ip', ['neigh', 'show', 'to', vip], 5_000);
    const mac = /lladdr (\S+)/.exec(n.stdout)?.[1]?.toLowerCase();
    return r.machines.find((v) => v.m.mac.toLowerCase() === mac && v.running && !v.stopped)?.m.name;
  }

  /** The provisioner's lifecycle says ready. */
  ready(r: VmRun, name: string): boolean {
    return r.progress.states.get(name)?.state === 'ready';
  }

  keptReadme(dir: string, lab: Lab | undefined, vms: VmMachine[]): string {
    const serve = lab?.serve?.pid;
    const running = vms.filter((v) => v.pid);
    return [
      `VM rehearsal kept at ${dir}`,
      `lab namespace: ${lab?.hub.name ?? '-'} (slipway serve, pid ${serve ?? '-'}; its log: ${dir}/serve.log)`,
      `admin kubeconfig and every machine's rendered files: ${dir}/out/`,
      '',
      'VMs (serial console: socat - UNIX-CONNECT:<dir>/serial.sock; QEMU monitor: <dir>/monitor.sock):',
      ...vms.map((v) => `  ${v.m.name}: ${v.pid ? `qemu pid ${v.pid}` : 'powered off'}, ${dir}/machines/${v.m.name}/ (serial.log)`),
      '',
      'to remove everything:',
      `  kill ${[...running.map((v) => v.pid), ...(serve ? [serve] : [])].join(' ') || '(nothing running)'}`,
      ...(lab ? [`  ip netns delete ${lab.hub.name}`] : []),
      `  rm -rf ${dir}`,
    ].join('\n') + '\n';
  }
}
