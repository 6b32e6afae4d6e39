// One rehearsal, whatever the engine: the frame every engine shares (engine.ts says what
// an engine adds).
//
//   preflight (no side effects) → what the machines are made from (the OS image) → run
//   directory → prepare (assets with the OS image, the render pinned to them; the
//   engine's bundle) → lab + serve → machines made →
//   bring-up (install, power on, wait) → the engine's steps and checks → report →
//   --keep: everything stays, with a README; else everything made is removed
//
// Every path out goes through the same end: an error, Ctrl-C (the signal stops the
// waits), or a second Ctrl-C (process exit: the exit hook undoes what can be undone
// synchronously, or keeps it all under --keep).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from './lab/lab.ts';
import { openLab, prepare } from './setup.ts';
import { Checks, type CheckResult } from './checks.ts';
import { Progress, round } from './progress.ts';
import { phaseTimer, reportOk, type Report, type UnitState } from './report.ts';
import { osImage, RehearseError, type RehearseOptions } from './preflight.ts';
import { SMOKE_BODY, SMOKE_IMAGE, SMOKE_PORT } from './bundle.ts';
import type { Engine, FailedUnit, LabRun, MachinesRun, RehearsalMachine, Run } from './engine.ts';

export async function runRehearsal<M extends RehearsalMachine>(o: RehearseOptions, engine: Engine<M>): Promise<Report> {
  const t0 = Date.now();
  const { spec, log } = o;
  const pre = engine.preflight(o);
  const { phases, phase } = phaseTimer();
  const notes: string[] = [];
  const adjustments = engine.adjustments.map(({ id, what, why }) => ({ id, what, why }));
  const report: Report = { engine: engine.name, kubernetesVersion: spec.kubernetesVersion, ok: false, seconds: 0, machines: [], checks: [], adjustments, phases, notes };

  engine.provide?.(log);
  const image = osImage(log);
  const dir = mkdtempSync('/var/tmp/slipway-rehearsal-');
  log(`run directory ${dir}${o.keep && engine.saysKeptRun ? ' (kept)' : ''}`);
  let lab: Lab | undefined;
  // The lifecycle poller runs from power on to the end; it must stop on every path out.
  let progress: Progress | undefined;
  let r: MachinesRun<M> | undefined;
  const machines: M[] = [];
  const results: CheckResult[] = [];
  const failedMachines = new Map<string, string>();
  const failedUnits = new Map<string, FailedUnit[]>();
  const units = new Map<string, UnitState[]>();

  let kept = false;
  // synchronous: it also runs on the way out
  const keepAll = () => {
    kept = true;
    lab?.keep();
    for (const m of machines) m.keep();
    writeFileSync(join(dir, 'README'), engine.keptReadme(dir, lab, machines));
    log(`kept: the lab and ${engine.keptMachines} keep running; see ${join(dir, 'README')}`);
  };
  // A second Ctrl-C exits at once: what can be undone synchronously is, on the way out
  // (the lab's namespaces and what runs in them go by their own exit hook). Under --keep
  // all of it stays, as after one Ctrl-C (prepended: before the namespaces' hook).
  const onExit = () => {
    if (kept) return;
    if (o.keep) return keepAll();
    for (const m of machines) m.destroyNow();
    rmSync(dir, { recursive: true, force: true });
  };
  const cleanup = async () => {
    await Promise.all(machines.map((m) => m.destroy().catch((e) => log(`cleanup ${m.m.name}: ${(e as Error).message}`))));
    await lab?.close().catch((e) => log(`cleanup lab: ${(e as Error).message}`));
    rmSync(dir, { recursive: true, force: true });
  };
  process.prependListener('exit', onExit);
  try {
    const prepared = await prepare(spec, pre.binaries, image, dir, (m) => new RehearseError(m));
    const run: Run = { o, spec, log, dir, pre, image, prepared, notes, phase };
    const serveArgs = await engine.prepare(run);
    phase('prepare');

    const opened = await openLab(spec, o.file, prepared, dir, log, serveArgs, { consolePort: o.consolePort });
    lab = opened.lab;
    const labRun: LabRun = { ...run, lab, token: opened.token, serveArgs };
    engine.labOpened?.(labRun);
    phase('lab');

    for (const [i, m] of spec.machines.entries()) {
      const machine = engine.machine(labRun, m, i);
      machines.push(machine);
      machine.create();
    }
    // Progress: the provisioner's lifecycle, as every machine reports it (its clock starts at power on).
    progress = new Progress(lab, opened.token, spec.machines.map((m) => m.name), log);
    const checks = new Checks({
      lab, spec, out: prepared.out, kubectl: pre.binaries ? join(pre.binaries, 'kubectl') : 'kubectl', etcdctl: pre.etcdctl, log, signal: o.signal,
      smoke: { ref: SMOKE_IMAGE, port: SMOKE_PORT, body: SMOKE_BODY },
      requestTimeoutSeconds: engine.requestTimeoutSeconds,
      engine: {
        running: () => machines.filter((m) => m.running && !m.stopped).map((m) => m.m.name),
        powerOff: async (name) => machines.find((m) => m.m.name === name)?.powerOff(),
        vipHolder: () => engine.vipHolder(r!),
      },
    });
    r = { ...labRun, machines, progress, checks, failedMachines, failedUnits, units };

    await engine.bringUp(r);

    for (const step of engine.checks(r)) {
      if ('check' in step) results.push(await checks.run(step.check, step.run));
      else await step.run();
    }
    phase('checks');
    report.ok = reportOk(results);
  } catch (e) {
    report.error = (e as Error).message;
    if (e instanceof RehearseError && !lab) throw e;
  } finally {
    await progress?.stop();
    if (r) await engine.lastLook?.(r);
    report.checks = results;
    report.machines = spec.machines.map((m) => ({
      name: m.name,
      roles: m.roles,
      hardware: machines.find((x) => x.m.name === m.name)?.hardware,
      ready: r ? engine.ready(r, m.name) : false,
      state: failedMachines.has(m.name) ? 'failed' : progress?.states.get(m.name)?.state ?? 'unknown',
      reason: failedMachines.get(m.name) ?? progress?.states.get(m.name)?.reason,
      seconds: progress?.times.get(m.name) ?? {},
      poweredOff: (!failedMachines.has(m.name) && machines.find((x) => x.m.name === m.name)?.stopped) || undefined,
      failedUnits: failedUnits.get(m.name) ?? [],
      units: units.get(m.name),
    }));
    // --keep keeps everything, a failed or interrupted rehearsal's too: that is what it is for.
    if (o.keep) keepAll();
    else await cleanup();
    process.off('exit', onExit);
    report.seconds = round(Date.now() - t0);
  }
  return report;
}
