// The JSON API (documented in docs/openapi.yaml, served at /api/v1/openapi.yaml):
// operator endpoints behind the operator's bearer token, and the machine-facing
// /api/v1/report behind each machine's own token. Wrong or missing tokens get 401, are
// logged, and change nothing.
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isState, type State } from '../../lifecycle/states.ts';
import type { StoredEvent } from '../../store/store.ts';
import type { ServeContext } from '../serve.ts';
import { counter } from '../metrics.ts';
import { clientIp, type Handler } from './server.ts';

export const MAX_REPORT_BYTES = 64 * 1024;
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

/** Read a request body up to `limit` bytes; undefined when it is larger. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
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

export function machineView(ctx: ServeContext, name: string, withDetail: boolean) {
  const m = ctx.site().machine(name);
  if (!m) return undefined;
  const rec = ctx.lifecycle.list().find((r) => r.name === name);
  const last = ctx.store.events({ machine: name }).at(-1);
  return {
    name, mac: m.mac, ip: m.ip, roles: m.roles,
    state: rec?.state ?? 'unknown', since: rec?.since || undefined, reason: rec?.reason,
    lastEvent: last,
    ...(withDetail ? { events: ctx.store.events({ machine: name }), artifacts: artifactList(ctx, name) } : {}),
  };
}

export function apiRoutes(ctx: ServeContext, opts: ApiOptions): Handler {
  const unauthorized = counter(ctx.registry, 'slipway_api_unauthorized_total', 'API requests refused for a wrong or missing token', ['endpoint']);
  const reports = counter(ctx.registry, 'slipway_api_reports_total', 'machine reports by outcome', ['outcome']);
  const deny = (req: IncomingMessage, res: ServerResponse, endpoint: string) => {
    unauthorized.inc({ endpoint });
    ctx.log.warn({ from: clientIp(req), endpoint, hasToken: !!bearer(req) }, 'unauthorized API request');
    res.setHeader('WWW-Authenticate', 'Bearer realm="slipway"');
    return problem(res, 401, 'missing or wrong bearer token');
  };
  // The console authenticates with an HttpOnly, SameSite=Strict cookie set by POST
  // /api/v1/session (EventSource cannot send an Authorization header); scripts use Bearer.
  const operator = (req: IncomingMessage) => {
    const t = bearer(req) ?? cookie(req, SESSION_COOKIE);
    return t !== undefined && sameToken(t, opts.operatorToken);
  };

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
      return json(res, 200, { machines: ctx.site().spec.machines.map((m) => machineView(ctx, m.name, false)), discovered: ctx.store.discovered() });
    }
    let m = /^\/api\/v1\/machines\/([a-z0-9-]+)$/.exec(p);
    if (m && req.method === 'GET') {
      const v = machineView(ctx, m[1]!, true);
      return v ? json(res, 200, v) : problem(res, 404, `no machine ${m[1]}`);
    }
    m = /^\/api\/v1\/machines\/([a-z0-9-]+)\/reprovision$/.exec(p);
    if (m && req.method === 'POST') {
      if (!ctx.site().machine(m[1]!)) return problem(res, 404, `no machine ${m[1]}`);
      const ev = ctx.lifecycle.reprovision(m[1]!, 'operator');
      ctx.log.info({ machine: m[1] }, 'reprovision requested');
      return json(res, 200, { event: ev });
    }
    if (p === '/api/v1/events' && req.method === 'GET') return events(req, res, url);
    return problem(res, 404, 'no such endpoint');
  };

  /** Server-Sent Events: every transition, live; `Last-Event-ID` (or ?after=) resumes. */
  function events(req: IncomingMessage, res: ServerResponse, url: URL): true {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    const send = (ev: StoredEvent) => res.write(`id: ${ev.id}\nevent: transition\ndata: ${JSON.stringify(ev)}\n\n`);
    const after = Number(req.headers['last-event-id'] ?? url.searchParams.get('after') ?? NaN);
    if (Number.isFinite(after)) for (const ev of ctx.store.events({ afterId: after })) send(ev);
    res.write(': connected\n\n');
    ctx.lifecycle.on('event', send);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    req.on('close', () => {
      clearInterval(ping);
      ctx.lifecycle.off('event', send);
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
      ctx.log.warn({ machine: name, why }, 'report rejected');
      return problem(res, body === undefined ? 413 : 400, why);
    };
    if (body === undefined) return bad(`report larger than ${MAX_REPORT_BYTES} bytes`);
    let r: { state?: unknown; seq?: unknown; reason?: unknown; detail?: unknown };
    try {
      r = JSON.parse(body.toString('utf8')) as typeof r;
    } catch {
      return bad('report is not JSON');
    }
    if (typeof r !== 'object' || r === null) return bad('report must be a JSON object');
    if (typeof r.state !== 'string' || !isState(r.state) || !REPORTABLE.includes(r.state)) return bad(`state must be one of ${REPORTABLE.join(', ')}`);
    if (typeof r.seq !== 'number' || !Number.isSafeInteger(r.seq) || r.seq < 1) return bad('seq must be a positive integer, increasing with every report');
    if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length > 2000)) return bad('reason must be a string of at most 2000 characters');
    if (r.detail !== undefined && (typeof r.detail !== 'object' || r.detail === null || Array.isArray(r.detail))) return bad('detail must be an object');
    if (r.state === 'failed' && !r.reason) return bad('a failed report needs a reason');
    // Replays (an old report sent again) carry a seq the machine already used.
    if (!ctx.store.acceptSeq(name, r.seq)) return bad(`seq ${r.seq} was already used: replayed report`);
    const extra = { reason: r.reason as string | undefined, detail: { ...(r.detail as Record<string, unknown> | undefined), from: clientIp(req), seq: r.seq } };
    const ev = r.state === 'failed' ? ctx.lifecycle.fail(name, extra.reason!, 'machine', extra.detail) : ctx.lifecycle.observe(name, r.state, 'machine', extra);
    reports.inc({ outcome: ev ? 'accepted' : 'ignored' });
    return json(res, 200, { machine: name, state: ctx.lifecycle.state(name), event: ev ?? null });
  }
}
