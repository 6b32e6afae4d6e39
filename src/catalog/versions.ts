// Everything that differs between the Kubernetes versions Slipway renders for, as one
// table of data (kubeadm keeps such differences in data too). Phases read the profile;
// they never compare version strings themselves. Each entry was checked against the
// binaries' own --help (v1.20 built from Debian's source) and upstream release notes.

export const KNOWN_VERSIONS = [
  'v1.20.2', 'v1.21.14', 'v1.22.17', 'v1.23.17', 'v1.24.17', 'v1.25.16', 'v1.26.15',
  'v1.27.16', 'v1.28.15', 'v1.29.15', 'v1.30.14', 'v1.31.14', 'v1.32.10', 'v1.33.6', 'v1.34.2',
] as const;
export const NEWEST_VERSION = 'v1.34.2';
export const OLDEST_MINOR = 20;
export const NEWEST_MINOR = 34;

export interface VersionProfile {
  version: string;
  minor: number;
  /** kubelet: runtime given by flags (--container-runtime=remote ...) before 1.27; config field from 1.27 */
  kubeletRuntimeFlags: 'remote+endpoint' | 'endpoint' | 'config';
  /** apiserver/controller-manager/scheduler still have an insecure port to switch off (< 1.24) */
  insecurePortFlag: boolean;
  schedulerConfigAPI: string;
  kubeProxyConfigAPI: string;
  kubeletConfigAPI: string;
  /** pause image containerd uses as the sandbox */
  pauseImage: string;
  coreDNSImage: string;
  /** the etcd minor kubeadm pairs with this release (informational; Slipway's flags work for 3.4-3.6) */
  etcdVersion: string;
}

interface Row {
  from: number; // first minor the row applies to
  kubeletRuntimeFlags: VersionProfile['kubeletRuntimeFlags'];
  insecurePortFlag: boolean;
  schedulerConfigAPI: string;
  pause: string;
  /** full image reference: 1.20's CoreDNS predates the coredns/coredns repository path */
  coredns: string;
  etcd: string;
}

// Rows sorted by `from`; a version takes the last row whose `from` <= its minor.
const TABLE: Row[] = [
  { from: 20, kubeletRuntimeFlags: 'remote+endpoint', insecurePortFlag: true, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1beta1', pause: '3.2', coredns: 'registry.k8s.io/coredns:1.7.0', etcd: '3.4.13' },
  { from: 21, kubeletRuntimeFlags: 'remote+endpoint', insecurePortFlag: true, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1beta1', pause: '3.4.1', coredns: 'registry.k8s.io/coredns/coredns:v1.8.0', etcd: '3.4.13' },
  { from: 22, kubeletRuntimeFlags: 'remote+endpoint', insecurePortFlag: true, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1beta2', pause: '3.5', coredns: 'registry.k8s.io/coredns/coredns:v1.8.4', etcd: '3.5.0' },
  { from: 24, kubeletRuntimeFlags: 'endpoint', insecurePortFlag: false, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1beta3', pause: '3.7', coredns: 'registry.k8s.io/coredns/coredns:v1.8.6', etcd: '3.5.3' },
  { from: 25, kubeletRuntimeFlags: 'endpoint', insecurePortFlag: false, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1', pause: '3.8', coredns: 'registry.k8s.io/coredns/coredns:v1.9.3', etcd: '3.5.4' },
  { from: 27, kubeletRuntimeFlags: 'config', insecurePortFlag: false, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1', pause: '3.9', coredns: 'registry.k8s.io/coredns/coredns:v1.10.1', etcd: '3.5.7' },
  { from: 29, kubeletRuntimeFlags: 'config', insecurePortFlag: false, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1', pause: '3.9', coredns: 'registry.k8s.io/coredns/coredns:v1.11.1', etcd: '3.5.10' },
  { from: 31, kubeletRuntimeFlags: 'config', insecurePortFlag: false, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1', pause: '3.10', coredns: 'registry.k8s.io/coredns/coredns:v1.11.3', etcd: '3.5.15' },
  { from: 33, kubeletRuntimeFlags: 'config', insecurePortFlag: false, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1', pause: '3.10', coredns: 'registry.k8s.io/coredns/coredns:v1.12.0', etcd: '3.5.21' },
  { from: 34, kubeletRuntimeFlags: 'config', insecurePortFlag: false, schedulerConfigAPI: 'kubescheduler.config.k8s.io/v1', pause: '3.10.1', coredns: 'registry.k8s.io/coredns/coredns:v1.12.1', etcd: '3.6.4' },
];

export function parseVersion(v: string): { major: number; minor: number; patch: number } | undefined {
  const m = /^v(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : undefined;
}

/** The release of v's minor line that Slipway knows (its profile was checked against it), or undefined. */
export function knownRelease(v: string): string | undefined {
  const p = parseVersion(v);
  return p && KNOWN_VERSIONS.find((k) => parseVersion(k)!.minor === p.minor && p.major === 1);
}

export function isSupported(v: string): boolean {
  const p = parseVersion(v);
  return !!p && p.major === 1 && p.minor >= OLDEST_MINOR && p.minor <= NEWEST_MINOR;
}

export function versionProfile(v: string): VersionProfile {
  const p = parseVersion(v);
  if (!p || !isSupported(v)) throw new Error(`unsupported Kubernetes version ${v} (supported: v1.${OLDEST_MINOR}.x to v1.${NEWEST_MINOR}.x)`);
  let row = TABLE[0]!;
  for (const r of TABLE) if (r.from <= p.minor) row = r;
  return {
    version: v,
    minor: p.minor,
    kubeletRuntimeFlags: row.kubeletRuntimeFlags,
    insecurePortFlag: row.insecurePortFlag,
    schedulerConfigAPI: row.schedulerConfigAPI,
    kubeProxyConfigAPI: 'kubeproxy.config.k8s.io/v1alpha1',
    kubeletConfigAPI: 'kubelet.config.k8s.io/v1beta1',
    pauseImage: `registry.k8s.io/pause:${row.pause}`,
    coreDNSImage: row.coredns,
    etcdVersion: row.etcd,
  };
}
