// Files that are the same on every machine (a worker's kubelet config, the bootstrap
// kubeconfig, containerd's config) are rendered once per plan, not once per machine:
// with 1,000 machines, YAML encoding was most of the planner's time.
const cache = new WeakMap<object, Map<string, unknown>>();

export function once<T>(ctx: object, key: string, make: () => T): T {
  let m = cache.get(ctx);
  if (!m) cache.set(ctx, (m = new Map()));
  if (!m.has(key)) m.set(key, make());
  return m.get(key) as T;
}
