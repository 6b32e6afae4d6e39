// Run the real `slipway` executable (bin/slipway.js) as a user would, capturing output.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = `${ROOT}bin/slipway.js`;
export const EXAMPLE_HA = `${ROOT}examples/lab.yaml`;
export const EXAMPLE_SINGLE = `${ROOT}examples/single.yaml`;

export function slipway(args: string[], opts: { cwd?: string; input?: string } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: opts.cwd, input: opts.input, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
