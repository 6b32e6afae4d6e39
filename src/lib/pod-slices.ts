// Pod-network slice arithmetic: podCIDR cut into fixed /POD_SLICE_PREFIX slices. Pure
// IPv4 arithmetic, below the cluster file, so validation can check a podCIDR has room
// (plan/pod-slices.ts says which machine gets which slice).
import { formatIp, type Ipv4Net } from './ipv4.ts';

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
