// A seeded fuzz of a running serve's POST /api/v1/report, model-checked: one sequential
// stream of reports per machine (valid ones of random shape, details nested and sized up
// to and past every limit, wrong types, broken JSON, oversized bodies, replays of used
// seqs, replays with the token of a previous install), operator reprovisions in between,
// while `streams` event streams follow every transition. Knows nothing of src/ (it must
// not share the server's bugs): the limits and the state order are written out here.
// Bounded by durationMs and maxRequests; prints one JSON summary line (never a token).
//
//   ip netns exec <ns> node report-fuzz.ts '{"base":"http://10.20.30.2:8080","state":"<state dir>","seed":1,…}'
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rng, type Rng } from './rng.ts';

export interface FuzzRequest {
  base: string;
  /** serve's state directory: api-token and tokens.json */
  state: string;
  seed: number;
  durationMs: number;
  maxRequests: number;
  machines: string[];
  /**
   * the control-plane machines among them: once one has joined (failed since, after joining,
   * still counts), a reprovision of another
   * asks the cluster for a bootstrap token (serve/window.ts); no apiserver runs here, so
   * serve must refuse it (502) and change nothing
   */
  controlPlanes: string[];
  /** event streams to hold open (the server's cap); one more must get 503 */
  streams: number;
  /** a machine is reprovisioned after this long (plus up to as long again, at random) */
  reprovisionEveryMs: number;
  /**
   * requests a second, all machines together: far above what machines send (a handful
   * of reports per install), below what saturates a loaded 2-core host, where no server
   * could answer anything in 100 ms
   */
  ratePerSec: number;
}

export interface FuzzSummary {
  seed: number;
  requests: number;
  elapsedMs: number;
  /** "kind status" → count */
  outcomes: Record<string, number>;
  /** anything that was not what the model expected (first 50) */
  unexpected: string[];
  serverErrors: number;
  reprovisions: number;
  /** reprovisions sent while another control-plane machine's state was in flight (either answer accepted) */
  reprovisionsRacing: number;
  /** reprovisions refused by the window rule (a control-plane machine joined, no apiserver) */
  reprovisionsRefused: number;
  oldTokenRefused: number;
  /** a refused report's seq, then accepted on the machine's next valid report */
  seqKeptAfterRefusal: number;
  /** detail depths sent past the limit (deepest) */
  deepest: number;
  maxGetBytes: number;
  streams: { opened: number; refusedOverCap: boolean; eventsEach: number[]; transitions: number };
  stateErrors: string[];
}

// What the issue and the docs promise, written out independently of src/.
const MAX_BODY = 64 * 1024;
const LIMIT = { depth: 8, keys: 64, items: 256, string: 16 * 1024, key: 128, values: 4096 };
const ORDER = ['unknown', 'discovered', 'dhcp', 'booting', 'config-fetched', 'installing', 'installed', 'joined', 'ready'];
const REPORTABLE = ['installing', 'installed', 'joined', 'ready', 'failed'];
/** states a machine may report again as progress (the installer's steps; the installed system after the installer) */
const PROGRESS = ['installing', 'installed'];
const moves = (from: string, to: string) =>
  to === 'failed' ? from !== 'failed' : from !== 'failed' && (ORDER.indexOf(to) > ORDER.indexOf(from) || (to === from && PROGRESS.includes(to)));

interface Model {
  name: string;
  token: string;
  /** the next seq the machine has not used in this install */
  seq: number;
  state: string;
  /** for failed: the state it failed in (lifecycle reached(): failed after joining still counts as joined) */
  failedFrom?: string;
  /** machine events of this install: seq → state */
  events: { seq: number; to: string }[];
  /** bodies accepted in this install (replays must get 400), and earlier installs' (401) */
  accepted: string[];
  old: { token: string; body: string }[];
  /** a request in flight that may change whether it counts as joined (machines run concurrently): a report of joined or ready, or its reprovision */
  inFlight?: 'joins' | 'reprovision';
  /** a refused report left this seq unused */
  refusedAt?: number;
  nextReprovision: number;
}

const pick = <T>(r: Rng, xs: readonly T[]): T => xs[r.below(xs.length)]!;
const chance = (r: Rng, p: number) => r.below(1_000_000) < p * 1_000_000;

/** Strings a log line can hold, and some it should not: quotes, escapes, controls, unicode, lone surrogates. */
function str(r: Rng, max: number): string {
  const len = chance(r, 0.05) ? r.below(max + 1) : r.below(Math.min(max, 64) + 1);
  const alphabet = ['a', 'Z', '0', ' ', '"', '\\', '\n', '\t', '\u0000', '\u001f', 'é', '→', '😀', '\ud800', '<', '{', '}'];
  let s = '';
  while (s.length < len) s += chance(r, 0.8) ? String.fromCharCode(97 + r.below(26)) : pick(r, alphabet);
  return s.slice(0, len);
}

/** A random value within every limit (values counted in `budget`). */
function value(r: Rng, depth: number, budget: { values: number }): unknown {
  budget.values--;
  const k = r.below(10);
  if (depth >= LIMIT.depth || budget.values <= 0 || k < 4) {
    const s = r.below(5);
    return s === 0 ? str(r, 2_000) : s === 1 ? r.next() - 2 ** 31 : s === 2 ? r.below(2) === 0 : s === 3 ? null : (r.next() / 7) * (r.below(2) ? 1 : -1);
  }
  if (k < 7) {
    const n = chance(r, 0.05) ? r.below(LIMIT.items + 1) : r.below(6);
    const a: unknown[] = [];
    for (let i = 0; i < n && budget.values > 0; i++) a.push(value(r, depth + 1, budget));
    return a;
  }
  return object(r, depth + 1, budget);
}

function object(r: Rng, depth: number, budget: { values: number }): Record<string, unknown> {
  const n = chance(r, 0.05) ? r.below(LIMIT.keys + 1) : r.below(6);
  const o: Record<string, unknown> = {};
  for (let i = 0; i < n && budget.values > 0; i++) o[chance(r, 0.02) ? 'k'.repeat(LIMIT.key) : `${str(r, 12)}${i}`] = value(r, depth, budget);
  return o;
}

/** A detail within every limit whose report stays under 64 KiB (or the machine's usual {unit, logs}). */
function validDetail(r: Rng): unknown {
  if (chance(r, 0.3)) return { unit: 'kubelet.service', logs: str(r, 8_000) };
  if (chance(r, 0.05)) return { logs: 'x'.repeat(LIMIT.string) }; // exactly at the limit
  for (let i = 0; i < 5; i++) {
    const d = object(r, 1, { values: r.below(LIMIT.values) });
    if (JSON.stringify(d).length < MAX_BODY - 4_000) return d;
  }
  return { unit: 'x.service' };
}

/** detail JSON past one limit; the text is built directly (no recursion at any depth). */
function badDetail(r: Rng, summary: FuzzSummary): { text: string; kind: string } {
  switch (r.below(7)) {
    case 0:
    case 1: {
      const depth = pick(r, [LIMIT.depth + 1, LIMIT.depth + 2, 50, 1_000, 4_300, 4_400, 12_000, 30_000]);
      summary.deepest = Math.max(summary.deepest, depth);
      const form = r.below(3);
      if (form === 0) return { kind: 'deep', text: `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` };
      if (form === 1) return { kind: 'deep', text: `{"d":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}` };
      return { kind: 'deep', text: `{"d":${'[{"a":'.repeat(Math.ceil((depth - 1) / 2))}0${'}]'.repeat(Math.ceil((depth - 1) / 2))}}` };
    }
    case 2:
      return { kind: 'long-string', text: JSON.stringify({ logs: 'y'.repeat(LIMIT.string + 1 + r.below(40_000)) }) };
    case 3:
      return { kind: 'wide-object', text: JSON.stringify(Object.fromEntries(Array.from({ length: LIMIT.keys + 1 + r.below(500) }, (_, i) => [`k${i}`, i]))) };
    case 4:
      return { kind: 'long-array', text: JSON.stringify({ a: Array(LIMIT.items + 1 + r.below(5_000)).fill(0) }) };
    case 5:
      return { kind: 'many-values', text: JSON.stringify({ a: Array.from({ length: 17 + r.below(10) }, () => Array(250).fill(1)) }) };
    default:
      return { kind: 'long-key', text: JSON.stringify({ ['k'.repeat(LIMIT.key + 1 + r.below(1_000))]: 1 }) };
  }
}

/** A report the server must refuse with 400 for its fields (or 413 when it is too large). */
function badFields(r: Rng, seq: number): { body: string; kind: string } {
  const cases: [string, string][] = [
    ['seq-string', `{"state":"installed","seq":"${seq}"}`],
    ['seq-float', `{"state":"installed","seq":${seq}.5}`],
    ['seq-zero', '{"state":"installed","seq":0}'],
    ['seq-negative', `{"state":"installed","seq":-${seq}}`],
    ['seq-unsafe', '{"state":"installed","seq":9007199254740993}'],
    ['seq-missing', '{"state":"installed"}'],
    ['state-bad', `{"state":"exploded","seq":${seq}}`],
    ['state-server-only', `{"state":"booting","seq":${seq}}`],
    ['state-number', `{"state":7,"seq":${seq}}`],
    ['reason-number', `{"state":"installed","seq":${seq},"reason":5}`],
    ['reason-long', JSON.stringify({ state: 'failed', seq, reason: 'r'.repeat(2_001) })],
    ['failed-no-reason', `{"state":"failed","seq":${seq}}`],
    ['type-detail-array', `{"state":"installed","seq":${seq},"detail":[1,2]}`],
    ['type-detail-string', `{"state":"installed","seq":${seq},"detail":"x"}`],
    ['type-detail-null', `{"state":"installed","seq":${seq},"detail":null}`],
    ['not-json', `{"state":"installed","seq":${seq}`],
    ['empty', ''],
    ['array', `[{"state":"installed","seq":${seq}}]`],
    ['null', 'null'],
    ['garbage', Buffer.from(Array.from({ length: 1 + r.below(2_000) }, () => r.byte())).toString('latin1')],
  ];
  const [kind, body] = pick(r, cases);
  return { kind, body };
}

export async function fuzz(req: FuzzRequest): Promise<FuzzSummary> {
  const r = rng(req.seed);
  const t0 = performance.now();
  const deadline = t0 + req.durationMs;
  const apiToken = readFileSync(join(req.state, 'api-token'), 'utf8').trim();
  const tokensNow = () => (JSON.parse(readFileSync(join(req.state, 'tokens.json'), 'utf8')) as { machineTokens: Record<string, string> }).machineTokens;
  const summary: FuzzSummary = {
    seed: req.seed, requests: 0, elapsedMs: 0, outcomes: {}, unexpected: [], serverErrors: 0, reprovisions: 0, reprovisionsRefused: 0, reprovisionsRacing: 0, oldTokenRefused: 0,
    seqKeptAfterRefusal: 0, deepest: 0, maxGetBytes: 0, streams: { opened: 0, refusedOverCap: false, eventsEach: [], transitions: 0 }, stateErrors: [],
  };
  const wrong = (what: string) => summary.unexpected.length < 50 && summary.unexpected.push(what);
  const operator = { Authorization: `Bearer ${apiToken}` };

  let slot = performance.now();
  const pace = async () => {
    slot = Math.max(slot + 1000 / req.ratePerSec, performance.now()); // no burst to catch up after a stall
    const wait = slot - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  };
  /** `expect`: a 5xx this request must get (the window rule's 502), not a server error */
  const call = async (kind: string, path: string, init: RequestInit, expect?: number): Promise<{ status: number; text: string }> => {
    await pace();
    summary.requests++;
    try {
      const res = await fetch(`${req.base}${path}`, { ...init, signal: AbortSignal.timeout(15_000) });
      const text = await res.text();
      const key = `${kind} ${res.status}`;
      summary.outcomes[key] = (summary.outcomes[key] ?? 0) + 1;
      if (res.status >= 500 && res.status !== expect) {
        summary.serverErrors++;
        wrong(`${kind}: ${res.status} ${text.slice(0, 200)}`);
      }
      return { status: res.status, text };
    } catch (e) {
      wrong(`${kind}: ${(e as Error).message}${(e as Error).cause ? ` (${((e as Error).cause as Error).message})` : ''}`);
      return { status: 0, text: '' };
    }
  };
  const post = (kind: string, token: string, body: string) =>
    call(kind, '/api/v1/report', { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body });

  // Event streams: the cap, then all of them following every transition of the run.
  const aborts = new AbortController();
  const counts: number[] = [];
  const readers: Promise<void>[] = [];
  for (let i = 0; i < req.streams; i++) {
    const res = await fetch(`${req.base}/api/v1/events`, { headers: operator, signal: aborts.signal });
    if (res.status !== 200 || !res.body) {
      wrong(`event stream ${i + 1}: ${res.status}`);
      await res.body?.cancel();
      continue;
    }
    summary.streams.opened++;
    const at = counts.push(0) - 1;
    readers.push(
      (async () => {
        let buf = '';
        const dec = new TextDecoder();
        try {
          for await (const chunk of res.body!) {
            buf += dec.decode(chunk as Uint8Array, { stream: true });
            let cut;
            while ((cut = buf.indexOf('\n\n')) >= 0) {
              if (buf.startsWith('id: ')) counts[at]!++;
              buf = buf.slice(cut + 2);
            }
          }
        } catch {
          // aborted at the end
        }
      })(),
    );
  }
  const over = await fetch(`${req.base}/api/v1/events`, { headers: operator, signal: AbortSignal.timeout(10_000) });
  summary.streams.refusedOverCap = over.status === 503;
  await over.body?.cancel();

  const initial = tokensNow();
  const models: Model[] = req.machines.map((name) => ({
    name, token: initial[name]!, seq: 1, state: 'unknown', events: [], accepted: [], old: [], nextReprovision: performance.now() + req.reprovisionEveryMs * (1 + r.next() / 2 ** 32),
  }));
  const going = () => performance.now() < deadline && summary.requests < req.maxRequests;

  const valid = async (m: Model) => {
    const state = pick(r, REPORTABLE);
    const report: Record<string, unknown> = { machine: m.name, state, seq: m.seq };
    if (state === 'failed' || chance(r, 0.3)) report.reason = str(r, 2_000) || 'unit x failed';
    if (chance(r, 0.8)) report.detail = validDetail(r);
    let body = JSON.stringify(report);
    if (Buffer.byteLength(body) > MAX_BODY) body = JSON.stringify({ ...report, detail: { unit: 'x.service' } }); // escapes grew it past 64 KiB
    if (state === 'joined' || state === 'ready') m.inFlight = 'joins';
    const res = await post('valid', m.token, body).finally(() => (m.inFlight = undefined));
    if (res.status === 429) {
      m.refusedAt = m.seq; // throttled: the same seq must be accepted later
      return;
    }
    if (res.status !== 200) return wrong(`${m.name} valid seq ${m.seq} ${state}: ${res.status} ${res.text.slice(0, 200)} (body ${body.length} bytes)`);
    if (m.refusedAt === m.seq) summary.seqKeptAfterRefusal++; // the refused report carried this very seq
    m.refusedAt = undefined;
    const got = JSON.parse(res.text) as { state: string; event: { to: string } | null };
    const moved = moves(m.state, state);
    if (moved !== (got.event !== null)) wrong(`${m.name} seq ${m.seq}: ${m.state} → ${state} moved=${got.event !== null}, model says ${moved}`);
    if (moved) {
      if (state === 'failed') m.failedFrom = m.state;
      m.state = state;
      m.events.push({ seq: m.seq, to: state });
      summary.streams.transitions++;
    }
    if (got.state !== m.state) wrong(`${m.name}: server says ${got.state}, model ${m.state}`);
    m.accepted.push(body);
    m.seq++;
  };

  /** a report refused for what it carries: the machine's next seq, which must stay unused */
  const refused = async (m: Model, kind: string, body: string, want?: number) => {
    const expect = want ?? (Buffer.byteLength(body) > MAX_BODY ? 413 : 400);
    const res = await post(kind, m.token, body);
    if (res.status !== expect) return wrong(`${m.name} ${kind}: ${res.status}, expected ${expect} (${Buffer.byteLength(body)} bytes) ${res.text.slice(0, 200)}`);
    if (expect === 400 && kind.startsWith('detail-') && !/detail (is nested deeper than 8 levels|has a string longer|has an object with more than 64 keys|has an array of more than 256|holds more than 4096 values|has a key longer)/.test(res.text))
      wrong(`${m.name} ${kind}: the refusal does not name the limit: ${res.text.slice(0, 200)}`);
    m.refusedAt = m.seq;
  };

  const reprovision = async (m: Model) => {
    const joined = (x: Model) => { const reached = x.state === 'failed' ? x.failedFrom : x.state; return reached === 'joined' || reached === 'ready'; };
    const cps = models.filter((x) => x !== m && req.controlPlanes.includes(x.name));
    const clusterRuns = cps.some(joined);
    // what may flip the rule while this request is in flight: every joined control-plane
    // machine being reprovisioned, or one reporting joined or ready; either answer is then
    // right (and checked as such)
    const unsure = clusterRuns ? cps.filter(joined).every((x) => x.inFlight === 'reprovision') : cps.some((x) => x.inFlight === 'joins');
    m.inFlight = 'reprovision';
    const res = await call('reprovision', `/api/v1/machines/${m.name}/reprovision`, { method: 'POST', headers: operator }, clusterRuns || unsure ? 502 : undefined).finally(() => (m.inFlight = undefined));
    if (unsure) summary.reprovisionsRacing++;
    if (res.status === 502 && (clusterRuns || unsure)) {
      // the window rule: refused, naming why, the machine's token and state as they were
      if (!res.text.includes('the cluster runs')) wrong(`reprovision ${m.name}: 502 without the window rule's reason: ${res.text.slice(0, 200)}`);
      else summary.reprovisionsRefused++;
      if (tokensNow()[m.name] !== m.token) wrong(`reprovision ${m.name} refused, but its token changed`);
      m.nextReprovision = performance.now() + req.reprovisionEveryMs * (1 + r.next() / 2 ** 32);
      return;
    }
    if (clusterRuns && !unsure) {
      const seen = cps.map((x) => `${x.name}: ${x.state}${x.failedFrom ? ` (failed from ${x.failedFrom})` : ''}`);
      return wrong(`reprovision ${m.name} while a control-plane machine has joined (no apiserver here; ${seen.join(', ')}): ${res.status}, expected 502 ${res.text.slice(0, 200)}`);
    }
    if (res.status !== 200) return wrong(`reprovision ${m.name}: ${res.status} ${res.text.slice(0, 200)}`);
    summary.reprovisions++;
    const token = tokensNow()[m.name]!;
    const mode = statSync(join(req.state, 'tokens.json')).mode & 0o777;
    if (mode !== 0o600) wrong(`tokens.json is ${mode.toString(8)} after a reprovision`);
    if (token === m.token) wrong(`reprovision ${m.name}: the token did not change`);
    for (const body of m.accepted) m.old.push({ token: m.token, body });
    const oldToken = m.token;
    const last = m.accepted.at(-1) ?? JSON.stringify({ state: 'installing', seq: 1 });
    // the model follows serve at once: the other machines' loops read it while this one awaits below
    Object.assign(m, { token, seq: 1, state: 'unknown', failedFrom: undefined, events: [], accepted: [], refusedAt: undefined });
    // The previous install's last report, and a fresh one from its first seq: both refused.
    for (const body of [last, JSON.stringify({ state: 'installing', seq: 1 })]) {
      const res2 = await post('old-token', oldToken, body);
      if (res2.status === 401 || res2.status === 403) summary.oldTokenRefused++;
      else wrong(`${m.name}: a report with the token of before the reprovision got ${res2.status}`);
    }
    m.nextReprovision = performance.now() + req.reprovisionEveryMs * (1 + r.next() / 2 ** 32);
  };

  const step = async (m: Model) => {
    if (performance.now() > m.nextReprovision) return reprovision(m);
    const k = r.below(100);
    if (k < 30) return valid(m);
    if (k < 55) {
      const d = badDetail(r, summary);
      return refused(m, `detail-${d.kind}`, `{"state":"installed","seq":${m.seq},"detail":${d.text}}`);
    }
    if (k < 68) {
      const b = badFields(r, m.seq);
      return refused(m, b.kind, b.body);
    }
    if (k < 73) return refused(m, 'oversized', JSON.stringify({ state: 'installed', seq: m.seq, detail: { logs: 'z'.repeat(MAX_BODY + r.below(100_000)) } }), 413);
    if (k < 83) {
      // a replay: this install's (400, its seq is used) or an earlier install's (401, old token)
      if (m.old.length && chance(r, 0.5)) {
        const o = pick(r, m.old);
        const res = await post('replay-old-install', o.token, o.body);
        if (res.status === 401 || res.status === 403) summary.oldTokenRefused++;
        else wrong(`${m.name}: a replay from before a reprovision got ${res.status}`);
        return;
      }
      if (m.accepted.length) {
        const res = await post('replay', m.token, pick(r, m.accepted));
        if (res.status !== 400 && res.status !== 429) wrong(`${m.name} replay: ${res.status}, expected 400 (or 429, throttled)`);
        return;
      }
      return valid(m);
    }
    if (k < 86) {
      const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const token = Array.from({ length: chance(r, 0.5) ? 43 : 1 + r.below(80) }, () => pick(r, [...B64URL])).join('');
      const res = await post('wrong-token', token, `{"state":"ready","seq":${m.seq}}`);
      if (res.status !== 401) wrong(`wrong token: ${res.status}`);
      return;
    }
    if (k < 89) {
      const res = await call('get-machine', `/api/v1/machines/${m.name}`, { headers: operator });
      summary.maxGetBytes = Math.max(summary.maxGetBytes, Buffer.byteLength(res.text));
      if (res.status !== 200) return wrong(`GET ${m.name}: ${res.status}`);
      const v = JSON.parse(res.text) as { state: string };
      if (v.state !== m.state) wrong(`GET ${m.name}: state ${v.state}, model ${m.state}`);
      return;
    }
    if (k < 91) {
      const res = await call('get-machines', `/api/v1/machines?limit=${1 + r.below(5)}`, { headers: operator });
      summary.maxGetBytes = Math.max(summary.maxGetBytes, Buffer.byteLength(res.text));
      if (res.status !== 200) wrong(`GET machines: ${res.status}`);
      return;
    }
    return valid(m);
  };

  await Promise.all(models.map(async (m) => {
    while (going()) await step(m);
  }));

  // The server's view of each machine agrees with the model: state, and this install's events.
  for (const m of models) {
    const res = await call('final', `/api/v1/machines/${m.name}`, { headers: operator });
    const v = JSON.parse(res.text) as { state: string; events: { source: string; to: string; detail?: { seq?: number } }[] };
    if (v.state !== m.state) summary.stateErrors.push(`${m.name}: server ${v.state}, model ${m.state}`);
    const since = v.events.findLastIndex((e) => e.source === 'operator');
    const got = v.events.slice(since + 1).filter((e) => e.source === 'machine').map((e) => `${e.detail?.seq}:${e.to}`);
    const want = m.events.map((e) => `${e.seq}:${e.to}`);
    if (got.join(' ') !== want.join(' ')) summary.stateErrors.push(`${m.name}: events ${got.join(' ')} but the model has ${want.join(' ')}`);
  }
  // Give the streams a moment to receive the last transitions (bounded), then close them.
  const want = summary.streams.transitions + summary.reprovisions;
  for (let i = 0; i < 50 && counts.some((c) => c < want); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  summary.streams.eventsEach = [...counts];
  aborts.abort();
  await Promise.allSettled(readers);
  summary.elapsedMs = performance.now() - t0;
  return summary;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  fuzz(JSON.parse(process.argv[2] ?? '{}') as FuzzRequest).then(
    (s) => process.stdout.write(JSON.stringify(s) + '\n'),
    (e: Error) => {
      console.error(e.stack);
      process.exit(2);
    },
  );
}
