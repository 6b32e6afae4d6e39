// The provisioner's assets directory for a rehearsal: every binary the machines'
// download unit asks for (assets/bin/<name>, named as binaryAssets() says), from the
// Kubernetes binaries given and the OS image's root (Debian's etcd and CNI plugins), and
// the OS image itself under os/ (kernel, installer, disk image, os.json), as
// `slipway image build`'s output is served on a rack. serve computes SHA256SUMS.
import { copyFileSync, existsSync, linkSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Spec } from '../spec/types.ts';
import { OS_ASSETS } from '../catalog/os.ts';
import { binaryAssets } from '../catalog/cluster.ts';

/** A binary the machines need is nowhere to be found. */
export class AssetsError extends Error {}

/** Hard link where possible (same filesystem), else copy: the assets directory serve offers. */
export function place(src: string, dest: string): void {
  mkdirSync(dirname(dest), { recursive: true });
  try {
    linkSync(src, dest);
  } catch {
    copyFileSync(src, dest);
  }
}

/** Where the OS image's root has the binaries it can provide (the CNI plugins: usr/lib/cni). */
const TREE_PATHS: Record<string, string> = { etcd: 'usr/bin/etcd', etcdctl: 'usr/bin/etcdctl' };
const inTree = (name: string) => name in TREE_PATHS || name.startsWith('cni/');

/**
 * What the machines' download unit fetches, under assets/bin/ named as binaryAssets()
 * asks: the Kubernetes binaries from `binaries`, etcd and the CNI plugins from the
 * OS image's root, a Debian tree (Debian's etcd is 3.4, the series Kubernetes 1.20 was tested with).
 * Without `binaries` the Kubernetes ones are left out (`absent`): the machines skip
 * their units and say so.
 */
export function stageAssets(spec: Spec, binaries: string | undefined, tree: string, assets: string): { fromTree: string[]; absent: string[] } {
  const needed = new Set<string>();
  for (const m of spec.machines) for (const name of binaryAssets(m.roles, spec.network.cni)) needed.add(name);
  const taken: string[] = [];
  const absent: string[] = [];
  for (const name of needed) {
    const candidates = binaries ? [join(binaries, name)] : [];
    if (TREE_PATHS[name]) candidates.push(join(tree, TREE_PATHS[name]!));
    if (name.startsWith('cni/')) candidates.push(join(tree, 'usr/lib/cni', name.slice(4)));
    const src = candidates.find((c) => existsSync(c));
    if (!src && !binaries && !inTree(name)) {
      absent.push(name);
      continue;
    }
    if (!src) throw new AssetsError(`no ${name} for the machines: not in ${binaries ?? 'the binaries directory'}${inTree(name) ? ' nor in the OS image' : ''}`);
    place(src, join(assets, 'bin', name));
    if (!binaries || !src.startsWith(binaries)) taken.push(name);
  }
  return { fromTree: taken, absent };
}

/** The OS image's files under assets/os/ (hard links into the cache): what serve pins and installs machines from. */
export function stageOs(image: string, assets: string): void {
  for (const rel of Object.values(OS_ASSETS)) place(join(image, rel.slice('os/'.length)), join(assets, rel));
}
