// The render output as one flat map of DIR-relative paths, so writing, diffing and
// testing all look at the same thing. Layout (a contract, see README "Output layout"):
//   cluster/...  machines/<name>/root/...  machines/<name>/ignition.json
//   machines/<name>/cloud-config.yml  machines/<name>/install.env  pxe/...
import type { File, Plan } from '../plan/types.ts';
import { ignitionConfig } from './ignition.ts';
import { cloudConfig } from './cloud-config.ts';

export type Tree = Map<string, File>;

export function planTree(plan: Plan): Tree {
  const tree: Tree = new Map();
  const put = (rel: string, f: File) => tree.set(rel, { ...f, path: rel });
  for (const f of plan.cluster) put(`cluster/${f.path}`, f);
  for (const { machine, files, install } of plan.machines) {
    const base = `machines/${machine.name}`;
    for (const f of files) put(`${base}/root${f.path}`, f);
    const hasSecret = files.some((f) => f.secret);
    put(`${base}/ignition.json`, { path: '', mode: 0o600, contents: ignitionConfig(files), secret: hasSecret });
    put(`${base}/install.env`, install);
    put(`${base}/cloud-config.yml`, { path: '', mode: 0o600, contents: cloudConfig(machine.name, files), secret: hasSecret });
  }
  for (const f of plan.pxe) put(`pxe/${f.path}`, f);
  return tree;
}
