// What a cluster is made of and what it needs, as data, beside the version table: the
// roles a machine can have, the pod networks Slipway renders, the binaries each fetches
// from the provisioner, the registries containerd mirrors, the ports Slipway itself uses.
// Below spec (the schema checks a file against it); phases, bundle and rehearse read it.

export const ROLES = ['control-plane', 'etcd', 'worker'] as const;
export type Role = (typeof ROLES)[number];

/** flannel: vxlan overlay; bridge: fixed per-machine /24 slices of podCIDR, routed on one L2 segment */
export const CNIS = ['flannel', 'bridge'] as const;
export type Cni = (typeof CNIS)[number];

/** What machines fetch from /assets/bin/, by role (every machine runs the node's two). */
const BINARIES: { roles: readonly Role[] | 'all'; names: readonly string[] }[] = [
  { roles: ['etcd'], names: ['etcd', 'etcdctl'] },
  { roles: ['control-plane'], names: ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'] },
  { roles: 'all', names: ['kubelet', 'kube-proxy'] },
];
/** The CNI plugins both configs chain (containernetworking/plugins); flannel adds its own. */
export const CNI_PLUGINS = ['bridge', 'host-local', 'loopback', 'portmap'] as const;
/** What a pod network adds: its daemon, and its own CNI plugin. */
const CNI_EXTRA: Record<Cni, { daemon: readonly string[]; plugins: readonly string[] }> = {
  flannel: { daemon: ['flanneld'], plugins: ['flannel'] },
  bridge: { daemon: [], plugins: [] },
};

/**
 * The binaries a machine with these roles fetches, as asset names under /assets/bin/ (CNI
 * plugins as cni/<name>), in the order it fetches them. The one list: the machines' own
 * binaries.list, the bundle's contents and the rehearsal's assets are all made from it.
 */
export function binaryAssets(roles: readonly Role[], cni: Cni = 'flannel'): string[] {
  const names = BINARIES.filter((b) => b.roles === 'all' || b.roles.some((r) => roles.includes(r))).flatMap((b) => b.names);
  return [...names, ...CNI_EXTRA[cni].daemon, ...[...CNI_PLUGINS, ...CNI_EXTRA[cni].plugins].map((p) => `cni/${p}`)];
}

/** Registries whose images the provisioner mirrors (each machine's hosts.toml points each at it). */
export const MIRRORED_REGISTRIES = ['registry.k8s.io', 'docker.io', 'quay.io', 'gcr.io'] as const;

/** The smoke test's NodePort (the add-on manifests and the rehearsal's check). */
export const SMOKE_NODE_PORT = 30080;
