// Live progress of a rehearsal: the provisioner's lifecycle as every machine reports it
// (the same events `slipway status --watch` shows), polled from inside the lab, printed
// as one line per change, and the seconds to each milestone kept for the report.
import type { Lab } from './lab/lab.ts';
import { STATES } from '../lifecycle/states.ts';
import type { MachineReport } from './report.ts';

export interface ApiMachine {
  name: string;
  state: string;
  reason?: string;
  lastEvent?: { to: string; source: string; reason?: string; at: string };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const round = (ms: number) => Math.round(ms / 100) / 10;

export class Progress {
  readonly states = new Map<string, ApiMachine>();
  readonly times = new Map<string, MachineReport['seconds']>();
  /** every state a machine passed through, in order */
  readonly history = new Map<string, string[]>();
  readonly start = Date.now();
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  private readonly lab: Lab;
  private readonly token: string;
  private readonly log: (l: string) => void;

  constructor(lab: Lab, token: string, names: string[], log: (l: string) => void) {
    this.lab = lab;
    this.token = token;
    this.log = log;
    for (const n of names) {
      this.times.set(n, {});
      this.history.set(n, []);
    }
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

  async poll(): Promise<ApiMachine[] | undefined> {
    const r = await this.lab.api<{ machines: ApiMachine[] }>('/api/v1/machines', this.token);
    for (const m of r?.machines ?? []) {
      const before = this.states.get(m.name);
      this.states.set(m.name, m);
      if (before?.state === m.state) continue;
      this.history.get(m.name)?.push(m.state);
      // A poll can miss a step (two in one second): a later state implies the earlier ones.
      const rank = (STATES as readonly string[]).indexOf(m.state);
      if (rank >= STATES.indexOf('dhcp')) this.mark(m.name, 'dhcp');
      if (rank >= STATES.indexOf('config-fetched')) this.mark(m.name, 'configFetched');
      if (rank >= STATES.indexOf('installed')) this.mark(m.name, 'installed');
      this.line(m.name, `${m.state}${m.reason ? ` (${m.reason})` : ''}`);
    }
    return r?.machines;
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

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Did the machine get to `installed` (it may be further on, or failed since)? */
  installed(name: string): boolean {
    return this.times.get(name)?.installed !== undefined;
  }
}
