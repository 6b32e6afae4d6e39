// What a rehearsal checks before it touches anything, and what every engine is given:
// root, the tools (named by their Debian packages), the Kubernetes binaries and their
// versions against the file's, and the cached OS image the machines run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Spec } from '../spec/types.ts';
import { IGNITION_BIN } from './containers/machine.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CACHE = process.env.SLIPWAY_CACHE ?? '/var/cache/slipway';

/** Bad input or a host that cannot rehearse: a clear message, nothing created. */
export class RehearseError extends Error {}

export interface RehearseOptions {
  file: string;
  spec: Spec;
  /** directory with kube-apiserver, kubelet, ... (default: the cached Debian-source build for the file's version) */
  binaries?: string;
  keep: boolean;
  /** seconds to wait for every node to be Ready */
  timeoutSeconds: number;
  /** progress lines */
  log: (line: string) => void;
  /** set when the operator interrupts: stop waiting and clean up */
  signal?: AbortSignal;
  /** machines to break on purpose, to see what a broken machine looks like (VM engine) */
  faults?: Record<string, Fault>;
  /**
   * Serve no Kubernetes binaries (VM engine): the machines install etcd, haproxy,
   * keepalived and the CNI plugins, and their Kubernetes units are skipped and reported
   * as not started, as with a bundle that has no Kubernetes release.
   */
  noKubernetes?: boolean;
  /** the lab's web console on the host at 127.0.0.1:PORT (0/undefined: a free port; false: none) */
  consolePort?: number | false;
}

/**
 * wrong-mac: the machine's NIC has another MAC than the file says (a typo in the file).
 * failing-unit: the machine installs onto its blank disk as every machine does; between
 * the installer's reboot and the installed system's first boot a stray file is planted
 * where its binaries go (the directory of the first one the provisioner offers it:
 * /opt/bin or /opt/cni/bin), so its slipway-binaries.service fails.
 */
export type Fault = 'wrong-mac' | 'failing-unit';
export const FAULTS: Fault[] = ['wrong-mac', 'failing-unit'];

const KUBE_BINARIES = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'kubectl'];

interface Tool {
  cmd: string;
  pkg: string;
  why: string;
}
const TOOLS: Tool[] = [
  { cmd: 'systemd-nspawn', pkg: 'systemd-container', why: 'boots each machine as a system container' },
  { cmd: 'ip', pkg: 'iproute2', why: 'makes the lab network namespaces' },
  { cmd: 'curl', pkg: 'curl', why: 'fetches from the provisioner inside the lab' },
  { cmd: '/bin/busybox', pkg: 'busybox-static', why: 'DHCP client for installing; the test images' },
  { cmd: IGNITION_BIN, pkg: 'ignition', why: 'applies each machine\'s ignition.json' },
  { cmd: 'etcdctl', pkg: 'etcd-client', why: 'checks the etcd cluster from the lab' },
  { cmd: 'debootstrap', pkg: 'debootstrap', why: 'builds the Debian tree the OS image is made from (once, cached)' },
  { cmd: 'nsenter', pkg: 'util-linux', why: 'looks inside the containers' },
];

/** The command's path (an absolute one: if it exists), or undefined. */
export function which(cmd: string): string | undefined {
  if (cmd.startsWith('/')) return existsSync(cmd) ? cmd : undefined;
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export const defaultBinaries = (version: string) => join(CACHE, 'kubernetes', version, 'bin');

/** Everything that can be checked before touching anything. */
export function preflight(o: { spec: Spec; binaries?: string; noKubernetes?: boolean; uid?: number }): { binaries?: string; etcdctl: string } {
  if ((o.uid ?? process.getuid?.() ?? 0) !== 0) throw new RehearseError('slipway rehearse needs root (network namespaces, mounts, systemd-nspawn): run it with sudo');
  const missing = TOOLS.filter((t) => !which(t.cmd));
  if (missing.length) {
    throw new RehearseError(`missing tools: ${missing.map((t) => `${t.cmd} (Debian package ${t.pkg}: ${t.why})`).join('; ')}\n  install with: apt-get install ${[...new Set(missing.map((t) => t.pkg))].join(' ')}`);
  }
  if (o.noKubernetes) {
    if (o.binaries) throw new RehearseError('--binaries and --no-kubernetes exclude each other');
    return { binaries: undefined, etcdctl: which('etcdctl')! };
  }
  const version = o.spec.kubernetesVersion;
  const binaries = o.binaries ?? defaultBinaries(version);
  if (!existsSync(binaries)) {
    throw new RehearseError(o.binaries ? `--binaries ${binaries}: no such directory` : `no Kubernetes binaries for ${version} in ${binaries}: pass --binaries DIR, or build them from Debian's source with scripts/build-kubernetes.sh ${version} (Debian 12 ships the v1.20.2 source)`);
  }
  const absent = KUBE_BINARIES.filter((b) => !existsSync(join(binaries, b)));
  if (absent.length) throw new RehearseError(`${binaries} lacks ${absent.join(', ')}`);
  for (const b of KUBE_BINARIES) {
    const r = spawnSync(join(binaries, b), b === 'kubectl' ? ['version', '--client', '--short'] : ['--version'], { encoding: 'utf8', timeout: 30_000 });
    const got = /v\d+\.\d+\.\d+\S*/.exec(r.stdout + r.stderr)?.[0];
    if (got !== version) throw new RehearseError(`${join(binaries, b)} is ${got ?? 'of unknown version'}, but the cluster file says kubernetesVersion: ${version}`);
  }
  if (o.spec.network.cni === 'flannel' && !existsSync(join(binaries, 'flanneld'))) {
    throw new RehearseError(`network.cni is flannel, but ${binaries} has no flanneld (Debian packages no flannel, and no release can be downloaded here): set network.cni: bridge in the cluster file, or put flanneld and cni/flannel into the binaries directory`);
  }
  return { binaries, etcdctl: which('etcdctl')! };
}

/** The OS image's files (scripts/build-os-image.sh): what every rehearsal's machines run. */
export interface OsImage {
  /** the image directory: vmlinuz, initrd.img (the installer), disk.img.zst, os.json, root/ */
  dir: string;
  /** the exact directory its ext4 root was made from (the containers boot it) */
  root: string;
}

/**
 * Slipway's node OS, the one real machines install (built once by the project script,
 * then cached): the VM engine serves its installer and disk image, the containers engine
 * boots its root directory.
 */
export function osImage(log: (l: string) => void): OsImage {
  log('OS image: scripts/build-os-image.sh (cached after the first build)');
  const r = spawnSync('bash', [join(REPO, 'scripts/build-os-image.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 1_800_000 });
  const dir = r.stdout?.trim().split('\n').pop();
  const files = ['vmlinuz', 'initrd.img', 'disk.img.zst', 'os.json', 'root'];
  if (r.status !== 0 || !dir || files.some((f) => !existsSync(join(dir, f)))) throw new RehearseError(`could not build the OS image (scripts/build-os-image.sh exited ${r.status}${dir ? `; ${dir} lacks ${files.filter((f) => !existsSync(join(dir, f))).join(', ')}` : ''})`);
  return { dir, root: join(dir, 'root') };
}
