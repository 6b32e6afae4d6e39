// `slipway rehearse`: run an engine, print progress and the summary, write the report,
// exit 0 only when every check is ok or not-run for a stated reason. Ctrl-C stops
// waiting and cleans up; a second Ctrl-C exits at once.
import { writeFileSync, renameSync } from 'node:fs';
import type { Spec } from '../spec/types.ts';
import { summary, type Report } from '../rehearse/report.ts';
import { RehearseError, rehearseContainers } from '../rehearse/containers/engine.ts';

export interface RehearseCli {
  file: string;
  spec: Spec;
  engine: 'containers' | 'vm';
  binaries?: string;
  keep: boolean;
  reportFile?: string;
  timeoutSeconds: number;
  out: (s: string) => void;
  err: (s: string) => void;
}

export async function rehearse(o: RehearseCli): Promise<number> {
  if (o.engine === 'vm') {
    o.err('slipway rehearse: --engine vm is not available in this version (the VM boot path is proved by the test suite: test/boot.qemu.test.ts); use --engine containers');
    return 1;
  }
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
    report = await rehearseContainers({ file: o.file, spec: o.spec, binaries: o.binaries, keep: o.keep, timeoutSeconds: o.timeoutSeconds, log, signal: abort.signal });
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
