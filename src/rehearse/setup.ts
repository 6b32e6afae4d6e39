// What every engine does before its machines power on: render the file with a throwaway
// state directory (the checks use its credentials; serve uses the same state, so both
// see the same PKI), stage the binaries serve will offer, and start the lab with the
// real `slipway serve` in it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Spec } from '../spec/types.ts';
import { loadOrCreateSecrets } from '../secrets/store.ts';
import { buildPlan } from '../plan/plan.ts';
import { planTree } from '../render/tree.ts';
import { writeTreeAtomic } from '../render/write.ts';
import { AssetsError, stageAssets } from './assets.ts';
import { Lab } from './lab/lab.ts';

export interface Prepared {
  state: string;
  /** the render */
  out: string;
  assets: string;
  /** binaries taken from the Debian tree rather than the binaries directory */
  fromTree: string[];
}

/** Render and stage assets under `run`; a missing binary becomes `asError(message)`. */
export async function prepare(spec: Spec, binaries: string, tree: string, run: string, asError: (m: string) => Error): Promise<Prepared> {
  const state = join(run, 'state');
  const out = join(run, 'out');
  const secrets = await loadOrCreateSecrets(state, spec, { log: () => {} });
  await writeTreeAtomic(out, planTree(buildPlan(spec, secrets)));
  const assets = join(run, 'assets');
  try {
    return { state, out, assets, fromTree: stageAssets(spec, binaries, tree, assets) };
  } catch (e) {
    throw e instanceof AssetsError ? asError(e.message) : e;
  }
}

/** The lab with serve running for `file`; the operator API token serve created. */
export async function openLab(spec: Spec, file: string, p: Prepared, run: string, log: (l: string) => void, serveArgs: string[] = []): Promise<{ lab: Lab; token: string }> {
  const lab = Lab.create(spec);
  try {
    await lab.startServe({ file, state: p.state, assets: p.assets, args: serveArgs, logFile: join(run, 'serve.log') });
  } catch (e) {
    await lab.close();
    throw e;
  }
  log(`lab ${lab.hub.name}: slipway serve at ${lab.provisionerURL}`);
  return { lab, token: readFileSync(join(p.state, 'api-token'), 'utf8').trim() };
}
