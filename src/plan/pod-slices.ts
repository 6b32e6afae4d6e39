// Per-machine pod networks for `cni: bridge`: podCIDR cut into fixed /24 slices, the
// machine at position i of the cluster file's `machines` list getting slice i. Pure and
// deterministic, so every machine computes the same table for its routes. Appending a
// machine keeps every existing slice; reordering or removing machines moves them (the
// affected nodes must be re-rendered and their pods restarted).
//
// With flannel the controller-manager hands out the same-sized slices itself
// (--allocate-node-cidrs, --node-cidr-mask-size=POD_SLICE_PREFIX).
import { formatIp, type Ipv4Net } from '../lib/ipv4.ts';
import type { Machine, Spec } from '../spec/types.ts';

/** Prefix length of one node's pod network (the controller-manager's --node-cidr-mask-size). */
export const POD_SLICE_PREFIX = 24;

/** How many /POD_SLICE_PREFIX slices a pod network holds (0 when it is smaller than one). */
export function sliceCount(podCIDR: Ipv4Net): number {
  return podCIDR.prefix > POD_SLICE_PREFIX ? 0 : 2 ** (POD_SLICE_PREFIX - podCIDR.prefix);
}

/** Slice `index` of the pod network; throws when the network has no such slice (validation prevents it). */
export function podSlice(podCIDR: Ipv4Net, index: number): Ipv4Net {
  if (!Number.isInteger(index) || index < 0 || index >= sliceCount(podCIDR))
    throw new Error(`podCIDR ${podCIDR.cidr} has no /${POD_SLICE_PREFIX} slice number ${index} (it has ${sliceCount(podCIDR)})`);
  const base = (podCIDR.base + index * 2 ** (32 - POD_SLICE_PREFIX)) >>> 0;
  return { base, prefix: POD_SLICE_PREFIX, cidr: `${formatIp(base)}/${POD_SLICE_PREFIX}` };
}

/** Every machine with its slice, in the file's order. */
export function podSlices(spec: Pick<Spec, 'network' | 'machines'>): { machine: Machine; slice: Ipv4Net }[] {
  return spec.machines.map((machine, i) => ({ machine, slice: podSlice(spec.network.podCIDR, i) }));
}

/** The slice of one machine (by name). */
export function podSliceOf(spec: Pick<Spec, 'network' | 'machines'>, m: Machine): Ipv4Net {
  const i = spec.machines.findIndex((x) => x.name === m.name);
  if (i < 0) throw new Error(`machine ${m.name} is not in the cluster`);
  return podSlice(spec.network.podCIDR, i);
}
