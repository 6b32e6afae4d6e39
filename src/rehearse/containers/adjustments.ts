// Everything the containers rehearsal does differently from a real machine, in one place:
// each adjustment says what it changes and why (the failure it avoids on a host whose
// cgroups are v1 and whose PID 1 is not systemd, measured in docs/kubernetes-build.md),
// and carries the code that does it — arguments and environment for systemd-nspawn, or a
// change to the container's root after the real Ignition has written the machine's
// files. The report lists them all; nothing here changes what `render` produces for real
// machines.
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { Machine } from '../../spec/types.ts';

/** An adjustment as the report lists it. */
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

/** What starting a machine's systemd-nspawn needs to know. */
export interface NspawnContext {
  root: string;
  machine: Machine;
  /** /run/netns/<the machine's namespace> */
  netnsPath: string;
  /** the host directory that becomes the container's /var/lib/containerd */
  containerdDir: string;
  /** the cgroup2 directory made for this container (see nspawn-own-cgroup) */
  cgroup: string;
}

/** An adjustment with the code that applies it: any of the hooks below. */
export interface AppliedAdjustment extends Adjustment {
  /** systemd-nspawn arguments */
  nspawnArgs?: (c: NspawnContext) => string[];
  /** systemd-nspawn's environment */
  nspawnEnv?: Record<string, string>;
  /** the command line that starts systemd-nspawn, around it */
  nspawnWrap?: (argv: string[], c: NspawnContext) => string[];
  /** a change to the container's root, after Ignition */
  root?: (root: string, c: AdjustmentContext) => void;
}

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

export const ADJUSTMENTS: AppliedAdjustment[] = [
  {
    id: 'nspawn-host', what: 'systemd-nspawn --register=no --keep-unit --network-namespace-path=<machine namespace>', why: 'no systemd/machined on the host to register with; the machine namespace is made by the lab',
    nspawnArgs: (c) => ['--register=no', '--keep-unit', `--network-namespace-path=${c.netnsPath}`],
  },
  {
    id: 'nspawn-own-cgroup', what: 'each systemd-nspawn started in a cgroup2 directory of its own', why: "with --keep-unit nspawn runs the container in its caller's cgroup: the machines' systemds would share one tree and remove each other's unit cgroups (status 219/CGROUP)",
    // the shell joins the cgroup, then becomes nspawn
    nspawnWrap: (argv, c) => ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', c.cgroup, ...argv],
  },
  {
    id: 'nspawn-capabilities', what: '--capability=CAP_NET_ADMIN', why: 'keepalived moves the VIP and kube-proxy writes iptables rules',
    nspawnArgs: () => ['--capability=CAP_NET_ADMIN'],
  },
  {
    id: 'nspawn-syscalls', what: "--system-call-filter='add_key keyctl request_key bpf perf_event_open'", why: 'containerd, runc and kubelet use keyrings, bpf and perf_event_open',
    nspawnArgs: () => ['--system-call-filter=add_key keyctl request_key bpf perf_event_open'],
  },
  {
    id: 'nspawn-cgroup2', what: 'SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1', why: 'a cgroup2 hierarchy inside the container for its systemd, kubelet and runc, on a cgroup v1 host',
    nspawnEnv: { SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' },
  },
  {
    id: 'nspawn-writable-vfs', what: 'SYSTEMD_NSPAWN_API_VFS_WRITABLE=1', why: 'kubelet, kube-proxy and systemd-sysctl write /proc/sys',
    nspawnEnv: { SYSTEMD_NSPAWN_API_VFS_WRITABLE: '1' },
  },
  {
    id: 'sysfs-read-only', what: '/sys remounted read-only early in boot (slipway-rehearsal-sysfs.service); /proc/sys stays writable', why: 'with a writable /sys systemd-networkd expects udev, which a container has not, and leaves every link "pending" forever',
    root: (root) => {
      writeFileSync(join(root, UNITS, 'slipway-rehearsal-sysfs.service'), SYSFS_UNIT);
      want(root, 'sysinit.target', 'slipway-rehearsal-sysfs.service', UNITS);
    },
  },
  {
    id: 'no-udev', what: "the image's udev masked (systemd-udevd, its sockets, trigger and settle)", why: 'a container has no devices to name or load drivers for (the real machine\'s udev does that for its NICs and disks); with /sys read-only udevd never starts, and its kernel socket, activated over and over by the host\'s uevents, fails with trigger-limit-hit',
    root: (root) => {
      for (const u of ['systemd-udevd.service', 'systemd-udevd-kernel.socket', 'systemd-udevd-control.socket', 'systemd-udev-trigger.service', 'systemd-udev-settle.service']) {
        if (!existsSync(join(root, 'lib/systemd/system', u))) throw new Error(`adjustment no-udev: the image has no ${u}`);
        const link = join(root, UNITS, u);
        rmSync(link, { force: true });
        symlinkSync('/dev/null', link);
      }
    },
  },
  {
    id: 'containerd-state-on-host', what: '/var/lib/containerd bound from a host directory', why: "containerd's overlayfs snapshotter cannot stack on the container's overlayfs root",
    nspawnArgs: (c) => [`--bind=${c.containerdDir}:/var/lib/containerd`],
  },
  {
    id: 'root-not-a-disk', what: "the image's /etc/fstab line for / (LABEL=ROOT) commented out", why: 'the container\'s root is an overlay of the OS image\'s root directory, not the disk\'s ext4 partition labelled ROOT: systemd-remount-fs would fail looking for it',
    root: (root) => edit(root, 'etc/fstab', /^LABEL=ROOT\s+\/\s/m, (t) => t.replace(/^(LABEL=ROOT\s+\/\s.*)$/m, '# slipway rehearse (a container has no ROOT disk): $1'), 'root-not-a-disk'),
  },
  {
    id: 'default-gateway-without-router', what: 'when the cluster file names no router: a networkd drop-in giving the machine the provisioner as its gateway', why: 'kubelet and kube-proxy want a default route; real machines of such a file get none (validate warns), the lab gives them one so the rest can be rehearsed',
    root: (root, c) => {
      if (!c.defaultGateway) return;
      const dropIn = join(root, '/etc/systemd/network/10-slipway.network.d/rehearsal-gateway.conf');
      mkdirSync(dirname(dropIn), { recursive: true });
      writeFileSync(dropIn, `# slipway rehearse: kubelet and kube-proxy want a default route\n[Network]\nGateway=${c.defaultGateway}\n`);
    },
  },
  {
    id: 'containerd-no-cgroups', what: 'containerd CRI: disable_cgroup = true, restrict_oom_score_adj = true, SystemdCgroup = false', why: 'no cgroup controllers are delegated to the container; the host bounding set lacks CAP_SYS_RESOURCE, so runc cannot set oom_score_adj=-998',
    root: (root) => edit(root, 'etc/containerd/config.toml', 'SystemdCgroup = true', (t) =>
      t.replace('SystemdCgroup = true', 'SystemdCgroup = false')
        .replace('[plugins."io.containerd.grpc.v1.cri"]\n', '[plugins."io.containerd.grpc.v1.cri"]\n  disable_cgroup = true\n  restrict_oom_score_adj = true\n'), 'containerd-no-cgroups'),
  },
  {
    id: 'kubelet-no-cgroups', what: 'kubelet: cgroupDriver cgroupfs, cgroupsPerQOS false, enforceNodeAllocatable []', why: 'no cgroup controllers to create QoS and pod cgroups in',
    root: (root) => editYaml(root, 'var/lib/kubelet/config.yaml', (o) => {
      o.cgroupDriver = 'cgroupfs';
      o.cgroupsPerQOS = false;
      o.enforceNodeAllocatable = [];
    }, 'kubelet-no-cgroups'),
  },
  {
    id: 'dev-kmsg', what: '/dev/kmsg linked to /dev/console (tmpfiles.d)', why: "kubelet's OOM watcher opens /dev/kmsg, which a container has not",
    root: (root) => writeFileSync(join(root, 'etc/tmpfiles.d/slipway-rehearsal-kmsg.conf'), 'L /dev/kmsg - - - - /dev/console\n'),
  },
  {
    id: 'kube-proxy-conntrack', what: 'kube-proxy conntrack.maxPerCore: 0', why: 'nf_conntrack_max is host-wide and not writable from a network namespace',
    root: (root) => editYaml(root, 'var/lib/kube-proxy/config.yaml', (o) => {
      o.conntrack = { ...(o.conntrack as object | undefined), maxPerCore: 0 };
    }, 'kube-proxy-conntrack'),
  },
];

/** Every row's change to the container's root (after the real Ignition wrote the machine's files). */
export function adjustRoot(root: string, c: AdjustmentContext): void {
  for (const a of ADJUSTMENTS) a.root?.(root, c);
}

/** The command line and environment that start the container: systemd-nspawn as every row adjusts it. */
export function nspawnCommand(c: NspawnContext): { argv: string[]; env: Record<string, string> } {
  let argv = [
    'systemd-nspawn', '--quiet', '--boot', `--directory=${c.root}`, `--machine=${c.machine.name}`, `--hostname=${c.machine.name}`, '--console=passive',
    ...ADJUSTMENTS.flatMap((a) => a.nspawnArgs?.(c) ?? []),
  ];
  for (const a of ADJUSTMENTS) if (a.nspawnWrap) argv = a.nspawnWrap(argv, c);
  return { argv, env: Object.assign({}, ...ADJUSTMENTS.map((a) => a.nspawnEnv ?? {})) };
}
