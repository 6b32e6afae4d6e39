// The JSON API (documented in docs/openapi.yaml, served at /api/v1/openapi.yaml):
// operator endpoints behind the operator's bearer token, and the machine-facing
// /api/v1/report behind each machine's own token. Wrong or missing tokens get 401, are
// logged, and change nothing.
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isState, type State } from '../../store/states.ts';
import { FACTS_HISTORY, type MachineRecord, type StoredEvent } from '../../store/store.ts';
import { normalizeMac } from '../../lib/mac.ts';
import type { ServeContext } from '../context.ts';
import { counter } from '../metrics.ts';
import { clientIp, type Handler } from './server.ts';
import { checkDetail } from './report-limits.ts';
import { checkFacts, enlistReport } from '../enlist.ts';
import { adoptRoute, MAX_ADOPT_BYTES } from '../enlist-adopt.ts';
import { WindowError } from '../window.ts';
import { checkActivity, type ActivityEvent } from '../activity.ts';

export const MAX_REPORT_BYTES = 64 * 1024;
/** GET /api/v1/machines/{name}: at most this many events, and no more detail than MACHINE_DETAIL_BYTES; `?before=` pages back */
export const MACHINE_EVENTS = 100;
export const MACHINE_DETAIL_BYTES = 512 * 1024;
/** GET /api/v1/machines: discovered MACs per page (`?limit=` up to DISCOVERED_PAGE_MAX, `?after=<mac>`) */
export const DISCOVERED_PAGE = 100;
export const DISCOVERED_PAGE_MAX = 1000;
/** an unknown MAC not seen for this long is forgotten */
export const DISCOVERED_TTL_MS = 24 * 3600_000;
/** at most this many unknown MACs are kept (the most recently seen) */
export const DISCOVERED_MAX = 10_000;
/** live event streams at once; one more gets 503 */
export const MAX_EVENT_STREAMS = 64;
/**
 * Reports a machine may have stored: a burst of REPORT_BURST, then REPORT_RATE a second.
 * report.sh sends a handful per install (one per failing unit at worst); every stored one
 * is a database write, and a flood of them (a machine's token in the wrong hands) would
 * grow the journal and its checkpoints without bound. Past it: 429, seq unused (curl's
 * --retry waits and sends it again).
 */
export const REPORT_BURST = 30;
export const REPORT_RATE = 5;
/** events replayed per page of an event stream's catch-up (each carries up to 64 KiB of detail) */
const REPLAY_PAGE = 50;
/** a stream whose client lets more than this pile up unread is closed (it resumes with Last-Event-ID) */
const MAX_STREAM_BACKLOG = 8 * 1024 * 1024;
/** An installed machine's SSH host key as report.sh sends it (the type and the key, no comment). */
const HOST_KEY = /^ssh-ed25519 [A-Za-z0-9+/]{68}$/;

/** States a machine may report about itself; the servers observe the earlier ones. */
const REPORTABLE: State[] = ['installing', 'installed', 'joined', 'ready', 'failed'];
const OPENAPI = new URL('../../../docs/openapi.yaml', import.meta.url);

export interface ApiOptions {
  operatorToken: string;
  /** machine name → its report token */
  machineTokens: () => Record<string, string>;
}

const json = (res: ServerResponse, status: number, body: unknown): true => {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
  return true;
};
const problem = (res: ServerResponse, status: number, message: string) => json(res, status, { error: message });

function sameToken(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

export const SESSION_COOKIE = 'slipway_session';

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

export function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (h?.startsWith('Bearer ')) return h.slice(7).trim();
  return undefined;
}

/** Past the limit, this much more of a body is read and dropped, so a client still sending it sees the 413 instead of a reset. */
const DRAIN_BYTES = 1024 * 1024;

/**
 * Read a request body up to `limit` bytes; undefined when it is larger. A larger body is
 * read on and dropped up to DRAIN_BYTES (the client gets its answer instead of EPIPE);
 * past that reading stops (`req.complete` stays false: the caller closes the connection).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (v: Buffer | undefined, e?: Error) => {
      req.off('data', data).off('end', end).off('error', error).off('close', gone);
      if (e) reject(e);
      else resolve(v);
    };
    const data = (c: Buffer) => {
      size += c.length;
      if (size <= limit) return void chunks.push(c);
      chunks.length = 0;
      if (size <= limit + DRAIN_BYTES) return;
      req.pause();
      done(undefined);
    };
    const end = () => done(size <= limit ? Buffer.concat(chunks) : undefined);
    const error = (e: Error) => done(undefined, e);
    const gone = () => done(undefined); // the client went away mid-body (req.readableAborted)
    req.on('data', data).on('end', end).on('error', error).on('close', gone);
  });
}

/** Mask every secret file's contents; show the rest (for the API and the console). */
export function artifactList(ctx: ServeContext, name: string) {
  const prefix = `machines/${name}/root`;
  const out: { path: string; mode: string; secret: boolean; size: number; link?: string; contents?: string }[] = [];
  for (const [rel, f] of ctx.site().tree) {
    if (!rel.startsWith(prefix + '/')) continue;
    out.push({
      path: rel.slice(prefix.length),
      mode: `0${f.mode.toString(8)}`,
      secret: !!f.secret,
      size: Buffer.byteLength(f.contents),
      ...(f.link ? { link: f.link } : { contents: f.secret ? '•••• secret: masked ••••' : f.contents }),
    });
  }
  return out;
}

/**
 * One machine for the API. The list view's lastEvent leaves out its detail (up to 64 KiB
 * each, times every machine); the detail view has the newest events, bounded in number
 * and bytes (`moreEvents`: older ones exist, ask again with `before=<first event id>`).
 */
export function machineView(ctx: ServeContext, name: string, withDetail: boolean, opts: { before?: number; records?: Map<string, MachineRecord> } = {}) {
  const m = ctx.site().machine(name);
  if (!m) return undefined;
  const rec = (opts.records ?? new Map(ctx.lifecycle.list().map((r) => [r.name, r]))).get(name);
  const last = ctx.store.recentEvents(name, { limit: 1, maxDetailBytes: 0, withDetail: false }).events[0];
  const recent = withDetail ? ctx.store.recentEvents(name, { beforeId: opts.before, limit: MACHINE_EVENTS, maxDetailBytes: MACHINE_DETAIL_BYTES }) : undefined;
  return {
    name, mac: m.mac, ip: m.ip, roles: m.roles,
    state: rec?.state ?? 'unknown', since: rec?.since || undefined, reason: rec?.reason,
    lastEvent: last,
    // issue 18: what the machine reported it is (enlistment or its installed report)
    facts: ctx.store.facts(m.mac),
    ...(recent ? { events: recent.events, moreEvents: recent.more, artifacts: artifactList(ctx, name) } : {}),
  };
}

/** Resolves when the client took what was written (or went away). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * At most `per` log lines a minute per key (a machine, a client address); the rest are
 * only counted, and the next line let through says how many were left out. Logging is a
 * synchronous write, so a flood of bad requests must not turn into a flood of lines.
 */
function logBudget(per: number, windowMs = 60_000) {
  const keys = new Map<string, { start: number; lines: number; dropped: number }>();
  return (key: string, line: (extra: { suppressed?: number }) => void): void => {
    const now = Date.now();
    let b = keys.get(key);
    let suppressed = 0;
    if (!b || now - b.start >= windowMs) {
      suppressed = b?.dropped ?? 0;
      if (!b && keys.size >= 1024) keys.clear(); // client addresses are keys too: keep the table small
      b = { start: now, lines: 0, dropped: 0 };
      keys.set(key, b);
    }
    if (b.lines++ < per) line(suppressed ? { suppressed } : {});
    else b.dropped++;
  };
}

/** A positive integer query parameter, or undefined when absent; NaN when malformed. */
function intParam(url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  return /^[0-9]{1,15}$/.test(v) ? Number(v) : NaN;
}

export function apiRoutes(ctx: ServeContext, opts: ApiOptions): Handler {
  const unauthorized = counter(ctx.registry, 'slipway_api_unauthorized_total', 'API requests refused for a wrong or missing token', ['endpoint']);
  const reports = counter(ctx.registry, 'slipway_api_reports_total', 'machine reports by outcome', ['outcome']);
  const quiet = logBudget(10);
  const buckets = new Map<string, { tokens: number; at: number }>(); // per machine: bounded by the cluster file
  const takeToken = (name: string): boolean => {
    const now = Date.now();
    const b = buckets.get(name) ?? { tokens: REPORT_BURST, at: now };
    b.tokens = Math.min(REPORT_BURST, b.tokens + ((now - b.at) / 1000) * REPORT_RATE);
    b.at = now;
    buckets.set(name, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  };
  const deny = (req: IncomingMessage, res: ServerResponse, endpoint: string) => {
    unauthorized.inc({ endpoint });
    const from = clientIp(req);
    quiet(`deny ${from}`, (x) => ctx.log.warn({ from, endpoint, hasToken: !!bearer(req), ...x }, 'unauthorized API request'));
    res.setHeader('WWW-Authenticate', 'Bearer realm="slipway"');
    return problem(res, 401, 'missing or wrong bearer token');
  };
  // The console authenticates with an HttpOnly, SameSite=Strict cookie set by POST
  // /api/v1/session (EventSource cannot send an Authorization header); scripts use Bearer.
  const operator = (req: IncomingMessage) => {
    const t = bearer(req) ?? cookie(req, SESSION_COOKIE);
    return t !== undefined && sameToken(t, opts.operatorToken);
  };

  // One lifecycle listener fans out to every stream (so no MaxListenersExceeded
  // however many watch), each event serialized and encoded once (one Buffer shared by
  // every socket, never copied per client); the streams are capped, as each holds a
  // socket and a buffer.
  const streams = new Set<(ev: StoredEvent, frame: Buffer) => void>();
  const frameOf = (ev: StoredEvent): Buffer => Buffer.from(`id: ${ev.id}\nevent: transition\ndata: ${JSON.stringify(ev)}\n\n`);
  const fanOut = (ev: StoredEvent) => {
    const frame = frameOf(ev);
    for (const s of streams) s(ev, frame);
  };
  // apply's progress (issue 17, serve/activity.ts): `event: activity`, no id (a stream
  // resumes by the transitions' ids; missed activity is in GET /api/v1/activity)
  const rawStreams = new Set<(frame: Buffer) => void>();
  const fanOutActivity = (ev: ActivityEvent) => {
    const frame = Buffer.from(`event: activity\ndata: ${JSON.stringify(ev)}\n\n`);
    for (const s of rawStreams) s(frame);
  };
  const adopt = adoptRoute(ctx);

  return async (req, res, url) => {
    const p = url.pathname;
    if (!p.startsWith('/api/v1/')) return false;
    if (p === '/api/v1/openapi.yaml' && req.method === 'GET') {
      const text = readFileSync(OPENAPI, 'utf8');
      res.writeHead(200, { 'Content-Type': 'application/yaml', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return true;
    }
    if (p === '/api/v1/report') {
      if (req.method !== 'POST') return problem(res, 405, 'POST only');
      return report(req, res);
    }
    // issue 18: an unknown machine's facts, with the one-use token of its enlistment boot
    if (p === '/api/v1/enlist') {
      if (req.method !== 'POST') return problem(res, 405, 'POST only');
      const from = clientIp(req);
      const r = await enlistReport(ctx, req, bearer(req), readBody, from);
      if (r.log) {
        const line = r.log;
        if (line.level === 'info') ctx.log.info(line.fields, line.msg);
        else quiet(`enlist ${from}`, (x) => ctx.log.warn({ ...line.fields, ...x }, line.msg));
      }
      if (r.status === 401) {
        unauthorized.inc({ endpoint: '/api/v1/enlist' });
        res.setHeader('WWW-Authenticate', 'Bearer realm="slipway"');
      }
      if (r.status === 413 && !req.complete) res.setHeader('Connection', 'close'); // the rest of the body was not read
      return json(res, r.status, r.body);
    }
    if (!operator(req)) return deny(req, res, p.split('/').slice(0, 4).join('/'));
    if (p === '/api/v1/session' && req.method === 'POST') {
      res.setHeader('Set-Cookie', `${SESSION_COOKIE}=${bearer(req) ?? cookie(req, SESSION_COOKIE)}; Path=/api/; HttpOnly; SameSite=Strict`);
      return json(res, 200, { ok: true });
    }
    if (p === '/api/v1/cluster' && req.method === 'GET') {
      const spec = ctx.site().spec;
      const counts: Record<string, number> = {};
      for (const r of ctx.lifecycle.list()) counts[r.state] = (counts[r.state] ?? 0) + 1;
      return json(res, 200, { name: spec.name, kubernetesVersion: spec.kubernetesVersion, machines: spec.machines.length, states: counts });
    }
    if (p === '/api/v1/machines' && req.method === 'GET') {
      // Every machine of the file (the file bounds them); unknown MACs a page at a time.
      const limit = intParam(url, 'limit') ?? DISCOVERED_PAGE;
      const after = url.searchParams.get('after') ?? '';
      if (!(limit >= 1 && limit <= DISCOVERED_PAGE_MAX)) return problem(res, 400, `limit must be an integer from 1 to ${DISCOVERED_PAGE_MAX}`);
      const page = ctx.store.discovered({ seenSince: new Date(Date.now() - DISCOVERED_TTL_MS).toISOString(), after, limit: limit + 1 });
      const records = new Map(ctx.lifecycle.list().map((r) => [r.name, r]));
      return json(res, 200, {
        machines: ctx.site().spec.machines.map((m) => machineView(ctx, m.name, false, { records })),
        // with what each enlisted (issue 18)
        discovered: page.slice(0, limit).map((d) => ({ ...d, facts: ctx.store.facts(d.mac) })),
        ...(page.length > limit ? { discoveredNext: page[limit - 1]!.mac } : {}),
      });
    }
    let m = /^\/api\/v1\/machines\/([a-z0-9-]+)$/.exec(p);
    if (m && req.method === 'GET') {
      const before = intParam(url, 'before');
      if (Number.isNaN(before)) return problem(res, 400, 'before must be an event id');
      const v = machineView(ctx, m[1]!, true, { before });
      return v ? json(res, 200, v) : problem(res, 404, `no machine ${m[1]}`);
    }
    m = /^\/api\/v1\/machines\/([a-z0-9-]+)\/reprovision$/.exec(p);
    if (m && req.method === 'POST') {
      if (!ctx.site().machine(m[1]!)) return problem(res, 404, `no machine ${m[1]}`);
      let r: Awaited<ReturnType<ServeContext['reprovision']>>;
      try {
        r = await ctx.reprovision(m[1]!, 'operator');
        await ctx.store.durable();
      } catch (e) {
        ctx.log.error({ machine: m[1], err: (e as Error).message }, 'reprovision failed');
        // the cluster's API did not take its token: the upstream failed, nothing changed
        return problem(res, e instanceof WindowError ? 502 : 500, `reprovision of ${m[1]} failed: ${(e as Error).message}`);
      }
      ctx.log.info({ machine: m[1], ...(r.window ? { bootstrapToken: r.window.id } : {}) }, 'reprovisioned: new report token, next network boot installs');
      // the window's token id and expiry, never its secret
      return json(res, 200, { event: r.event, ...(r.window ? { window: r.window } : {}) });
    }
    // issue 18: power through the machine's BMC (docs/power.md); the password never leaves power/
    m = /^\/api\/v1\/machines\/([a-z0-9-]+)\/power$/.exec(p);
    if (m && (req.method === 'GET' || req.method === 'POST')) {
      const machine = ctx.site().spec.machines.find((x) => x.name === m![1]);
      if (!machine) return problem(res, 404, `no machine ${m[1]}`);
      if (!ctx.power) return problem(res, 501, 'this serve has no power control');
      if (!machine.bmc) return problem(res, 409, `${machine.name} has no bmc in the cluster file (machines[].bmc)`);
      let action = 'status';
      if (req.method === 'POST') {
        const body = await readBody(req, 1024);
        let parsed: unknown;
        try {
          parsed = body && JSON.parse(body.toString('utf8'));
        } catch {
          parsed = undefined;
        }
        action = (parsed as { action?: unknown } | undefined)?.action as string;
        if (!['status', 'on', 'off', 'cycle', 'reset'].includes(action)) return problem(res, 400, 'the body must be {"action": "status"|"on"|"off"|"cycle"|"reset"}');
      }
      const r = await ctx.power(machine, action as 'status');
      ctx.log.info({ machine: machine.name, action, ok: r.ok, ...(r.ok ? { result: r.result } : { kind: r.kind, err: r.error }) }, 'power');
      return r.ok ? json(res, 200, { machine: machine.name, action, result: r.result }) : json(res, 502, { machine: machine.name, action, error: r.error, kind: r.kind });
    }
    // issue 18: a MAC's facts as it reported them over time (enlistments, installed reports), newest first
    m = /^\/api\/v1\/facts\/([0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5})$/.exec(p);
    if (m && req.method === 'GET') {
      const limit = intParam(url, 'limit');
      if (limit !== undefined && !(limit >= 1 && limit <= FACTS_HISTORY)) return problem(res, 400, `limit must be an integer from 1 to ${FACTS_HISTORY}`);
      const mac = normalizeMac(m[1]!);
      return json(res, 200, { mac, history: ctx.store.factsHistory(mac, limit) });
    }
    // issue 18: adopt a discovered machine into the cluster file (the console's form; slipway adopt's code)
    if (p === '/api/v1/adopt' && req.method === 'POST') {
      const r = await adopt(await readBody(req, MAX_ADOPT_BYTES));
      if (r.status === 413 && !req.complete) res.setHeader('Connection', 'close'); // the rest of the body was not read
      return json(res, r.status, r.body);
    }
    if (p === '/api/v1/events' && req.method === 'GET') return events(req, res, url);
    // issue 17: day-2 progress (apply posts it; status --watch and the console show it)
    if (p === '/api/v1/activity' && req.method === 'GET') return json(res, 200, ctx.activity.view());
    if (p === '/api/v1/activity' && req.method === 'POST') {
      const body = await readBody(req, 16 * 1024);
      if (body === undefined) {
        if (!req.complete) res.setHeader('Connection', 'close');
        return problem(res, 413, 'an activity event is at most 16 KiB');
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        return problem(res, 400, 'the body must be JSON');
      }
      const checked = checkActivity(parsed);
      if ('error' in checked) return problem(res, 400, checked.error);
      return json(res, 200, { seq: ctx.activity.record(checked.event).seq });
    }
    return problem(res, 404, 'no such endpoint');
  };

  /** Server-Sent Events: every transition, live; `Last-Event-ID` (or ?after=) resumes. */
  function events(req: IncomingMessage, res: ServerResponse, url: URL): true {
    if (streams.size >= MAX_EVENT_STREAMS) {
      res.setHeader('Retry-After', '5');
      return problem(res, 503, `too many event streams (at most ${MAX_EVENT_STREAMS}); close one or retry later`);
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    let closed = false;
    let last = 0; // highest id sent: the catch-up and live events meet without gaps or repeats
    const send = (ev: StoredEvent, frame = frameOf(ev)) => {
      if (ev.id <= last || closed) return;
      last = ev.id;
      res.write(frame);
      if (res.writableLength > MAX_STREAM_BACKLOG) {
        ctx.log.warn({ from: clientIp(req), unread: res.writableLength }, 'event stream client is not reading: closed');
        res.destroy();
      }
    };
    const after = Number(req.headers['last-event-id'] ?? url.searchParams.get('after') ?? NaN);
    const held: StoredEvent[] = [];
    let live: (ev: StoredEvent, frame: Buffer) => void = (ev) => void held.push(ev); // held while catching up
    const listener = (ev: StoredEvent, frame: Buffer) => live(ev, frame);
    streams.add(listener);
    if (streams.size === 1) ctx.lifecycle.on('event', fanOut);
    const raw = (frame: Buffer) => {
      if (!closed) res.write(frame);
    };
    rawStreams.add(raw);
    if (rawStreams.size === 1) ctx.activity.on('activity', fanOutActivity);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    req.on('close', () => {
      closed = true;
      clearInterval(ping);
      streams.delete(listener);
      if (streams.size === 0) ctx.lifecycle.off('event', fanOut);
      rawStreams.delete(raw);
      if (rawStreams.size === 0) ctx.activity.off('activity', fanOutActivity);
    });
    // The catch-up goes a page at a time, yielding between pages and waiting for the
    // client to take what it was sent: a long history is neither built in one go nor
    // buffered whole.
    void (async () => {
      if (Number.isFinite(after)) {
        last = after;
        for (let page = ctx.store.events({ afterId: after, limit: REPLAY_PAGE }); page.length && !closed; page = ctx.store.events({ afterId: last, limit: REPLAY_PAGE })) {
          for (const ev of page) send(ev);
          await (res.writableNeedDrain ? drained(res) : new Promise((r) => setImmediate(r)));
        }
      }
      if (closed) return;
      res.write(': connected\n\n');
      for (const ev of held.splice(0)) send(ev);
      live = send;
    })().catch((e: Error) => {
      ctx.log.warn({ err: e.message }, 'event stream failed');
      res.destroy();
    });
    return true;
  }

  async function report(req: IncomingMessage, res: ServerResponse): Promise<true> {
    const token = bearer(req);
    const tokens = opts.machineTokens();
    const name = token ? Object.keys(tokens).find((n) => sameToken(token, tokens[n]!)) : undefined;
    if (!name) {
      reports.inc({ outcome: 'unauthorized' });
      return deny(req, res, '/api/v1/report');
    }
    const body = await readBody(req, MAX_REPORT_BYTES);
    const bad = (why: string) => {
      reports.inc({ outcome: 'rejected' });
      quiet(`report ${name}`, (x) => ctx.log.warn({ machine: name, why, ...x }, 'report rejected'));
      return problem(res, body === undefined ? 413 : 400, why);
    };
    if (body === undefined && req.readableAborted) return true; // nobody to answer
    if (body === undefined) {
      if (!req.complete) res.setHeader('Connection', 'close'); // the rest of the body was not read: the connection cannot be reused
      return bad(`report larger than ${MAX_REPORT_BYTES} bytes`);
    }
    let r: { state?: unknown; seq?: unknown; reason?: unknown; detail?: unknown; hostKey?: unknown };
    try {
      r = JSON.parse(body.toString('utf8')) as typeof r;
    } catch {
      return bad('report is not JSON');
    }
    if (typeof r !== 'object' || r === null) return bad('report must be a JSON object');
    if (typeof r.state !== 'string' || !isState(r.state) || !REPORTABLE.includes(r.state)) return bad(`state must be one of ${REPORTABLE.join(', ')}`);
    if (typeof r.seq !== 'number' || !Number.isSafeInteger(r.seq) || r.seq < 1) return bad('seq must be a positive integer, increasing with every report');
    if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length > 2000)) return bad('reason must be a string of at most 2000 characters');
    // Bounded shape before anything is stored, and before the seq is used: a refused
    // report changes nothing, so the machine's next report may use the same seq.
    const why = r.detail === undefined ? undefined : checkDetail(r.detail);
    if (why) return bad(why);
    if (r.state === 'failed' && !r.reason) return bad('a failed report needs a reason');
    // issue 18: the installer sends the machine's facts with `installed`, checked as strictly
    // as an enlistment's; facts it refuses are dropped (said in the event), not the report
    let facts: Record<string, unknown> | undefined;
    let factsRefused: string | undefined;
    const given = (r.detail as Record<string, unknown> | undefined)?.facts;
    if (given !== undefined) {
      if (r.state !== 'installed') return bad('detail.facts only comes with the installed report');
      const checked = checkFacts(given);
      if ('error' in checked) factsRefused = checked.error;
      else facts = checked.facts as unknown as Record<string, unknown>;
    }
    if (r.hostKey !== undefined && (r.state !== 'installed' || typeof r.hostKey !== 'string' || !HOST_KEY.test(r.hostKey))) return bad('hostKey must be an installed report\'s "ssh-ed25519 AAAA..." line');
    if (!takeToken(name)) {
      reports.inc({ outcome: 'throttled' });
      quiet(`report ${name}`, (x) => ctx.log.warn({ machine: name, ...x }, 'reports too fast: throttled'));
      res.setHeader('Retry-After', '1');
      return problem(res, 429, `more than ${REPORT_BURST} reports at once or ${REPORT_RATE} a second from ${name}: send it again later (its seq is still unused)`);
    }
    // Replays (an old report sent again) carry a seq the machine already used.
    if (!ctx.store.acceptSeq(name, r.seq)) return bad(`seq ${r.seq} was already used: replayed report`);
    // The host key `slipway apply` will trust: the first one reported after (re)provisioning
    // wins; a different one later is refused, since only a reprovision makes new keys.
    if (typeof r.hostKey === 'string') {
      const pinned = ctx.store.pinHostKey(name, r.hostKey);
      if (pinned !== r.hostKey) {
        quiet(`hostkey ${name}`, (x) => ctx.log.warn({ machine: name, ...x }, 'host key differs from the one pinned at install'));
        return bad('hostKey differs from the one pinned when this machine was installed: reprovision it to pin a new one');
      }
    }
    const detail: Record<string, unknown> = { ...(r.detail as Record<string, unknown> | undefined), from: clientIp(req), seq: r.seq };
    // the facts are kept by MAC (store.facts), not in the event: the event says they came
    if (facts) {
      const machine = ctx.site().machine(name);
      if (machine) ctx.store.recordFacts(machine.mac, facts, 'installed', { machine: name });
      detail.facts = 'stored';
    } else if (factsRefused) {
      quiet(`report ${name}`, (x) => ctx.log.warn({ machine: name, why: factsRefused, ...x }, 'installed report: facts refused, report kept'));
      detail.facts = `refused: ${factsRefused}`;
    }
    const extra = { reason: r.reason as string | undefined, detail };
    const ev = r.state === 'failed' ? ctx.lifecycle.fail(name, extra.reason!, 'machine', extra.detail) : ctx.lifecycle.observe(name, r.state, 'machine', extra);
    await ctx.store.durable(); // acknowledged means on disk (the fsync runs off this thread)
    reports.inc({ outcome: ev ? 'accepted' : 'ignored' });
    return json(res, 200, { machine: name, state: ctx.lifecycle.state(name), event: ev ?? null });
  }
}
