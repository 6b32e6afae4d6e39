// 802.1Q in the lab without 8021q: the lab's host kernel has neither the 8021q module nor
// bridge VLAN filtering, so a namespace cannot own a VLAN device and the lab bridge cannot
// tag. Instead, eBPF programs on tc's clsact hooks (cls_bpf, direct action) tag and untag
// with bpf_skb_vlan_push/pop. Their source is LLVM IR kept beside this file
// (vlan-tc.ll), built with Debian's `llc` at run time (the VLAN id filled in) and cached
// by the source's hash. Two roles, decided by data (VLAN_PROGRAMS):
//
//   endpoint  a namespace's link onto the lab bridge that lives on VLAN N: it sends every
//             frame tagged N and takes in only frames tagged N, untagged (addVlanEndpoint).
//             The namespace holds an address on VLAN N like a host with a VLAN device.
//   port      a machine's switch port (its tap on the lab bridge): VLAN N and the untagged
//             lab segment are one network. Frames from the machine tagged N arrive on the
//             segment untagged, other tags are dropped; frames to the machine are tagged N
//             when the machine last spoke tagged (its installed system, whose node link is
//             VLAN N), else untagged (its firmware and installer, which network-boot
//             untagged). The port remembers which in a one-entry map its two programs share.
//
// The port exists because Slipway puts a machine's node address in the provisioning
// subnet (docs/networks.md): the provisioner must answer the same address untagged while
// the machine installs and on VLAN N once it is installed, which one namespace cannot do
// with an endpoint beside its untagged bridge address (one subnet on two links).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.ts';

/** The programs' source: LLVM IR with {{VID}} where the VLAN id goes. */
export const VLAN_SOURCE = fileURLToPath(new URL('./vlan-tc.ll', import.meta.url));
/** Built objects, one per VLAN id and source: <sha256 of the filled-in source>.o */
export const VLAN_CACHE = '/var/cache/slipway/vlan-bpf';

/** Which ELF section runs on which tc hook, per role. */
export const VLAN_PROGRAMS = {
  endpoint: { ingress: 'endpoint/ingress', egress: 'endpoint/egress' },
  port: { ingress: 'port/ingress', egress: 'port/egress' },
} as const;
export type VlanRole = keyof typeof VLAN_PROGRAMS;

/** What the lab's VLANs need from the host, or undefined when it is all there. */
export function vlanToolsMissing(): string | undefined {
  const missing = [['llc', 'llvm'], ['tc', 'iproute2']].filter(([cmd]) => spawnSync(cmd!, ['--version'], { stdio: 'ignore' }).error).map(([cmd, pkg]) => `${cmd} (${pkg})`);
  return missing.length ? missing.join(', ') : undefined;
}

function checkVid(vid: number): void {
  if (!Number.isInteger(vid) || vid < 1 || vid > 4094) throw new Error(`VLAN id ${vid}: must be 1..4094`);
}

/** The BPF object for VLAN `vid`: built with llc from VLAN_SOURCE once, then taken from the cache. */
export function vlanObject(vid: number, cacheDir = VLAN_CACHE): string {
  checkVid(vid);
  const source = readFileSync(VLAN_SOURCE, 'utf8').replaceAll('{{VID}}', String(vid));
  const object = join(cacheDir, `${createHash('sha256').update(source).digest('hex')}.o`);
  if (existsSync(object)) return object;
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${object}.${randomBytes(4).toString('hex')}.tmp`;
  const r = spawnSync('llc', ['-march=bpf', '-filetype=obj', '-O2', '-o', tmp, '-'], { input: source, encoding: 'utf8', timeout: 60_000 });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`llc could not build the lab's VLAN programs from ${VLAN_SOURCE}: ${r.error?.message ?? r.stderr}`);
  }
  renameSync(tmp, object); // atomic: a concurrent build writes the same bytes
  return object;
}

/**
 * Put `role`'s two programs for VLAN `vid` on `dev` in `ns`. One shell runs both tc
 * commands: `ip netns exec` gives it a mount namespace of its own, where tc mounts a
 * private bpffs and pins the port's map by name, so the second filter finds the first's
 * map; the pin goes with the shell, the map stays with the programs (nothing on the host).
 */
export function attachVlan(ns: Netns, dev: string, vid: number, role: VlanRole): void {
  const object = vlanObject(vid);
  const { ingress, egress } = VLAN_PROGRAMS[role];
  const script = 'tc qdisc replace dev "$1" clsact && tc filter replace dev "$1" ingress pref 1 handle 1 bpf da obj "$2" sec "$3" && tc filter replace dev "$1" egress pref 1 handle 1 bpf da obj "$2" sec "$4"';
  const r = spawnSync('ip', ['netns', 'exec', ns.name, 'sh', '-c', script, 'sh', dev, object, ingress, egress], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) throw new Error(`VLAN ${vid} ${role} programs on ${dev} (netns ${ns.name}): ${r.error?.message ?? r.stderr.trim()}`);
}

/** Take the VLAN programs off `dev` again (the link speaks untagged). */
export function detachVlan(ns: Netns, dev: string): void {
  ns.ip('link', 'set', dev, 'down'); // no frame slips through half-detached
  try {
    spawnSync('ip', ['netns', 'exec', ns.name, 'tc', 'qdisc', 'del', 'dev', dev, 'clsact'], { timeout: 10_000 });
  } finally {
    ns.up(dev);
  }
}

export interface VlanEndpoint {
  /** the link in the namespace, on VLAN `vid` (at most 15 characters) */
  name: string;
  vid: number;
  /** the lab bridge the link's other end joins, in `bridgeNs` (default: the namespace itself) */
  bridge: string;
  /** the other end's name, a port of the bridge (default `<name>p`; unique on the bridge) */
  port?: string;
  bridgeNs?: Netns;
  /** an address on VLAN `vid`, like "10.20.30.2/24" */
  address?: string;
}

/**
 * A namespace's link on VLAN `vid`: a veth whose end `name` (in `ns`, with the address)
 * carries the endpoint programs and whose other end (`port`) is a port of the bridge.
 */
export function addVlanEndpoint(ns: Netns, e: VlanEndpoint): void {
  const hub = e.bridgeNs ?? ns;
  const peer = e.port ?? `${e.name.slice(0, 14)}p`;
  // the veth is made in the bridge's namespace and its first end moved: Netns.addVeth
  // moves the peer, so the bridge side is `peer` here and `name` goes to `ns`
  if (hub === ns) ns.addVeth(e.name, peer);
  else hub.addVeth(peer, e.name, ns);
  hub.setMaster(peer, e.bridge);
  attachVlan(ns, e.name, e.vid, 'endpoint');
  if (e.address) ns.addAddress(e.name, e.address);
}
