// Day-2 progress in serve (issue 17): `slipway apply` runs as a process of its own and
// posts what it does (POST /api/v1/activity, the operator's token) to the serve running
// with the same state directory; serve keeps the latest runs' lines in memory and tells
// the same listeners as the lifecycle (SSE `event: activity`: `status --watch`, the
// console). Not the lifecycle's events: nothing here moves a machine's state.
//
// apply also appends every line to the state's journal (<state>/activity.jsonl, 0600, one
// JSON object per line, the previous megabyte kept as activity.jsonl.1), whether or not a
// serve runs: the record of what day 2 did. serve reads its tail when it starts, so the
// latest runs survive a restart of serve; a line it cannot read is skipped and counted.
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const ACTIVITY_KINDS = ['start', 'plan', 'machine', 'health', 'done', 'failed', 'line', 'end', 'heartbeat'] as const;
export type ActivityKind = (typeof ACTIVITY_KINDS)[number];

export interface ActivityEvent {
  /** serve's sequence number (per process) */
  seq: number;
  /** the run it belongs to (apply makes one id per run) */
  run: string;
  /** what posted it: apply */
  command: string;
  kind: ActivityKind;
  /** the machine it is about, if one */
  machine?: string;
  /** the line apply printed */
  text: string;
  /** for end: whether the run finished without a failure */
  ok?: boolean;
  /** ISO time serve received it */
  at: string;
}

export interface ActivityRun {
  run: string;
  command: string;
  started: string;
  /** last heard of */
  last: string;
  ended?: string;
  ok?: boolean;
}

/** lines kept (all runs together) */
export const ACTIVITY_KEEP = 500;
/** a run not heard of for this long (apply posts a heartbeat every 20 s) is no longer running */
export const ACTIVITY_SILENCE_MS = 60_000;
const RUNS_KEPT = 20;
const ID = /^[A-Za-z0-9-]{1,64}$/;

/** Checks a posted event; the error names the field. */
export function checkActivity(body: unknown): { event: Omit<ActivityEvent, 'seq' | 'at'> } | { error: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { error: 'the body must be a JSON object' };
  const b = body as Record<string, unknown>;
  if (typeof b.run !== 'string' || !ID.test(b.run)) return { error: 'run must be 1-64 characters [A-Za-z0-9-]' };
  if (b.command !== 'apply') return { error: 'command must be "apply"' };
  if (typeof b.kind !== 'string' || !(ACTIVITY_KINDS as readonly string[]).includes(b.kind)) return { error: `kind must be one of ${ACTIVITY_KINDS.join(', ')}` };
  if (b.machine !== undefined && (typeof b.machine !== 'string' || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(b.machine))) return { error: 'machine must be a machine name' };
  if (typeof b.text !== 'string' || b.text.length > 4000 || /[\u0000-\u0008\u000b-\u001f\u007f]/.test(b.text)) return { error: 'text must be a string of at most 4,000 characters without control characters' };
  if (b.ok !== undefined && typeof b.ok !== 'boolean') return { error: 'ok must be true or false' };
  return { event: { run: b.run, command: b.command, kind: b.kind as ActivityKind, ...(b.machine ? { machine: b.machine as string } : {}), text: b.text, ...(b.ok !== undefined ? { ok: b.ok } : {}) } };
}

/** apply's journal in the state directory, and how large it grows before it is rotated to `.1` */
export const ACTIVITY_JOURNAL = 'activity.jsonl';
export const JOURNAL_MAX_BYTES = 1 << 20;

/** A journal line: the event apply posts, with the time it happened. */
export type JournalEvent = Omit<ActivityEvent, 'seq'>;

export const journalLine = (e: JournalEvent): string => `${JSON.stringify(e)}\n`;

/** The journal's events, oldest first: its readable lines (checked as a post is), the rest counted. */
export function parseJournal(text: string): { events: JournalEvent[]; skipped: number } {
  const events: JournalEvent[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    const checked = checkActivity(raw);
    const at = (raw as { at?: unknown }).at;
    if ('error' in checked || typeof at !== 'string' || Number.isNaN(Date.parse(at))) {
      skipped++;
      continue;
    }
    events.push({ ...checked.event, at: new Date(at).toISOString() });
  }
  return { events, skipped };
}

/** The last `keep` events of the state's journal (its rotated half first); none when there is none. */
export function readJournal(stateDir: string, keep = ACTIVITY_KEEP): { events: JournalEvent[]; skipped: number } {
  const file = join(stateDir, ACTIVITY_JOURNAL);
  let text = '';
  for (const f of [`${file}.1`, file]) if (existsSync(f)) text += `${readFileSync(f, 'utf8')}\n`;
  const { events, skipped } = parseJournal(text);
  return { events: events.slice(-keep), skipped };
}

export class Activity extends EventEmitter<{ activity: [ActivityEvent] }> {
  private seq = 0;
  private readonly events: ActivityEvent[] = [];
  private readonly runs = new Map<string, ActivityRun>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    super();
    this.now = now;
  }

  /** Earlier runs from the journal (serve's start): kept as posted then, told to nobody. */
  restore(events: JournalEvent[]): void {
    for (const e of events) this.add(e, e.at);
  }

  record(e: Omit<ActivityEvent, 'seq' | 'at'>): ActivityEvent {
    const ev = this.add(e, new Date(this.now()).toISOString());
    this.emit('activity', ev);
    return ev;
  }

  private add(e: Omit<ActivityEvent, 'seq' | 'at'>, at: string): ActivityEvent {
    const ev: ActivityEvent = { ...e, seq: ++this.seq, at };
    let run = this.runs.get(e.run);
    if (!run) {
      run = { run: e.run, command: e.command, started: at, last: at };
      this.runs.set(e.run, run);
      if (this.runs.size > RUNS_KEPT) this.runs.delete(this.runs.keys().next().value!);
    }
    run.last = at;
    if (e.kind === 'end') Object.assign(run, { ended: at, ok: e.ok ?? false });
    // heartbeats only keep the run alive: they are not lines anyone reads
    if (e.kind !== 'heartbeat') {
      this.events.push(ev);
      if (this.events.length > ACTIVITY_KEEP) this.events.splice(0, this.events.length - ACTIVITY_KEEP);
    }
    return ev;
  }

  /** Runs that have not ended and were heard of lately. */
  running(): ActivityRun[] {
    const now = this.now();
    return [...this.runs.values()].filter((r) => !r.ended && now - Date.parse(r.last) < ACTIVITY_SILENCE_MS);
  }

  /** The latest runs and lines, oldest first. */
  view(): { running: ActivityRun[]; runs: ActivityRun[]; events: ActivityEvent[] } {
    return { running: this.running(), runs: [...this.runs.values()], events: [...this.events] };
  }
}
