// `slipway rehearse`: run an engine, print progress and the summary, write the report,
// exit 0 only when every check is ok or not-run for a stated reason. Ctrl-C stops
// waiting and cleans up; a second Ctrl-C exits at once.
import { writeFileSync, renameSync } from 'node:fs';
import type { Spec } from '../spec/types.ts';
import { summary, type Report } from '../rehearse/report.ts';
import { ContainersEngine } from '../rehearse/containers/engine.ts';
import { FAULTS, RehearseError, type Fault, type RehearseOptions } from '../rehearse/preflight.ts';
import { runRehearsal } from '../rehearse/runner.ts';
import { VmEngine } from '../rehearse/vm/engine.ts';

export interface RehearseCli {
  file: string;
  spec: Spec;
  engine: 'containers' | 'vm';
  binaries?: string;
  keep: boolean;
  reportFile?: string;
  timeoutSeconds: number;
  faults?: Record<string, Fault>;
  noKubernetes?: boolean;
  consolePort?: number | false;
  out: (s: string) => void;
  err: (s: string) => void;
}

/** --fault MACHINE=KIND, each naming a machine of the file (VM engine only). */
export function parseFaults(args: string[], spec: Spec, engine: string): Record<string, Fault> | undefined {
  if (!args.length) return undefined;
  if (engine !== 'vm') throw new Error('--fault goes with --engine vm');
  const out: Record<string, Fault> = {};
  for (const a of args) {
    const [name, kind] = a.split('=');
    if (!name || !spec.machines.some((m) => m.name === name)) throw new Error(`--fault ${a}: no machine ${JSON.stringify(name)} in the file`);
    if (!FAULTS.includes(kind as Fault)) throw new Error(`--fault ${a}: the kinds are ${FAULTS.join(', ')}`);
    out[name] = kind as Fault;
  }
  return out;
}

export async function rehearse(o: RehearseCli): Promise<number> {
  const started = Date.now();
  const log = (line: string) => o.err(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${line}`);
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    log(`${sig}: stopping and cleaning up (again to exit at once)`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let report: Report;
  try {
    const options: RehearseOptions = { file: o.file, spec: o.spec, binaries: o.binaries, keep: o.keep, timeoutSeconds: o.timeoutSeconds, log, signal: abort.signal, faults: o.faults, noKubernetes: o.noKubernetes, consolePort: o.consolePort };
    report = o.engine === 'vm' ? await runRehearsal(options, new VmEngine()) : await runRehearsal(options, new ContainersEngine());
  } catch (e) {
    if (e instanceof RehearseError) {
      o.err(`slipway rehearse: ${e.message}`);
      return 1;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (o.reportFile) {
    writeFileSync(`${o.reportFile}.partial`, JSON.stringify(report, null, 2) + '\n');
    renameSync(`${o.reportFile}.partial`, o.reportFile);
  }
  o.out(summary(report));
  return report.ok && !report.error ? 0 : 1;
}
