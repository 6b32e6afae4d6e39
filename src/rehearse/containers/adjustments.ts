// Everything the containers rehearsal does differently from a real machine, in one place
// and as data: each adjustment says what it changes and why (the failure it avoids on a
// host whose cgroups are v1 and whose PID 1 is not systemd, measured in
// docs/kubernetes-build.md). The report lists them all. They are applied to the
// container's root after the real Ignition has written the machine's files; nothing
// here changes what `render` produces for real machines.
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { Machine } from '../../spec/types.ts';

export interface Adjustment {
  id: string;
  /** what is changed, for the report */
  what: string;
  /** the failure it avoids */
  why: string;
}

export interface AdjustmentContext {
  /** the provisioner, when the cluster file names no router (a default route is needed) */
  defaultGateway?: string;
}

export const ADJUSTMENTS: Adjustment[] = [
  { id: 'nspawn-host', what: 'systemd-nspawn --register=no --keep-unit --network-namespace-path=<machine namespace>', why: 'no systemd/machined on the host to register with; the machine namespace is made by the lab' },
  { id: 'nspawn-own-cgroup', what: 'each systemd-nspawn started in a cgroup2 directory of its own', why: "with --keep-unit nspawn runs the container in its caller's cgroup: the machines' systemds would share one tree and remove each other's unit cgroups (status 219/CGROUP)" },
  { id: 'nspawn-capabilities', what: '--capability=CAP_NET_ADMIN', why: 'keepalived moves the VIP and kube-proxy writes iptables rules' },
  { id: 'nspawn-syscalls', what: "--system-call-filter='add_key keyctl request_key bpf perf_event_open'", why: 'containerd, runc and kubelet use keyrings, bpf and perf_event_open' },
  { id: 'nspawn-cgroup2', what: 'SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1', why: 'a cgroup2 hierarchy inside the container for its systemd, kubelet and runc, on a cgroup v1 host' },
  { id: 'nspawn-writable-vfs', what: 'SYSTEMD_NSPAWN_API_VFS_WRITABLE=1', why: 'kubelet, kube-proxy and systemd-sysctl write /proc/sys' },
  { id: 'sysfs-read-only', what: '/sys remounted read-only early in boot (slipway-rehearsal-sysfs.service); /proc/sys stays writable', why: 'with a writable /sys systemd-networkd expects udev, which a container has not, and leaves every link "pending" forever' },
  { id: 'containerd-state-on-host', what: '/var/lib/containerd bound from a host directory', why: "containerd's overlayfs snapshotter cannot stack on the container's overlayfs root" },
  { id: 'os-networkd', what: 'systemd-networkd (+ wait-online) enabled in the Debian tree', why: 'Flatcar runs systemd-networkd; Debian enables no network manager by default. The machine\'s rendered .network file then configures its address' },
  { id: 'os-haproxy-keepalived-units', what: "Debian's haproxy and keepalived units enabled where the machine has their rendered configs", why: 'the rendered configs need a unit to run them; the Debian tree ships the units disabled' },
  { id: 'containerd-no-cgroups', what: 'containerd CRI: disable_cgroup = true, restrict_oom_score_adj = true, SystemdCgroup = false', why: 'no cgroup controllers are delegated to the container; the host bounding set lacks CAP_SYS_RESOURCE, so runc cannot set oom_score_adj=-998' },
  { id: 'kubelet-no-cgroups', what: 'kubelet: cgroupDriver cgroupfs, cgroupsPerQOS false, enforceNodeAllocatable []', why: 'no cgroup controllers to create QoS and pod cgroups in' },
  { id: 'dev-kmsg', what: '/dev/kmsg linked to /dev/console (tmpfiles.d)', why: "kubelet's OOM watcher opens /dev/kmsg, which a container has not" },
  { id: 'kube-proxy-conntrack', what: 'kube-proxy conntrack.maxPerCore: 0', why: 'nf_conntrack_max is host-wide and not writable from a network namespace' },
];

const UNITS = '/etc/systemd/system';

function want(root: string, target: string, unit: string, from = '/lib/systemd/system'): void {
  const link = join(root, UNITS, `${target}.wants`, unit);
  mkdirSync(dirname(link), { recursive: true });
  if (!existsSync(link)) symlinkSync(`${from}/${unit}`, link);
}

/** Edit a file that must exist and must contain `anchor` (a render change must not silently skip an adjustment). */
function edit(root: string, path: string, anchor: string | RegExp, fn: (text: string) => string, id: string): void {
  const file = join(root, path);
  if (!existsSync(file)) throw new Error(`adjustment ${id}: ${path} is missing from the machine's files`);
  const text = readFileSync(file, 'utf8');
  if (typeof anchor === 'string' ? !text.includes(anchor) : !anchor.test(text)) throw new Error(`adjustment ${id}: ${path} no longer contains ${anchor}`);
  writeFileSync(file, fn(text));
}

function editYaml(root: string, path: string, fn: (o: Record<string, unknown>) => void, id: string): void {
  edit(root, path, /kind:/, (t) => {
    const o = parse(t) as Record<string, unknown>;
    fn(o);
    return stringify(o);
  }, id);
}

const SYSFS_UNIT = `[Unit]
Description=slipway rehearse: read-only /sys, so systemd-networkd does not wait for udev
DefaultDependencies=no
Before=sysinit.target systemd-networkd.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount -o remount,bind,ro /sys

[Install]
WantedBy=sysinit.target
`;

export function applyFileAdjustments(root: string, ctx: AdjustmentContext): void {
  writeFileSync(join(root, UNITS, 'slipway-rehearsal-sysfs.service'), SYSFS_UNIT);
  want(root, 'sysinit.target', 'slipway-rehearsal-sysfs.service', UNITS);
  want(root, 'multi-user.target', 'systemd-networkd.service');
  want(root, 'sockets.target', 'systemd-networkd.socket');
  want(root, 'network-online.target', 'systemd-networkd-wait-online.service');
  if (ctx.defaultGateway) {
    const dropIn = join(root, '/etc/systemd/network/10-slipway.network.d/rehearsal-gateway.conf');
    mkdirSync(dirname(dropIn), { recursive: true });
    writeFileSync(dropIn, `# slipway rehearse: kubelet and kube-proxy want a default route\n[Network]\nGateway=${ctx.defaultGateway}\n`);
  }
  if (existsSync(join(root, 'etc/haproxy/haproxy.cfg')) && existsSync(join(root, UNITS, 'kube-apiserver.service'))) want(root, 'multi-user.target', 'haproxy.service');
  if (existsSync(join(root, 'etc/keepalived/keepalived.conf'))) want(root, 'multi-user.target', 'keepalived.service');

  edit(root, 'etc/containerd/config.toml', 'SystemdCgroup = true', (t) =>
    t.replace('SystemdCgroup = true', 'SystemdCgroup = false')
      .replace('[plugins."io.containerd.grpc.v1.cri"]\n', '[plugins."io.containerd.grpc.v1.cri"]\n  disable_cgroup = true\n  restrict_oom_score_adj = true\n'), 'containerd-no-cgroups');
  editYaml(root, 'var/lib/kubelet/config.yaml', (o) => {
    o.cgroupDriver = 'cgroupfs';
    o.cgroupsPerQOS = false;
    o.enforceNodeAllocatable = [];
  }, 'kubelet-no-cgroups');
  writeFileSync(join(root, 'etc/tmpfiles.d/slipway-rehearsal-kmsg.conf'), 'L /dev/kmsg - - - - /dev/console\n');
  editYaml(root, 'var/lib/kube-proxy/config.yaml', (o) => {
    o.conntrack = { ...(o.conntrack as object | undefined), maxPerCore: 0 };
  }, 'kube-proxy-conntrack');

  // containerd is started by kubelet's Wants=; Debian's package unit is disabled in the tree.
  want(root, 'multi-user.target', 'containerd.service');
}

/** The environment systemd-nspawn runs with (see the nspawn-* adjustments). */
export const NSPAWN_ENV = { SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1', SYSTEMD_NSPAWN_API_VFS_WRITABLE: '1' };

export function nspawnFlags(o: { root: string; machine: Machine; netnsPath: string; containerdDir: string }): string[] {
  return [
    '--quiet', '--boot', `--directory=${o.root}`, `--machine=${o.machine.name}`, `--hostname=${o.machine.name}`,
    '--register=no', '--keep-unit', `--network-namespace-path=${o.netnsPath}`,
    '--capability=CAP_NET_ADMIN', '--system-call-filter=add_key keyctl request_key bpf perf_event_open',
    '--console=passive',
    `--bind=${o.containerdDir}:/var/lib/containerd`,
  ];
}
