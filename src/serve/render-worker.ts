// Renders a cluster (Spec + Secrets → Tree) on a thread of its own: a whole plan takes
// 15-45 ms of CPU, which on serve's thread would hold up every DHCP, TFTP and HTTP
// request behind it. serve uses it when a reprovision gives a machine a new token.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { setPriority } from 'node:os';
import type { Spec } from '../spec/types.ts';
import type { Secrets } from '../secrets/types.ts';
import { buildPlan } from '../plan/plan.ts';
import type { AssetPins } from '../plan/types.ts';
import { planTree, type Tree } from '../render/tree.ts';

/** The same tree planTree(buildPlan(spec, secrets, { pins })) gives, computed off this thread. */
export function renderOffThread(spec: Spec, secrets: Secrets, pins?: AssetPins): Promise<Tree> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { spec, secrets, pins } });
    let settled = false;
    w.once('message', (r: { tree?: Tree; error?: string }) => {
      settled = true;
      if (r.tree) resolve(r.tree);
      else reject(new Error(r.error ?? 'render failed'));
    });
    w.once('error', (e) => {
      settled = true;
      reject(e);
    });
    w.once('exit', (code) => {
      if (!settled) reject(new Error(`the render thread exited (${code}) without a result`));
    });
  });
}

if (!isMainThread && parentPort && (workerData as { spec?: Spec } | null)?.spec) {
  const { spec, secrets, pins } = workerData as { spec: Spec; secrets: Secrets; pins?: AssetPins };
  // Lowest priority, this thread only (Linux nice values are per thread): on a small host
  // the render must not take the CPU from serve's thread, which answers DHCP meanwhile.
  try {
    setPriority(0, 19);
  } catch {
    // not permitted here: the render just competes at the usual priority
  }
  try {
    parentPort.postMessage({ tree: planTree(buildPlan(spec, secrets, { pins })) });
  } catch (e) {
    parentPort.postMessage({ error: (e as Error).message });
  }
}
