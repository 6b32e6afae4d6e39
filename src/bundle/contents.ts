// What an offline cluster needs, as data: every file a machine fetches from the
// provisioner (binaries under bin/ named exactly as binaryAssets() lists them, Slipway's
// OS image under os/ as the catalog's OS_ASSETS names it) and every container image its
// nodes pull, each with its upstream location and where its published checksum lives
// (the OS image is not downloaded: `slipway image build` makes it, and its os.json holds
// the digests). Pure: `bundle create` fetches this list, `bundle create --dry-run`
// prints it, tests check it against the plan.
//
// Where upstream publishes no checksum (flannel's release binaries: its Makefile uploads
// bare files), the binary is taken from the project's own container image instead, so
// it is still checked end to end: tag → manifest digest → layer digest → file.
import type { Spec } from '../spec/types.ts';
import { binaryAssets, CNI_PLUGINS } from '../catalog/cluster.ts';
import { versionProfile } from '../catalog/versions.ts';
import { OS_ASSETS, type OsName } from '../catalog/os.ts';

export type HashAlgorithm = 'sha256' | 'sha512';

/** Where a download's expected digest comes from. */
export interface ChecksumSource {
  algorithm: HashAlgorithm;
  /** a checksum file published next to the download */
  url: string;
  /** the name to look for in a multi-line checksum file (sha256sum format or a sectioned DIGESTS file); undefined: the file holds one digest */
  entry?: string;
}

interface Common {
  /** what the operator reads: "kube-apiserver", "etcd", "Slipway OS" */
  name: string;
  version: string;
}

/** One file downloaded and stored as it is. */
export interface FileItem extends Common {
  kind: 'file';
  url: string;
  checksum: ChecksumSource;
  /** path inside the bundle */
  dest: string;
}

/** An archive downloaded, checked, and some of its members stored (each with its own sha256 in the manifest). */
export interface ArchiveItem extends Common {
  kind: 'archive';
  url: string;
  checksum: ChecksumSource;
  format: 'tar.gz';
  /** member path inside the archive ("./" prefixes ignored) → path inside the bundle */
  members: { member: string; dest: string }[];
}

/** A file taken out of a container image's filesystem (the image is checked by its digest chain). */
export interface ImageFileItem extends Common {
  kind: 'image-file';
  image: string;
  member: string;
  dest: string;
  /** why the file does not come from a release download */
  why: string;
}

/** A container image stored in the bundle's OCI layout and served by the registry. */
export interface ImageItem extends Common {
  kind: 'image';
  /** fully qualified: registry/repository:tag */
  ref: string;
  /** what uses it */
  usedBy: string;
}

/**
 * Slipway's OS image, built by `slipway image build` (not downloaded): each file of the
 * image directory by its role, and where the bundle puts it. Its digests are os.json's.
 */
export interface OsImageItem extends Common {
  kind: 'os-image';
  os: OsName;
  files: { role: keyof typeof OS_ASSETS; dest: string }[];
}

export type Item = FileItem | ArchiveItem | ImageFileItem | ImageItem | OsImageItem;

export interface BundleContents {
  cluster: { name: string; kubernetesVersion: string };
  os: { name: OsName };
  items: Item[];
}

/**
 * Versions of what the Kubernetes release does not pin. crictl follows Kubernetes'
 * minor (cri-tools releases v1.<minor>.0 alongside each one); the rest work across the
 * range Slipway renders for (containerd 1.7 speaks CRI v1 and v1alpha2, so kubelets
 * from 1.20 to 1.34 can use it).
 */
export const COMPONENT_VERSIONS = {
  containerd: '1.7.27',
  runc: 'v1.2.6',
  cniPlugins: 'v1.6.2',
  flannel: 'v0.26.7',
  flannelCni: 'v1.6.2-flannel1',
} as const;

/** The smoke test's image (src/plan/phases/addons.ts); a test checks the two agree. */
export const SMOKE_TEST_IMAGE = 'docker.io/library/nginx:1.27-alpine';

const K8S_BINARIES = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'kubectl'] as const;

function kubernetes(version: string, needed: Set<string>): Item[] {
  return K8S_BINARIES.filter((b) => needed.has(b)).map((b) => {
    const url = `https://dl.k8s.io/release/${version}/bin/linux/amd64/${b}`;
    return { kind: 'file', name: b, version, url, checksum: { algorithm: 'sha256', url: `${url}.sha256` }, dest: `bin/${b}` };
  });
}

function etcd(version: string, needed: Set<string>): Item[] {
  const members = ['etcd', 'etcdctl'].filter((b) => needed.has(b));
  if (members.length === 0) return [];
  const v = `v${version}`;
  const base = `https://github.com/etcd-io/etcd/releases/download/${v}`;
  const file = `etcd-${v}-linux-amd64.tar.gz`;
  return [{
    kind: 'archive', name: 'etcd', version: v, url: `${base}/${file}`, format: 'tar.gz',
    checksum: { algorithm: 'sha256', url: `${base}/SHA256SUMS`, entry: file },
    members: members.map((m) => ({ member: `etcd-${v}-linux-amd64/${m}`, dest: `bin/${m}` })),
  }];
}

function runtime(k8sMinor: number): Item[] {
  const { containerd, runc, cniPlugins } = COMPONENT_VERSIONS;
  const cd = `https://github.com/containerd/containerd/releases/download/v${containerd}/containerd-${containerd}-linux-amd64.tar.gz`;
  const rc = `https://github.com/opencontainers/runc/releases/download/${runc}`;
  const crictl = `v1.${k8sMinor}.0`;
  const ct = `https://github.com/kubernetes-sigs/cri-tools/releases/download/${crictl}/crictl-${crictl}-linux-amd64.tar.gz`;
  const cni = `https://github.com/containernetworking/plugins/releases/download/${cniPlugins}/cni-plugins-linux-amd64-${cniPlugins}.tgz`;
  return [
    {
      kind: 'archive', name: 'containerd', version: containerd, url: cd, format: 'tar.gz',
      checksum: { algorithm: 'sha256', url: `${cd}.sha256sum`, entry: cd.slice(cd.lastIndexOf('/') + 1) },
      members: ['containerd', 'containerd-shim-runc-v2', 'ctr'].map((b) => ({ member: `bin/${b}`, dest: `bin/${b}` })),
    },
    { kind: 'file', name: 'runc', version: runc, url: `${rc}/runc.amd64`, checksum: { algorithm: 'sha256', url: `${rc}/runc.sha256sum`, entry: 'runc.amd64' }, dest: 'bin/runc' },
    {
      kind: 'archive', name: 'crictl', version: crictl, url: ct, format: 'tar.gz',
      checksum: { algorithm: 'sha256', url: `${ct}.sha256` },
      members: [{ member: 'crictl', dest: 'bin/crictl' }],
    },
    {
      kind: 'archive', name: 'cni-plugins', version: cniPlugins, url: cni, format: 'tar.gz',
      checksum: { algorithm: 'sha256', url: `${cni}.sha256`, entry: cni.slice(cni.lastIndexOf('/') + 1) },
      // the plugins the rendered conflists chain (binaryAssets' cni/ names; flannel's own comes from flannel())
      members: CNI_PLUGINS.map((p) => ({ member: p, dest: `bin/cni/${p}` })),
    },
  ];
}

function flannel(): Item[] {
  const { flannel: v, flannelCni } = COMPONENT_VERSIONS;
  const file = `cni-plugin-flannel-linux-amd64-${flannelCni}.tgz`;
  const url = `https://github.com/flannel-io/cni-plugin/releases/download/${flannelCni}/${file}`;
  return [
    {
      kind: 'image-file', name: 'flanneld', version: v, image: `docker.io/flannel/flannel:${v}`, member: 'opt/bin/flanneld', dest: 'bin/flanneld',
      why: 'flannel publishes no checksum for its release binaries; its image is verified by digest',
    },
    {
      kind: 'archive', name: 'flannel-cni-plugin', version: flannelCni, url, format: 'tar.gz',
      checksum: { algorithm: 'sha256', url: `${url}.sha256`, entry: file },
      members: [{ member: 'flannel-amd64', dest: 'bin/cni/flannel' }],
    },
  ];
}

/** The OS image's kernel, installer initramfs, disk image and os.json, where boot.ts and the installer fetch them. */
function osImage(os: OsName): OsImageItem {
  return { kind: 'os-image', name: 'Slipway OS', version: os, os, files: (Object.keys(OS_ASSETS) as (keyof typeof OS_ASSETS)[]).map((role) => ({ role, dest: OS_ASSETS[role] })) };
}

export function bundleContents(spec: Spec): BundleContents {
  const profile = versionProfile(spec.kubernetesVersion);
  // Only what some machine fetches: binaryAssets() is the one list the machines read.
  const needed = new Set(spec.machines.flatMap((m) => binaryAssets(m.roles, spec.network.cni)));
  const items: Item[] = [
    ...kubernetes(spec.kubernetesVersion, needed),
    ...etcd(profile.etcdVersion, needed),
    ...runtime(profile.minor),
    ...(spec.network.cni === 'flannel' ? flannel() : []), // cni: bridge needs only the standard plugins
    osImage(spec.os),
    { kind: 'image', name: 'pause', version: tagOf(profile.pauseImage), ref: profile.pauseImage, usedBy: 'containerd sandbox (every pod)' },
    { kind: 'image', name: 'coredns', version: tagOf(profile.coreDNSImage), ref: profile.coreDNSImage, usedBy: 'cluster DNS add-on' },
    { kind: 'image', name: 'nginx', version: tagOf(SMOKE_TEST_IMAGE), ref: SMOKE_TEST_IMAGE, usedBy: 'smoke test' },
  ];
  return { cluster: { name: spec.name, kubernetesVersion: spec.kubernetesVersion }, os: { name: spec.os }, items };
}

const tagOf = (ref: string) => ref.slice(ref.lastIndexOf(':') + 1);

/** Every bundle path an item produces. */
export function destinations(i: Item): string[] {
  switch (i.kind) {
    case 'file':
    case 'image-file':
      return [i.dest];
    case 'archive':
      return i.members.map((m) => m.dest);
    case 'os-image':
      return i.files.map((f) => f.dest);
    case 'image':
      return [];
  }
}
