// What a rehearsal engine is: the part that differs between rehearsals. The runner
// (runner.ts) owns the frame every engine shares — preflight, the run directory, the
// render and assets, the lab with the real `slipway serve`, progress, the checks' runner,
// the report, and keep / Ctrl-C / cleanup on every path out. An engine says how its
// machines are made, installed, powered on and off and looked into (RehearsalMachine),
// how the cluster comes up on them, and which checks prove it (a list of steps).
//
//   runner ── engine.preflight → engine.provide → OS image → prepare (assets, render)
//          ── engine.prepare (bundle, notes) → lab + serve → engine.labOpened
//          ── engine.machine × N, machine.create → engine.bringUp (install, power on, wait)
//          ── engine.checks: steps, each a check or a look → report → keep or clean up
import type { Machine, Spec } from '../spec/types.ts';
import type { Lab } from './lab/lab.ts';
import type { Prepared } from './setup.ts';
import type { Progress } from './progress.ts';
import type { Checks, CheckName, CheckOutcome } from './checks.ts';
import type { Adjustment } from './containers/adjustments.ts';
import type { OsImage, RehearseOptions } from './preflight.ts';
import type { Report, UnitState } from './report.ts';

/** What preflight found: the Kubernetes binaries served (none with --no-kubernetes) and etcdctl. */
export interface Preflight {
  binaries?: string;
  etcdctl: string;
}

/** Failed units with their last log lines, as the report lists them. */
export type FailedUnit = { unit: string; logs: string };

/**
 * One machine of a rehearsal, whatever it is made of (a system container, a VM; one day
 * a rack machine behind a BMC). Nothing of it exists before create(); destroy() undoes
 * everything create() and powerOn() made.
 */
export interface RehearsalMachine {
  /** the machine as the engine runs it (a fault may give it another MAC than the file's) */
  readonly m: Machine;
  /** what it is made of, for the report (a VM's firmware, NIC and disk controller) */
  readonly hardware?: string;
  /** powered on and not ended (it may have been powered off and not noticed yet: see stopped) */
  readonly running: boolean;
  /** powered off on purpose (by a check, or by the engine giving up on it) */
  readonly stopped: boolean;
  /** What it is made of — its root or disk, its wire to the lab; nothing runs yet. */
  create(): void;
  /**
   * Install before power on, where the engine does that from outside (a container: DHCP,
   * its ignition.json, the real Ignition into its root). A machine that installs itself
   * once powered on (a network-booting VM) does nothing here.
   */
  install(): Promise<void>;
  /** Power on; resolves once it runs (its systemd exists, its console is connected). */
  powerOn(): Promise<void>;
  /** Power off at once, as pulling the plug does. */
  powerOff(): Promise<void>;
  /** Run a shell command line inside the machine; its output (stdout and stderr). */
  sh(command: string, timeoutMs?: number): Promise<string>;
  /** Its console since power on, as text. */
  console(): string;
  /** Units that failed inside it, each with its last log lines. */
  failedUnits(): Promise<FailedUnit[]>;
  /** Leave it running after this process exits (`rehearse --keep`). */
  keep(): void;
  /** Power off (if on) and remove what create() made. */
  destroy(): Promise<void>;
  /** destroy(), synchronously, for the exit hook (a second Ctrl-C exits at once). */
  destroyNow(): void;
}

/** What the runner has made before the lab: given to engine.prepare. */
export interface Run {
  readonly o: RehearseOptions;
  readonly spec: Spec;
  readonly log: (line: string) => void;
  /** the run directory (/var/tmp/slipway-rehearsal-*) */
  readonly dir: string;
  readonly pre: Preflight;
  /** the cached OS image (scripts/build-os-image.sh): its files and its root directory */
  readonly image: OsImage;
  /** the render, state and assets */
  readonly prepared: Prepared;
  /** the report's notes */
  readonly notes: string[];
  /** close the report's current phase under `name` */
  readonly phase: (name: string) => void;
}

/** ... and the lab with serve running: given to engine.labOpened and engine.machine. */
export interface LabRun extends Run {
  readonly lab: Lab;
  /** the operator API token serve created */
  readonly token: string;
  /** the `slipway serve` arguments beyond the file, state and assets (what engine.prepare returned) */
  readonly serveArgs: string[];
}

/** ... and the machines: given to engine.bringUp, engine.checks and the rest. */
export interface MachinesRun<M extends RehearsalMachine> extends LabRun {
  readonly machines: M[];
  readonly progress: Progress;
  readonly checks: Checks;
  /** machines the engine found failed where the provisioner cannot tell (it never heard from them), with why */
  readonly failedMachines: Map<string, string>;
  /** failed units per machine, for the report */
  readonly failedUnits: Map<string, FailedUnit[]>;
  /** every rendered unit's state per machine, for the report (where the engine reads them) */
  readonly units: Map<string, UnitState[]>;
}

export type Outcome = { result: CheckOutcome; detail: string };

/** One step after bring-up: a check (its result goes in the report) or another step (a look into the machines, a note). */
export type Step = { check: CheckName; run: () => Promise<Outcome> } | { step: string; run: () => Promise<void> };

export interface Engine<M extends RehearsalMachine = RehearsalMachine> {
  readonly name: Report['engine'];
  /** everything it does differently from a real machine (listed in the report) */
  readonly adjustments: Adjustment[];
  /** how the kept line names the machines: "kept: the lab and <this> keep running" */
  readonly keptMachines: string;
  /** the run directory line says "(kept)" under --keep */
  readonly saysKeptRun: boolean;
  /** how long one API request of the checks may take, in seconds (default: the checks') */
  readonly requestTimeoutSeconds?: number;

  /** Everything checked before anything is made (throws RehearseError): the common preflight and the engine's own. */
  preflight(o: RehearseOptions): Preflight;
  /** What the machines are made from, beyond the OS image (built or taken from the cache). */
  provide?(log: (line: string) => void): void;
  /** After the render: what serve offers besides the assets (the bundle); returns serve's extra arguments. */
  prepare(r: Run): Promise<string[]>;
  /** Right after the lab opened (before its phase closes). */
  labOpened?(r: LabRun): void;
  /** The machine for the file's `m` (the i-th): constructed, nothing made yet (the runner calls create()). */
  machine(r: LabRun, m: Machine, i: number): M;
  /** Install and power on every machine and wait until there is something to check (throws RehearseError('interrupted') on Ctrl-C). */
  bringUp(r: MachinesRun<M>): Promise<void>;
  /** The steps after bring-up, in order. */
  checks(r: MachinesRun<M>): Step[];
  /** Which machine holds the VIP now (for the VIP and etcd checks). */
  vipHolder(r: MachinesRun<M>): Promise<string | undefined>;
  /** Is it ready, for the report. */
  ready(r: MachinesRun<M>, name: string): boolean;
  /** After the checks or an error, before the report: a last look into the machines. */
  lastLook?(r: MachinesRun<M>): Promise<void>;
  /** The README of a kept rehearsal: everything left running, and how to remove it. */
  keptReadme(dir: string, lab: Lab | undefined, machines: M[]): string;
}
