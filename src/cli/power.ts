// `slipway power` and `slipway provision`: machines' BMCs from the cluster file (power/).
// Every machine gets its own line and its own outcome; the exit status says whether all
// succeeded. Passwords are read by the driver when it needs them and never printed.
import { readFile } from 'node:fs/promises';
import type { Machine, Spec } from '../spec/types.ts';
import { POWER_ACTIONS, type Bmc, type DriverOptions, type PowerAction } from '../power/driver.ts';
import { driverFor, errorLabel, forEach, type Outcome } from '../power/drivers.ts';
import { table, type MachineRow } from '../lifecycle/table.ts';
import type { State } from '../store/states.ts';
import type { PowerControl } from '../serve/context.ts';

export class PowerUsage extends Error {}

export interface PowerIo {
  out: (s: string) => void;
  err: (s: string) => void;
  driver?: DriverOptions;
}

/** The named machines (or every machine with a bmc, --all); each must exist and have a bmc. */
export function selectMachines(spec: Spec, names: string[], all: boolean): (Machine & { bmc: NonNullable<Machine['bmc']> })[] {
  if (all && names.length > 0) throw new PowerUsage('name machines or give --all, not both');
  if (!all && names.length === 0) throw new PowerUsage('name at least one machine, or give --all');
  const picked = all ? spec.machines.filter((m) => m.bmc) : names.map((n) => spec.machines.find((m) => m.name === n) ?? n);
  const unknown = picked.filter((m): m is string => typeof m === 'string');
  if (unknown.length) throw new PowerUsage(`no machine ${unknown.join(', ')} in the cluster file (machines: ${spec.machines.map((m) => m.name).join(', ')})`);
  const ms = picked as Machine[];
  const without = ms.filter((m) => !m.bmc);
  if (without.length) throw new PowerUsage(`${without.map((m) => m.name).join(', ')}: no bmc in the cluster file (machines[].bmc)`);
  if (ms.length === 0) throw new PowerUsage('--all: no machine in the cluster file has a bmc');
  return ms as (Machine & { bmc: NonNullable<Machine['bmc']> })[];
}

const bmcOf = (m: Machine & { bmc: NonNullable<Machine['bmc']> }): Bmc => ({ ...m.bmc, machine: m.name });
const where = (b: Bmc) => `${b.address}:${b.port}`;

function render(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** One outcome per machine as a table row: NAME BMC RESULT DETAIL. */
function outcomeTable(bmcs: Bmc[], outcomes: Outcome<string>[]): string {
  const rows = [['NAME', 'BMC', 'RESULT', 'DETAIL']];
  outcomes.forEach((o, i) => rows.push([o.machine, where(bmcs[i]!), o.ok ? o.value : `error: ${errorLabel(o.kind)}`, o.ok ? `${(o.ms / 1000).toFixed(1)}s` : o.error]));
  return render(rows);
}

export async function powerCommand(spec: Spec, action: string, names: string[], all: boolean, parallel: number, io: PowerIo): Promise<number> {
  if (!(POWER_ACTIONS as readonly string[]).includes(action)) throw new PowerUsage(`power: the action must be one of ${POWER_ACTIONS.join(', ')}`);
  const ms = selectMachines(spec, names, all);
  const bmcs = ms.map(bmcOf);
  const outcomes = await forEach(
    bmcs.map((b) => b.machine),
    parallel,
    async (name) => {
      const d = driverFor(bmcs.find((b) => b.machine === name)!, io.driver);
      const a = action as PowerAction;
      if (a === 'status') return d.status();
      await d[a]();
      return a === 'cycle' || a === 'reset' ? `${a} done` : `powered ${a}`;
    },
  );
  io.out(outcomeTable(bmcs, outcomes));
  const failed = outcomes.filter((o) => !o.ok).length;
  if (failed) io.err(`${failed} of ${outcomes.length} machines failed`);
  return failed ? 1 : 0;
}

export interface ProvisionOptions {
  server: string;
  tokenFile: string;
  parallel: number;
  timeoutSeconds: number;
  /** seconds between two looks at serve's machines */
  pollSeconds?: number;
}

async function api(server: string, token: string, path: string, method = 'GET', timeoutMs = 15_000): Promise<unknown> {
  const res = await fetch(`${server}${path}`, { method, headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
  if (res.status === 401) throw new Error(`${server} refused the API token`);
  if (!res.ok) {
    const text = await res.text();
    let why = text.slice(0, 600);
    try {
      why = (JSON.parse(text) as { error?: string }).error ?? why; // serve's own message (a refused window says why)
    } catch {
      // not JSON
    }
    throw new Error(`${server}${path}: HTTP ${res.status}: ${why}`);
  }
  return res.json();
}

const machinesOf = async (server: string, token: string) => ((await api(server, token, '/api/v1/machines')) as { machines: MachineRow[] }).machines;
const done = (s: State) => s === 'ready' || s === 'failed';

/**
 * For each machine: the next boot from the network (once), marked for (re)provisioning in
 * serve (the operator's reprovision: a new token, the next network boot installs), then a
 * power cycle (power on when it is off); then follow them to ready or failed.
 */
export async function provisionCommand(spec: Spec, names: string[], all: boolean, opts: ProvisionOptions, io: PowerIo): Promise<number> {
  const ms = selectMachines(spec, names, all);
  let token: string;
  try {
    token = (await readFile(opts.tokenFile, 'utf8')).trim();
  } catch {
    throw new Error(`cannot read the API token ${opts.tokenFile} (slipway serve creates it on first start)`);
  }
  // serve must be there before any machine is touched: a machine power-cycled into a
  // network boot that nobody answers is worse than one left alone
  const before = await machinesOf(opts.server, token).catch((e: Error) => {
    throw new Error(`serve at ${opts.server} does not answer (${e.message}): start \`slipway serve\` first`);
  });
  const missing = ms.filter((m) => !before.some((r) => r.name === m.name));
  if (missing.length) throw new Error(`serve at ${opts.server} does not know ${missing.map((m) => m.name).join(', ')}: is it serving this cluster file?`);

  // serve's event stream, opened before any machine is touched: a machine's DHCP request
  // can come within a second of its power cycle, before a table fetched later would show it
  const events = await openEvents(opts.server, token);
  try {
    const bmcs = ms.map(bmcOf);
    const outcomes = await forEach(
      bmcs.map((b) => b.machine),
      opts.parallel,
      async (name) => {
        const d = driverFor(bmcs.find((b) => b.machine === name)!, io.driver);
        await d.setNextBoot('pxe', true);
        // serve opens its provisioning window while the cluster runs (a bootstrap token through the cluster's API: it may take a while)
        const r = (await api(opts.server, token, `/api/v1/machines/${name}/reprovision`, 'POST', 60_000)) as { window?: { id: string; expires: string } };
        try {
          await d.cycle();
        } catch (e) {
          (e as Error).message = `marked for reprovisioning, but the power cycle failed: ${(e as Error).message}`;
          throw e;
        }
        return r.window ? `network boot (bootstrap token ${r.window.id}, expires ${r.window.expires})` : 'network boot';
      },
    );
    io.out(outcomeTable(bmcs, outcomes));
    const started = outcomes.filter((o) => o.ok).map((o) => o.machine);
    const failedToStart = outcomes.length - started.length;
    if (started.length === 0) {
      io.err(`no machine was started: ${failedToStart} failed`);
      return 1;
    }
    // Follow like `status --watch`: a line per transition, the table at the end.
    io.out(`following ${started.length} machines until every one is ready or failed`);
    const deadline = Date.now() + opts.timeoutSeconds * 1000;
    const rowsNow = async () => (await machinesOf(opts.server, token)).filter((r) => started.includes(r.name));
    let rows = await rowsNow();
    let lastLook = Date.now();
    while (!rows.every((r) => done(r.state))) {
      if (Date.now() >= deadline) {
        io.err(`gave up following after ${opts.timeoutSeconds} s`);
        break;
      }
      const ev = await events.next(Math.min(deadline - Date.now(), 5_000));
      if (ev && started.includes(ev.machine)) io.out(`${ev.at} ${ev.machine} ${ev.to} (${ev.source})${ev.reason ? `: ${ev.reason}` : ''}`);
      // the table decides when every machine is done (events may arrive out of a table's order)
      if ((ev && done(ev.to)) || Date.now() - lastLook > 5_000 || events.closed) {
        rows = await rowsNow();
        lastLook = Date.now();
        if (events.closed && !rows.every((r) => done(r.state))) await new Promise((r) => setTimeout(r, 2_000));
      }
    }
    io.out(`\n${table(rows)}`);
    const ready = rows.filter((r) => r.state === 'ready').length;
    return ready === rows.length && failedToStart === 0 ? 0 : 1;
  } finally {
    events.close();
  }
}

interface StreamEvent {
  machine: string;
  to: State;
  at: string;
  source: string;
  reason?: string;
}

/** serve's /api/v1/events (server-sent events) as a queue: next(ms) gives the next event or undefined after ms. */
async function openEvents(server: string, token: string) {
  const ctrl = new AbortController();
  const res = await fetch(`${server}/api/v1/events`, { headers: { Authorization: `Bearer ${token}` }, signal: ctrl.signal });
  if (!res.ok || !res.body) throw new Error(`${server}/api/v1/events: HTTP ${res.status}`);
  const queue: StreamEvent[] = [];
  let wake: (() => void) | undefined;
  const q = {
    closed: false,
    async next(ms: number): Promise<StreamEvent | undefined> {
      if (queue.length === 0 && !q.closed) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.max(0, ms));
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
      }
      return queue.shift();
    },
    close: () => ctrl.abort(),
  };
  void (async () => {
    let buf = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const data = /^data: (.*)$/m.exec(buf.slice(0, i))?.[1];
          buf = buf.slice(i + 2);
          if (!data) continue;
          try {
            queue.push(JSON.parse(data) as StreamEvent);
          } catch {
            // not an event of ours
          }
          wake?.();
        }
      }
    } catch {
      // aborted, or serve went away: the table fetches say which
    } finally {
      q.closed = true;
      wake?.();
    }
  })();
  return q;
}

export interface PowerCliContext {
  load: (file: string) => Promise<Spec | undefined>;
  out: (s: string) => void;
  err: (s: string) => void;
  /** the state directory for a cluster file and --state (where serve's API token is) */
  stateDir: (file: string, state: string | undefined) => string;
  server: (spec: Spec) => string;
}

function positiveInt(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new PowerUsage(`${flag} must be a whole number, at least 1`);
  return Number(v);
}

/** `slipway power -f FILE ACTION NAME...|--all` and `slipway provision -f FILE NAME...|--all`, from argv. */
export async function powerCli(cmd: 'power' | 'provision', argv: string[], ctx: PowerCliContext): Promise<number> {
  const { parseArgs } = await import('node:util');
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { file: { type: 'string', short: 'f' }, all: { type: 'boolean' }, parallel: { type: 'string' }, server: { type: 'string' }, state: { type: 'string' }, 'token-file': { type: 'string' }, timeout: { type: 'string' } },
    });
  } catch (e) {
    throw new PowerUsage((e as Error).message);
  }
  const a = parsed.values;
  if (!a.file) throw new PowerUsage('missing -f FILE');
  const spec = await ctx.load(a.file);
  if (!spec) return 1;
  const io: PowerIo = { out: ctx.out, err: ctx.err };
  if (cmd === 'power') {
    for (const f of ['server', 'state', 'token-file', 'timeout'] as const) if (a[f] !== undefined) throw new PowerUsage(`power takes no --${f}`);
    const [action, ...names] = parsed.positionals;
    if (!action) throw new PowerUsage(`power: name an action (${POWER_ACTIONS.join(', ')})`);
    return powerCommand(spec, action, names, a.all ?? false, positiveInt(a.parallel, '--parallel', 8), io);
  }
  return provisionCommand(
    spec,
    parsed.positionals,
    a.all ?? false,
    {
      server: a.server ?? ctx.server(spec),
      tokenFile: a['token-file'] ?? `${ctx.stateDir(a.file, a.state)}/api-token`,
      parallel: positiveInt(a.parallel, '--parallel', 4),
      timeoutSeconds: positiveInt(a.timeout, '--timeout', 3600),
    },
    io,
  );
}

/** `slipway serve`'s power control (the API's POST /api/v1/machines/NAME/power): the same drivers as `slipway power`. */
export const servePowerControl: PowerControl = async (m, action) => {
  if (!m.bmc) return { ok: false, kind: 'failed', error: `${m.name} has no bmc` };
  const d = driverFor({ ...m.bmc, machine: m.name });
  const [o] = await forEach([m.name], 1, async () => {
    if (action === 'status') return d.status();
    await d[action]();
    return action === 'cycle' || action === 'reset' ? `${action} done` : `powered ${action}`;
  });
  return o!.ok ? { ok: true, result: o!.value } : { ok: false, kind: errorLabel(o!.kind), error: o!.error };
};
