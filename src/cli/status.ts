// `slipway status [--watch]`: the machines' states from a running `slipway serve`, as a
// table, or live (a bar for the cluster and one per machine) until every machine is
// ready or failed. Exit 0 only when all are ready.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { STATES, type State } from '../store/states.ts';
import { elapsed, table, type MachineRow } from '../lifecycle/table.ts';
import type { StoredFacts } from '../store/store.ts';
import type { Facts } from '../serve/enlist.ts';
import { disks, hardware } from './machines.ts';

export interface StatusOptions {
  server: string;
  tokenFile: string;
  watch: boolean;
  out: NodeJS.WriteStream;
  /** give up watching after this many seconds (0 = never) */
  timeoutSeconds: number;
}

const rank = (s: State) => (s === 'failed' ? STATES.length - 1 : STATES.indexOf(s));
const allDone = (ms: MachineRow[]) => ms.every((m) => m.state === 'ready' || m.state === 'failed');
const allReady = (ms: MachineRow[]) => ms.length > 0 && ms.every((m) => m.state === 'ready');

/** The hardware each machine reported (enlistment or its installed report), a line each; nothing when none did. */
function factsLines(machines: MachineRow[]): string {
  const rows = machines.flatMap((m) => {
    const f = (m as MachineRow & { facts?: StoredFacts & { facts: Facts } }).facts;
    return f ? [`${m.name}  ${hardware(f.facts)}; disks ${disks(f.facts)}${f.facts.bmc?.address ? `; bmc ${f.facts.bmc.address}` : ''} (${f.source} ${f.at})`] : [];
  });
  return rows.length ? `\nhardware (as the machines reported it):\n${rows.join('\n')}\n` : '';
}

async function fetchMachines(opts: StatusOptions, token: string): Promise<MachineRow[]> {
  const res = await fetch(`${opts.server}/api/v1/machines`, { headers: { Authorization: `Bearer ${token}` } });
  if (res.status === 401) throw new Error(`${opts.server} refused the token in ${opts.tokenFile}`);
  if (!res.ok) throw new Error(`${opts.server}/api/v1/machines: HTTP ${res.status}`);
  return ((await res.json()) as { machines: MachineRow[] }).machines;
}

export async function status(opts: StatusOptions): Promise<number> {
  let token: string;
  try {
    token = (await readFile(opts.tokenFile, 'utf8')).trim();
  } catch {
    throw new Error(`cannot read the API token ${opts.tokenFile} (slipway serve creates it on first start)`);
  }
  const machines = await fetchMachines(opts, token);
  // an apply running against the same state (issue 17): --watch follows it to its end too
  const running = opts.watch ? await fetchRunning(opts, token) : [];
  if (!opts.watch || (allDone(machines) && !running.length)) {
    opts.out.write(table(machines));
    opts.out.write(factsLines(machines));
    return allReady(machines) ? 0 : 1;
  }
  return watch(opts, token, machines, running);
}

interface ActivityLine {
  seq: number;
  run: string;
  command: string;
  kind: string;
  machine?: string;
  text: string;
  ok?: boolean;
  at: string;
}

interface RunningRun {
  run: string;
  command: string;
  last: string;
  /** its lines so far */
  lines: ActivityLine[];
}

/** Day-2 runs (apply) serve heard of lately and that have not ended, with their lines so far; none from a serve without the endpoint. */
async function fetchRunning(opts: StatusOptions, token: string): Promise<RunningRun[]> {
  const res = await fetch(`${opts.server}/api/v1/activity`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) return [];
  const v = (await res.json()) as { running: Omit<RunningRun, 'lines'>[]; events: ActivityLine[] };
  return v.running.map((r) => ({ ...r, lines: v.events.filter((e) => e.run === r.run) }));
}

const activityLine = (a: ActivityLine) => `${a.at} ${a.text.startsWith(`${a.command}:`) ? a.text : `${a.command}: ${a.text}`}\n`;

/** a run not heard of for this long is over (apply posts a heartbeat every 20 s; serve/activity.ts) */
const SILENCE_MS = 60_000;

async function watch(opts: StatusOptions, token: string, machines: MachineRow[], running: RunningRun[]): Promise<number> {
  // day-2 runs being followed: run id → when last heard of
  const runs = new Map(running.map((r) => [r.run, Date.parse(r.last)]));
  const following = () => {
    for (const [run, last] of runs) if (Date.now() - last > SILENCE_MS) runs.delete(run);
    return runs.size > 0;
  };
  const byName = new Map(machines.map((m) => [m.name, m]));
  const tty = opts.out.isTTY === true;
  const total = STATES.length - 1;
  const multi = new cliProgress.MultiBar(
    { stream: opts.out, format: ' {label} {bar} {state} {info}', barsize: 24, hideCursor: true, clearOnComplete: false, noTTYOutput: false, forceRedraw: true },
    cliProgress.Presets.shades_classic,
  );
  const width = Math.max(7, ...machines.map((m) => m.name.length));
  const cluster = tty ? multi.create(machines.length, 0, { label: 'cluster'.padEnd(width), state: '', info: '' }) : undefined;
  const bars = new Map(machines.map((m) => [m.name, tty ? multi.create(total, 0, { label: m.name.padEnd(width), state: '', info: '' }) : undefined]));
  const draw = () => {
    for (const m of byName.values()) {
      bars.get(m.name)?.update(rank(m.state), { state: m.state.padEnd(14), info: m.reason ? `(${m.reason})` : elapsed(m.since) });
    }
    const ready = [...byName.values()].filter((m) => m.state === 'ready').length;
    const failed = [...byName.values()].filter((m) => m.state === 'failed').length;
    cluster?.update(ready, { state: `${ready}/${byName.size} ready`, info: failed ? `${failed} failed` : '' });
  };
  draw();
  const ctrl = new AbortController();
  const timer = opts.timeoutSeconds ? setTimeout(() => ctrl.abort(), opts.timeoutSeconds * 1000) : undefined;
  const tick = tty ? setInterval(draw, 1000) : undefined;
  try {
    const res = await fetch(`${opts.server}/api/v1/events`, { headers: { Authorization: `Bearer ${token}` }, signal: ctrl.signal });
    if (!res.ok || !res.body) throw new Error(`${opts.server}/api/v1/events: HTTP ${res.status}`);
    // Changes that happened between the table fetch and the stream opening.
    for (const m of await fetchMachines(opts, token)) byName.set(m.name, m);
    draw();
    // a running apply's lines so far, then the rest as they come
    let shown = 0;
    const now = await fetchRunning(opts, token); // read after the stream opened: nothing falls between
    for (const r of now) runs.set(r.run, Date.parse(r.last));
    for (const a of now.flatMap((r) => r.lines)) {
      shown = Math.max(shown, a.seq);
      if (tty) multi.log(activityLine(a));
      else opts.out.write(activityLine(a));
    }
    if (!tty) opts.out.write(`following ${byName.size} machines until every one is ready or failed${runs.size ? `, and ${runs.size === 1 ? 'the apply' : `${runs.size} applies`} running until ${runs.size === 1 ? 'it ends' : 'they end'}` : ''}\n`);
    let buf = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk as Uint8Array, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!data) continue;
        if (/^event: activity$/m.test(block)) {
          // apply's progress: its lines, as it prints them
          const a = JSON.parse(data) as ActivityLine;
          if (a.kind === 'end') runs.delete(a.run);
          else runs.set(a.run, Date.now());
          if (a.kind === 'heartbeat') continue;
          if (a.seq <= shown) continue; // printed with the run's lines so far
          const text = activityLine(a);
          if (tty) multi.log(text);
          else opts.out.write(text);
          continue;
        }
        const ev = JSON.parse(data) as { machine: string; to: State; at: string; source: string; reason?: string };
        const m = byName.get(ev.machine);
        if (!m) continue;
        Object.assign(m, { state: ev.to, since: ev.at, reason: ev.reason, lastEvent: ev });
        if (!tty) opts.out.write(`${ev.at} ${ev.machine} ${ev.to} (${ev.source})${ev.reason ? `: ${ev.reason}` : ''}\n`);
        draw();
      }
      if (allDone([...byName.values()]) && !following()) break;
    }
  } catch (e) {
    if (!ctrl.signal.aborted) throw e;
  } finally {
    if (timer) clearTimeout(timer);
    if (tick) clearInterval(tick);
    multi.stop();
    ctrl.abort();
  }
  const final = [...byName.values()];
  opts.out.write(`\n${table(final)}`);
  return allReady(final) ? 0 : 1;
}

export const defaultTokenFile = (stateDir: string) => join(stateDir, 'api-token');
