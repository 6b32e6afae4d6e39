// Virtual machines on the lab bridge: qemu-system-x86_64 under TCG (no KVM needed) with
// one virtio-net-pci NIC on a tap that is a port of the lab's br0, network-booting
// through the NIC's option ROM — Debian's ipxe-qemu efi-virtio.rom, which QEMU loads for
// virtio-net-pci by default and which holds iPXE for both SeaBIOS and OVMF — as a
// bare-metal machine boots through its PXE ROM on the provisioning LAN.
//
//   const vm = await Vm.start(lab.hub, { name: 'cp1', mac: '52:54:00:20:30:11', dir });
//   try { await vm.waitFor(/SLIPWAY-E2E: \S+ reported/, 90_000); } finally { await vm.stop(); }
//
// The serial console is the VM's only console (-nographic: SeaBIOS mirrors the BIOS
// console, so SeaBIOS's and iPXE's messages, to it; OVMF and Linux print there anyway).
// It is a unix socket: output is kept in memory for waitFor() and in a log file for
// people; input lets a test type at iPXE's prompt (see pressCtrlB).
//
// The QEMU process, its tap and its console are the VM rehearsal's own
// (src/rehearse/vm/qemu.ts); here are what the boot tests add: TCG always, firmware
// (SeaBIOS or OVMF, UEFI HTTP boot), -no-reboot, and waits that know the test initramfs.
//
// The VM runs inside the hub namespace, where br0 and its tap are. stop() kills qemu by
// its PID and deletes the tap; Netns.close() would kill it too.
import { OVMF_CODE, OVMF_VARS, ovmfArgs } from '../../src/rehearse/vm/hardware.ts';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import type { Netns } from './netns.ts';
import { addTap, delTap, Qemu, QEMU } from '../../src/rehearse/vm/qemu.ts';
import { RADVD, startRouterAdverts } from '../../src/rehearse/lab/router-adverts.ts';
import { Lab } from './serve.ts';
import { EXAMPLE_HA, slipway } from './cli.ts';
import { IGNITION_BIN, installBootImage, testBootImage, treeDigest, type BootImage } from './initramfs.ts';

export { QEMU };
/** Debian ovmf: UEFI code (read-only) and the template for a VM's own variable store (the rehearsal's). */
export { OVMF_CODE, OVMF_VARS };

export interface VmOptions {
  /** for the log file's name and qemu's -name */
  name: string;
  mac: string;
  /** a directory for this VM's serial log (and UEFI variable store) */
  dir: string;
  /** MiB. The initramfs (~17 MB packed, ~35 MB unpacked) and Ignition run in RAM. */
  memory?: number;
  /** virtual CPUs (default 1) */
  cpus?: number;
  firmware?: 'bios' | 'uefi';
  /**
   * UEFI HTTP boot by the firmware itself (uefi only): the NIC gets no option ROM, so
   * OVMF's own virtio-net driver and network stack (HttpBootDxe) boot it, and OVMF's PXE
   * is switched off (fw_cfg) so the NIC's boot options are HTTP only: no TFTP at all.
   */
  httpBoot?: boolean;
  /**
   * A disk image (qcow2, e.g. a copy-on-write overlay of the rehearsal VM image) as a
   * virtio disk that boots after the NIC: when iPXE exits ("boot from local disk"), the
   * firmware goes on to it.
   */
  disk?: string;
  /** the hardware clock's start (QEMU -rtc base=...), e.g. years off as a new machine's can be */
  rtc?: string;
}

let tapCount = 0;

export class Vm {
  readonly name: string;
  readonly mac: string;
  readonly log: string;
  readonly tap: string;
  /** performance.now() when qemu was spawned: the "power on" of every timing */
  readonly startedAt: number;
  /** the same moment as Date.now(), to compare with the server's event times */
  readonly wallStart: number;
  /** the QEMU process (the rehearsal's own: src/rehearse/vm/qemu.ts) */
  readonly qemu: Qemu;
  private readonly hub: Netns;
  private stopped = false;

  private constructor(hub: Netns, qemu: Qemu, o: { name: string; mac: string; log: string; tap: string; startedAt: number; wallStart: number }) {
    this.hub = hub;
    this.qemu = qemu;
    this.name = o.name;
    this.mac = o.mac;
    this.log = o.log;
    this.tap = o.tap;
    this.startedAt = o.startedAt;
    this.wallStart = o.wallStart;
  }

  /** Create the tap on br0 and power the VM on; it network-boots at once. */
  static async start(hub: Netns, o: VmOptions): Promise<Vm> {
    // Tap names only need to be unique in the hub namespace, which this process owns.
    const tap = `tap${tapCount++}`;
    addTap(hub, tap);
    try {
      mkdirSync(o.dir, { recursive: true });
      const log = join(o.dir, `${o.name}.serial.log`);
      // A guest that powers off (the test initramfs does when it is done) ends qemu; a
      // reset ends it too instead of booting, and installing, a second time.
      const extraArgs = ['-no-reboot', ...(o.rtc ? ['-rtc', `base=${o.rtc}`] : [])];
      if (o.firmware === 'uefi') {
        if (!existsSync(OVMF_CODE)) throw new Error(`${OVMF_CODE} missing: install Debian's ovmf`);
        const vars = join(o.dir, `${o.name}.OVMF_VARS.fd`);
        copyFileSync(OVMF_VARS, vars);
        extraArgs.push(...ovmfArgs(vars));
        // OvmfPkg/RUNTIME_CONFIG.md: without PXE the NIC's first boot option is UEFI HTTPv4
        if (o.httpBoot) extraArgs.push('-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=no', '-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=no');
      } else if (o.httpBoot) throw new Error('httpBoot needs firmware: uefi');
      const startedAt = performance.now();
      const wallStart = Date.now();
      const qemu = await Qemu.start({
        hub, name: o.name, mac: o.mac, tap, memoryMiB: o.memory ?? 384, cpus: o.cpus, accel: 'tcg',
        serialSocket: join(o.dir, `${o.name}.serial.sock`), serialLog: log, disk: o.disk,
        // romfile= (empty): no iPXE ROM; the firmware's own driver runs the NIC
        nicOptions: o.httpBoot ? ',romfile=' : undefined,
        extraArgs,
      });
      return new Vm(hub, qemu, { name: o.name, mac: o.mac, log, tap, startedAt, wallStart });
    } catch (e) {
      delTap(hub, tap);
      throw e;
    }
  }

  get child(): ChildProcess {
    return this.qemu.child;
  }

  /** The serial console so far, as a terminal shows it (escape sequences gone, backspaces applied). */
  serial(): string {
    return this.qemu.console();
  }

  get exited(): boolean {
    return !this.qemu.running;
  }

  /** ms since power on */
  elapsed(): number {
    return Math.round(performance.now() - this.startedAt);
  }

  /**
   * Wait until the serial console matches `re`; returns the match and the ms since power
   * on. Throws with the console's tail on timeout, on a "SLIPWAY-E2E: ... FAILED" line
   * from the initramfs, or when qemu exits first.
   */
  async waitFor(re: RegExp, timeoutMs: number): Promise<{ match: RegExpMatchArray; ms: number }> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const text = this.serial();
      const m = text.match(re);
      if (m) return { match: m, ms: this.elapsed() };
      const failed = /SLIPWAY-E2E: \S+ FAILED .*/.exec(text);
      if (failed) throw new Error(`${this.name}: ${failed[0]}\n${this.tail()}`);
      if (this.exited) {
        await new Promise((r) => setTimeout(r, 100)); // the last output may still be in the socket
        const last = this.serial().match(re);
        if (last) return { match: last, ms: this.elapsed() };
        throw new Error(`${this.name}: qemu exited (${this.child.exitCode ?? this.child.signalCode}) before ${re}\n${this.qemu.stderr}\n${this.tail()}`);
      }
      if (performance.now() >= deadline) throw new Error(`${this.name}: no ${re} after ${timeoutMs} ms\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Wait for qemu to exit by itself (the guest powered off); false on timeout. */
  waitExit(timeoutMs: number): Promise<boolean> {
    return this.qemu.waitExit(timeoutMs);
  }

  /** Type at the serial console (iPXE reads it through SeaBIOS's serial console). */
  type(text: string): void {
    this.qemu.write(text);
  }

  /**
   * Enter the iPXE shell: when iPXE offers "Press Ctrl-B for the iPXE command line"
   * (for two seconds before it boots), press Ctrl-B until the iPXE> prompt shows.
   */
  async pressCtrlB(timeoutMs: number): Promise<void> {
    await this.waitFor(/Press Ctrl-B for the iPXE command line/, timeoutMs);
    const deadline = performance.now() + 5_000;
    while (!/iPXE> /.test(this.serial())) {
      if (performance.now() >= deadline) throw new Error(`${this.name}: no iPXE> prompt after Ctrl-B\n${this.tail()}`);
      this.type('\x02');
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * Run one iPXE shell command: typed a key at a time, each waited for until iPXE echoes
   * it, then Enter. Keys reach iPXE through the BIOS keyboard buffer, which holds 15:
   * a whole line typed at once is cut short when the guest is slow to read (TCG on a
   * busy host).
   */
  async ipxe(command: string): Promise<void> {
    for (const key of command) {
      const before = this.qemu.rawConsole.length;
      this.type(key);
      const deadline = performance.now() + 10_000;
      while (!this.qemu.rawConsole.slice(before).includes(key)) {
        if (performance.now() >= deadline) throw new Error(`${this.name}: iPXE did not echo ${JSON.stringify(key)} of ${JSON.stringify(command)}\n${this.tail()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    this.type('\r');
  }

  /** The last lines of the serial console, for failure messages. */
  tail(lines = 40): string {
    return `--- ${this.name} serial console (last ${lines} lines; full log ${this.log}) ---\n${this.qemu.tail(lines)}`;
  }

  /** Kill qemu (by its PID) and delete the tap. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.hub.kill(this.qemu.child, 1_000);
    await this.qemu.kill();
    delTap(this.hub, this.tap);
  }
}

// --- the lab the QEMU test and bench boot into ------------------------------------------

export const BASE = 'http://10.20.30.2:8080';

/** What a QEMU boot needs that is not here, named by the Debian package that brings it. */
export function missingForQemu(): string[] {
  const missing: string[] = [];
  const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { timeout: 5_000 }).status === 0;
  if (!has(QEMU)) missing.push('qemu-system-x86');
  if (!existsSync('/usr/share/qemu/efi-virtio.rom') && !existsSync('/usr/lib/ipxe/qemu/efi-virtio.rom')) missing.push('ipxe-qemu');
  if (!existsSync('/usr/lib/ipxe/undionly.kpxe')) missing.push('ipxe');
  if (!existsSync('/usr/lib/PXELINUX/pxelinux.0')) missing.push('pxelinux');
  if (!existsSync('/usr/lib/syslinux/modules/bios/ldlinux.c32')) missing.push('syslinux-common');
  if (!existsSync(OVMF_CODE)) missing.push('ovmf');
  if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox')) missing.push('busybox-static');
  if (!existsSync(IGNITION_BIN)) missing.push('ignition');
  if (!has('cpio')) missing.push('cpio');
  if (!has('setpriv')) missing.push('util-linux');
  if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun (the tun module)');
  try {
    const releases = spawnSync('sh', ['-c', 'ls /boot/vmlinuz-* /lib/modules/*/modules.dep'], { encoding: 'utf8', timeout: 5_000 }).stdout;
    if (!/vmlinuz/.test(releases) || !/modules\.dep/.test(releases)) missing.push('linux-image-amd64');
  } catch {
    missing.push('linux-image-amd64');
  }
  return missing;
}

/**
 * examples/lab.yaml (or `file`, a cluster file with the same provisioner section, e.g.
 * examples/rehearsal.yaml) plus a DHCP pool: without one an unknown MAC gets no address
 * at all, so it could never be told anything (with --unknown local, to boot from its disk).
 */
export function qemuClusterFile(file = EXAMPLE_HA): string {
  const example = readFileSync(file, 'utf8');
  const withPool = example.replace(/(\n      dns: \[10\.20\.30\.1\]\n)/, '$1      pool: { start: 10.20.30.100, end: 10.20.30.199 }\n');
  if (withPool === example) throw new Error(`${file} changed: cannot add a DHCP pool after its dns line`);
  return withPool;
}

/** A machine's events as the operator API shows them. */
export interface MachineEvent {
  id: number;
  from: string;
  to: string;
  at: string;
  source: string;
  detail?: Record<string, unknown>;
}

/** ms from power on to each lifecycle step the server saw, for one boot. */
export interface BootTimeline {
  machine: string;
  /** first DHCP request of the boot */
  dhcp?: number;
  /** the boot script: /ipxe/mac/<mac>.ipxe over HTTP, or pxelinux.cfg/01-<mac> over TFTP */
  script?: number;
  /** the machine's Ignition config */
  config?: number;
  /** its report arrived */
  reported?: number;
}

/**
 * The lab for real VMs: examples/lab.yaml (+ a pool), or the cluster file given, served
 * by `slipway serve` in the hub namespace, the test boot image as its assets, and the same
 * cluster rendered with the same state directory, so machines/<name>/root/ is exactly
 * what each machine must get.
 */
export class QemuLab {
  readonly lab: Lab;
  readonly assets: string;
  /** the latest render (a reprovision renders again, into a new directory) */
  rendered: string;
  readonly image: BootImage;
  private radvd?: ChildProcess;
  private renders = 0;

  private constructor(lab: Lab, image: BootImage) {
    this.lab = lab;
    this.image = image;
    this.assets = join(lab.dir, 'assets');
    this.rendered = join(lab.dir, 'rendered');
  }

  /**
   * Render the cluster with the lab's state. A new directory each time after the first,
   * switched to only once complete: a concurrent expected() reads one whole render.
   */
  private render(): void {
    const out = this.renders++ === 0 ? this.rendered : join(this.lab.dir, `rendered-${this.renders}`);
    const r = slipway(['render', '-f', this.lab.file, '-o', out, '--state', this.lab.state]);
    if (r.code !== 0) throw new Error(`slipway render failed: ${r.stderr}`);
    this.rendered = out;
  }

  /**
   * Build (or take from the cache) the boot image, create the lab for `clusterYaml`
   * (default: examples/lab.yaml + a pool), render. Serve is not started.
   */
  static async create(clusterYaml = qemuClusterFile(), o: { routerAdverts?: boolean } = {}): Promise<QemuLab> {
    const image = testBootImage();
    const lab = Lab.create(clusterYaml);
    try {
      const q = new QemuLab(lab, image);
      if (o.routerAdverts ?? true) q.advertiseRouter();
      installBootImage(image, q.assets);
      // render creates the state (PKI, tokens) serve will then load: the same files
      q.render();
      return q;
    } catch (e) {
      await lab.close();
      throw e;
    }
  }

  /**
   * IPv6 router advertisements on the bridge (radvd), as a VM rehearsal's lab has them:
   * iPXE then fetches its script at once instead of waiting ~16 s for IPv6 to give up.
   * On by default (create's `routerAdverts`); the boot bench measures both.
   */
  advertiseRouter(): void {
    if (this.radvd) return;
    this.radvd = startRouterAdverts(this.lab.hub, 'br0', this.lab.dir);
    if (!this.radvd) console.error(`boot tests: no ${RADVD} (apt-get install radvd): each network boot waits ~16 s for IPv6 to give up`);
  }

  async stopAdvertisingRouter(): Promise<void> {
    if (this.radvd) await this.lab.hub.kill(this.radvd);
    this.radvd = undefined;
  }

  /** (Re)start `slipway serve` with the assets and `args`. */
  async serve(args: string[] = []): Promise<void> {
    await this.lab.stop();
    await this.lab.start(['--assets', this.assets, ...args]);
  }

  /**
   * The operator's reprovision. serve gives the machine a new report token (in the state's
   * tokens.json) before it answers, so its files change: render again to know them.
   */
  async reprovision(machine: string): Promise<void> {
    await this.api(`/api/v1/machines/${machine}/reprovision`, 'POST');
    this.render();
  }

  /** The digest a machine's initramfs must report: over its rendered root. */
  expected(machine: string): { digest: string; files: number } {
    const { digest, files } = treeDigest(join(this.rendered, 'machines', machine, 'root'));
    return { digest, files };
  }

  /** GET (or POST) the operator API from inside the lab; parsed JSON. */
  async api<T>(path: string, method = 'GET'): Promise<T> {
    const r = await this.lab.hub.exec('curl', ['-sS', '-f', '-m', '10', '-X', method, '-H', `Authorization: Bearer ${this.lab.apiToken()}`, `${BASE}${path}`], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`${method} ${path}: ${r.out}`);
    return JSON.parse(r.stdout) as T;
  }

  async machine(name: string): Promise<{ state: string; events: MachineEvent[] }> {
    return this.api(`/api/v1/machines/${name}`);
  }

  /** Prometheus text from /metrics. */
  async metrics(): Promise<string> {
    const r = await this.lab.hub.exec('curl', ['-sS', '-f', '-m', '10', `${BASE}/metrics`], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`/metrics: ${r.out}`);
    return r.stdout;
  }

  /** The server's view of one boot: its events since the VM was powered on. */
  async timeline(vm: Vm, machine: string): Promise<BootTimeline> {
    const { events } = await this.machine(machine);
    const since = (to: string) => {
      const e = events.find((ev) => ev.to === to && Date.parse(ev.at) >= vm.wallStart);
      return e ? Date.parse(e.at) - vm.wallStart : undefined;
    };
    return { machine, dhcp: since('dhcp'), script: since('booting'), config: since('config-fetched'), reported: since('installed') };
  }

  async close(): Promise<void> {
    await this.lab.close();
  }
}

/** "cp1: DHCP 2.3 s, script 18.4 s, config 25.4 s, reported 26.7 s" */
export function formatTimeline(t: BootTimeline): string {
  const s = (ms?: number) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
  return `${t.machine}: DHCP ${s(t.dhcp)}, script ${s(t.script)}, config ${s(t.config)}, reported ${s(t.reported)}`;
}
