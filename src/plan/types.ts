// What the planner produces: plain data, no I/O. A File is one file a machine (or the
// cluster directory, or the PXE side) receives; render/ writes them, encodes them as
// Ignition and cloud-config, and diffs them for `slipway plan`.
import type { Spec, Machine } from '../spec/types.ts';
import type { Secrets } from '../secrets/types.ts';
import type { VersionProfile } from '../catalog/versions.ts';

export interface File {
  /** absolute path on the machine (or relative path under DIR/cluster, DIR/pxe) */
  path: string;
  /** permission bits, e.g. 0o644; private keys and tokens are 0o600 */
  mode: number;
  contents: string;
  /** true when the contents must never be shown (keys, tokens): plan and the console mask it */
  secret?: boolean;
  /** a symbolic link to this absolute target instead of a regular file (contents are empty) */
  link?: string;
  /** USER:GROUP by name (issue 20's spec.files); undefined: root:root */
  owner?: string;
  /** where the operator asked for it ("spec.files[2]"); undefined: Slipway's own */
  origin?: string;
}

/**
 * What the provisioner serves, by digest, so a machine is rendered for exactly those
 * files: a different binary or OS image on the provisioner later is refused by the
 * machine, never installed (changing them is a deliberate re-render). `slipway serve`
 * reads them from its assets or bundle; `render --assets DIR` from that directory.
 */
export interface AssetPins {
  /** asset name under /assets/bin/ (kubelet, cni/bridge, ...) → sha256 */
  bin: Record<string, string>;
  /** the OS disk image (/assets/os/disk.img.zst): its sha256 and the raw image's size */
  os?: { sha256: string; rawSize: number };
}

export interface Plan {
  /** DIR/cluster/...: PKI in kubeadm layout, admin.conf, cluster manifests */
  cluster: File[];
  /** DIR/machines/<name>/root/... for each machine, in spec order; `install` is DIR/machines/<name>/install.env, what the installer reads */
  machines: { machine: Machine; files: File[]; install: File }[];
  /** DIR/pxe/...: dhcpd/Kea/dnsmasq configs, pxelinux.cfg, iPXE scripts */
  pxe: File[];
}

/** Everything a phase may read. Phases are pure functions of this. */
export interface PhaseContext {
  spec: Spec;
  secrets: Secrets;
  version: VersionProfile;
  /** digests of what the provisioner serves; undefined: not known (render without --assets) */
  pins?: AssetPins;
}

/** A phase contributes files to machines, to the cluster directory, and to the PXE side. */
export interface Phase {
  name: string;
  machine?(ctx: PhaseContext, m: Machine): File[];
  cluster?(ctx: PhaseContext): File[];
  pxe?(ctx: PhaseContext): File[];
}
