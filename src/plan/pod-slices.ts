// Per-machine pod networks for `cni: bridge`: podCIDR cut into fixed /24 slices, the
// machine at position i of the cluster file's `machines` list getting slice i. Pure and
// deterministic, so every machine computes the same table for its routes. Appending a
// machine keeps every existing slice; reordering or removing machines moves them (the
// affected nodes must be re-rendered and their pods restarted).
//
// With flannel the controller-manager hands out the same-sized slices itself
// (--allocate-node-cidrs, --node-cidr-mask-size=POD_SLICE_PREFIX).
import type { Ipv4Net } from '../lib/ipv4.ts';
import { podSlice } from '../lib/pod-slices.ts';
import type { Machine, Spec } from '../spec/types.ts';

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
