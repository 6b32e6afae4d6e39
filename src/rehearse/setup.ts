// What every engine does before its machines power on: stage the binaries and the OS
// image serve will offer, render the file with a throwaway state directory (the checks
// use its credentials; serve uses the same state, so both see the same PKI) pinned to
// those assets as serve's own render is (so the render is byte for byte what serve
// hands the machines), and start the lab with the real `slipway serve` in it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Spec } from '../spec/types.ts';
import { loadOrCreateSecrets } from '../secrets/store.ts';
import { buildPlan } from '../plan/plan.ts';
import { planTree } from '../render/tree.ts';
import { writeTreeAtomic } from '../render/write.ts';
import { AssetsError, stageAssets, stageOs } from './assets.ts';
import { Assets } from '../serve/http/assets.ts';
import { readPins, type PinNote } from '../serve/pins.ts';
import type { OsImage } from './preflight.ts';
import { Lab } from './lab/lab.ts';
import { exposeConsole, type ExposedConsole } from './lab/console.ts';

export interface Prepared {
  state: string;
  /** the render */
  out: string;
  assets: string;
  /** binaries taken from the OS image's root rather than the binaries directory */
  fromTree: string[];
  /** binaries the machines ask for that the provisioner does not offer (no binaries directory) */
  absent: string[];
}

/** Stage assets and render under `run`; a missing binary becomes `asError(message)`. */
export async function prepare(spec: Spec, binaries: string | undefined, image: OsImage, run: string, asError: (m: string) => Error): Promise<Prepared> {
  const state = join(run, 'state');
  const out = join(run, 'out');
  const assets = join(run, 'assets');
  let staged: { fromTree: string[]; absent: string[] };
  try {
    staged = stageAssets(spec, binaries, image.root, assets);
  } catch (e) {
    throw e instanceof AssetsError ? asError(e.message) : e;
  }
  stageOs(image.dir, assets);
  const notes: PinNote[] = [];
  const pins = await readPins([new Assets(assets)], notes);
  if (!pins.os) throw asError(`the OS image in ${image.dir} cannot be served: ${notes.map((n) => n.msg).join('; ')}`);
  const secrets = await loadOrCreateSecrets(state, spec, { log: () => {} });
  await writeTreeAtomic(out, planTree(buildPlan(spec, secrets, { pins })));
  return { state, out, assets, ...staged };
}

export interface OpenLabOptions {
  /**
   * The web console (and API) on the host at http://127.0.0.1:PORT/: a port, 0 or
   * undefined for a free one, false for none. A port asked for that cannot be had is an
   * error; a free one that cannot be had is only logged.
   */
  consolePort?: number | false;
}

/**
 * The lab with serve running for `file`; the operator API token serve created; the web
 * console forwarded to the host (closed by lab.close(), stopped by lab.keep()).
 */
export async function openLab(spec: Spec, file: string, p: Prepared, run: string, log: (l: string) => void, serveArgs: string[] = [], o: OpenLabOptions = {}): Promise<{ lab: Lab; token: string; console?: ExposedConsole }> {
  const lab = Lab.create(spec);
  const tokenFile = join(p.state, 'api-token');
  let web: ExposedConsole | undefined;
  try {
    await lab.startServe({ file, state: p.state, assets: p.assets, args: serveArgs, logFile: join(run, 'serve.log') });
    log(`lab ${lab.hub.name}: slipway serve at ${lab.provisionerURL}`);
    if (o.consolePort !== false) {
      try {
        web = await exposeConsole({ lab, run, port: o.consolePort ?? 0, log, tokenFile });
        lab.own(web);
      } catch (e) {
        if (o.consolePort) throw new Error(`web console: ${(e as Error).message}`);
        log(`web console not available: ${(e as Error).message}`);
      }
    }
  } catch (e) {
    await lab.close();
    throw e;
  }
  return { lab, token: readFileSync(tokenFile, 'utf8').trim(), console: web };
}
