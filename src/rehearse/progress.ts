// Live progress of a rehearsal: the provisioner's lifecycle as every machine reports it,
// polled from inside the lab, shown the way `slipway status --watch` shows it when not
// on a terminal: one line per transition ("cp1 installed (machine)"), and the status
// table (status's own rendering) at the milestones: first sight of the machines, every
// machine past DHCP / config fetched / installed / ready, a machine failing, and at the
// end. No redrawing: the output goes to CI logs as much as to terminals, and the engines
// log to the same stream. The seconds to each milestone are kept for the report.
import type { Lab } from './lab/lab.ts';
import { STATES } from '../store/states.ts';
import { table, type MachineRow } from '../lifecycle/table.ts';
import type { MachineReport } from './report.ts';

/** A machine as GET /api/v1/machines lists it (what `slipway status` shows). */
export type ApiMachine = MachineRow;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const round = (ms: number) => Math.round(ms / 100) / 10;
const rankOf = (state: string) => (STATES as readonly string[]).indexOf(state);

/** Cluster milestones: the table is printed when the last machine (failed ones aside) gets there. */
const MILESTONES: { state: (typeof STATES)[number]; text: string }[] = [
  { state: 'dhcp', text: 'every machine has its DHCP lease' },
  { state: 'config-fetched', text: 'every machine has fetched its configuration' },
  { state: 'installed', text: 'every machine is installed' },
  { state: 'ready', text: 'every machine is ready' },
];

export class Progress {
  readonly states = new Map<string, ApiMachine>();
  readonly times = new Map<string, MachineReport['seconds']>();
  readonly start = Date.now();
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  /** index into MILESTONES of the next cluster milestone */
  private milestone = 0;
  /** a state changed since the table was last printed */
  private changed = false;

  private readonly lab: Lab;
  private readonly token: string;
  private readonly log: (l: string) => void;

  constructor(lab: Lab, token: string, names: string[], log: (l: string) => void) {
    this.lab = lab;
    this.token = token;
    this.log = log;
    for (const n of names) this.times.set(n, {});
  }

  /** seconds since the machines were powered on */
  now(): number {
    return round(Date.now() - this.start);
  }

  mark(name: string, key: keyof MachineReport['seconds'], line?: string): void {
    const t = this.times.get(name);
    if (!t || t[key] !== undefined) return;
    t[key] = this.now();
    if (line) this.line(name, line);
  }

  line(name: string, text: string): void {
    this.log(`[${String(this.now()).padStart(5)}s] ${name.padEnd(8)} ${text}`);
  }

  /** The status table of the machines as last polled, under `title`, one log line per row. */
  printTable(title: string): void {
    if (this.states.size === 0) return;
    this.log(`status: ${title}`);
    for (const row of table([...this.states.values()]).trimEnd().split('\n')) this.log(`  ${row}`);
    this.changed = false;
  }

  async poll(): Promise<ApiMachine[] | undefined> {
    const r = await this.lab.api<{ machines: ApiMachine[] }>('/api/v1/machines', this.token);
    const first = this.states.size === 0;
    let failed: string | undefined;
    for (const m of r?.machines ?? []) {
      const before = this.states.get(m.name);
      this.states.set(m.name, m);
      if (before?.state === m.state) continue;
      this.changed = true;
      // A poll can miss a step (two in one second): a later state implies the earlier ones.
      const rank = rankOf(m.state);
      if (rank >= rankOf('dhcp')) this.mark(m.name, 'dhcp');
      if (rank >= rankOf('config-fetched')) this.mark(m.name, 'configFetched');
      if (rank >= rankOf('installed')) this.mark(m.name, 'installed');
      if (m.state === 'failed') failed = m.name;
      if (first && m.state === 'unknown') continue;
      // As status --watch prints a transition: state (who saw it): reason
      const source = m.lastEvent?.to === m.state ? ` (${m.lastEvent.source})` : '';
      this.line(m.name, `${m.state}${source}${m.reason ? `: ${m.reason}` : ''}`);
    }
    if (first && this.states.size) this.printTable(`${this.states.size} machines, as \`slipway status\` shows them`);
    else if (failed) this.printTable(`${failed} failed`);
    this.checkMilestones();
    return r?.machines;
  }

  /** Print the table once per cluster milestone the slowest machine has passed. */
  private checkMilestones(): void {
    const alive = [...this.states.values()].filter((m) => m.state !== 'failed');
    if (alive.length === 0) return;
    const slowest = Math.min(...alive.map((m) => rankOf(m.state)));
    let reached: string | undefined;
    while (this.milestone < MILESTONES.length && slowest >= rankOf(MILESTONES[this.milestone]!.state)) reached = MILESTONES[this.milestone++]!.text;
    if (reached) this.printTable(reached);
  }

  /** Poll every second until stop(). */
  startPolling(): void {
    this.running = true;
    this.loop = (async () => {
      for (let i = 0; this.running && i < 100_000; i++) {
        await this.poll();
        await sleep(1_000);
      }
    })();
  }

  /** Stop polling; the final table when anything changed since the last one. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    if (this.changed) this.printTable('at the end');
  }

  /** Did the machine get to `installed` (it may be further on, or failed since)? */
  installed(name: string): boolean {
    return this.times.get(name)?.installed !== undefined;
  }
}
