// Issue 14's proof for items 4, 5 and 9: a long, seeded fuzz of the real serve's
// POST /api/v1/report (shapes, depths up to and far past the limit, sizes, wrong types,
// replays, replays across reprovisions, 64 event streams following along) while a prober
// times /healthz and a DHCP DORA every 100 ms. No probe may take longer than 100 ms,
// nothing may answer 500, a refused report must leave its seq unused, a reprovisioned
// machine's old token must be refused, and the state must match the fuzzer's model.
// SLIPWAY_FUZZ_SEED repeats a run; SLIPWAY_FUZZ_MS sets its length (default 75 s).
//
// Priorities: the fuzzer runs at nice 19 (it stands for clients on other machines, whose
// CPU a provisioner does not share); serve (every thread) and the prober at nice -10, so
// what is measured is serve's own event loop, not the other jobs of a shared 2-core host
// (CI runs QEMU and Kubernetes beside it). A blocking serve shows at any priority.
import { heavyTestTurn } from '../helpers/vm-lock.ts';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from '../helpers/serve.ts';
import type { FuzzRequest, FuzzSummary } from '../helpers/report-fuzz.ts';
import type { ProbeRequest, ProbeResult } from '../helpers/serve-prober.ts';
import { percentile, type LoadRequest, type LoadResult } from '../helpers/dhcp-load.ts';
import { MAX_EVENT_STREAMS } from '../../src/serve/http/api.ts';

const SEED = Number(process.env.SLIPWAY_FUZZ_SEED ?? Date.now() % 2 ** 31);
const FUZZ_MS = Number(process.env.SLIPWAY_FUZZ_MS ?? 75_000);
const BOUND_MS = 100; // the bound for every probe
const helper = (f: string) => fileURLToPath(new URL(`../helpers/${f}`, import.meta.url));
const CP3 = '52:54:00:20:30:13';
const PROV = '10.20.30.2';
const BASE = `http://${PROV}:8080`;

let lab: Lab;
let release: (() => void) | undefined;
after(async () => {
  await lab?.close();
  release?.();
});
/** minutes the fuzz may wait for its turn beside the QEMU and rehearsal files */
const TURN_MIN = 40;

test('report fuzz: no probe over 100 ms, no 500, seqs kept, old tokens refused, state as modelled', { timeout: FUZZ_MS + 180_000 + TURN_MIN * 60_000 }, async () => {
  // The bound is on time: `npm test` runs test/alone/ after every other file, one at a
  // time (CI3 saw a 348 ms DORA while a control plane started beside it, serve's own
  // event loop never over 65 ms). Run by hand beside other tests, it still waits its turn
  // with the heavy QEMU and rehearsal files.
  release = await heavyTestTurn('report fuzz', TURN_MIN * 60_000);
  // Right after the main suite the host is still busy (its VMs' disks written back and
  // removed, load ~2): serve's event loop once stalled 130 ms there, and 21 ms on the same
  // host at rest. The bound is on serve, so let the host settle first: the dirty pages
  // written, then at most 60 s for the load to fall below one core.
  const settleFrom = performance.now();
  execFileSync('sync');
  while (loadavg()[0]! > 1.0 && performance.now() - settleFrom < 60_000) await new Promise((r) => setTimeout(r, 2_000));
  console.log(`report fuzz: seed ${SEED} (SLIPWAY_FUZZ_SEED=${SEED} repeats it), ${FUZZ_MS} ms, host load ${loadavg()[0]!.toFixed(1)} after ${((performance.now() - settleFrom) / 1000).toFixed(0)} s settling`);
  // serve's state (its SQLite files and leases) on tmpfs: the bound is on serve's own
  // stalls, and in CI other test files beside this one make the disk's fsyncs take over
  // 100 ms (a DORA waits for its lease's fsync: 120 ms seen). That every acknowledged
  // lease and event is on disk is lifecycle.durability's and dhcp.clients' kill -9 tests.
  lab = Lab.create(undefined, existsSync('/dev/shm') ? '/dev/shm' : undefined);
  await lab.start(['--log-level', 'warn']);
  // every thread of serve (workers started later inherit it from the main thread)
  for (const tid of readdirSync(`/proc/${lab.serve!.pid}/task`)) execFileSync('renice', ['-n', '-10', '-p', tid], { stdio: 'ignore' });
  const probeNs = lab.host('02:00:00:00:02:50', '10.20.30.250');
  const fuzzNs = lab.host('02:00:00:00:02:51', '10.20.30.251');

  // cp3's first DORA moves it to dhcp before the streams open, so every stream sees exactly the fuzz's transitions.
  const first = await probeNs.exec(process.execPath, [helper('dhcp-load.ts'), JSON.stringify({ server: PROV, relay: '10.20.30.250', macs: [CP3] } satisfies LoadRequest)], { timeoutMs: 30_000 });
  assert.equal((JSON.parse(first.stdout.trim().split('\n').at(-1)!) as LoadResult).acks.length, 1, first.out);

  // A first scrape empties prom-client's event-loop delay histogram (start-up renders the
  // cluster on this thread): the one after the fuzz then covers the fuzz alone.
  const scrape = async () => (await lab.hub.exec('curl', ['-fsS', '-m', '10', `${BASE}/metrics`], { timeoutMs: 15_000 })).stdout;
  await scrape();
  const probeReq: ProbeRequest = { base: BASE, server: PROV, relay: '10.20.30.250', mac: CP3, intervalMs: 100, durationMs: FUZZ_MS + 60_000, timeoutMs: 2_000 };
  const prober = probeNs.spawn('nice', ['-n', '-10', process.execPath, helper('serve-prober.ts'), JSON.stringify(probeReq)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let probeOut = '';
  prober.stdout!.on('data', (d: Buffer) => (probeOut += d.toString()));
  prober.stderr!.on('data', (d: Buffer) => (probeOut += d.toString()));
  const probed = new Promise<void>((resolve) => prober.once('exit', () => resolve()));

  const fuzzReq: FuzzRequest = {
    base: BASE, state: lab.state, seed: SEED, durationMs: FUZZ_MS, maxRequests: 40_000,
    machines: ['cp1', 'w1', 'w2'], controlPlanes: ['cp1'], streams: MAX_EVENT_STREAMS, reprovisionEveryMs: 6_000, ratePerSec: 250,
  };
  // At the lowest priority: the fuzzer stands for clients on other machines, whose CPU a
  // real provisioner does not share (on this 2-core host it would otherwise take serve's).
  const run = await fuzzNs.exec('nice', ['-n', '19', process.execPath, helper('report-fuzz.ts'), JSON.stringify(fuzzReq)], { timeoutMs: FUZZ_MS + 90_000 });
  prober.stdin!.end(); // the prober stops after its current probe
  await lab.hub.waitFor('the prober to finish', () => prober.exitCode !== null || prober.signalCode !== null, 20_000, 100);
  await probed;
  assert.equal(run.code, 0, `fuzzer (seed ${SEED}):\n${run.out.slice(-4000)}`);
  const f = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as FuzzSummary;
  const p = JSON.parse(probeOut.trim().split('\n').at(-1)!) as ProbeResult;

  const max = (xs: number[]) => Math.max(...xs);
  const fmt = (xs: number[]) => `n=${xs.length} p50=${percentile(xs, 50).toFixed(1)} p99=${percentile(xs, 99).toFixed(1)} max=${max(xs).toFixed(1)} ms`;
  console.log(`host load after: ${loadavg()[0]!.toFixed(1)}`);
  console.log(`fuzz: ${f.requests} requests in ${(f.elapsedMs / 1000).toFixed(1)} s, ${f.reprovisions} reprovisions (${f.reprovisionsRefused} refused by the window rule; ${f.reprovisionsRacing} sent while another control-plane machine's state was in flight), deepest detail ${f.deepest}, largest GET ${f.maxGetBytes} bytes`);
  console.log(`fuzz outcomes: ${JSON.stringify(f.outcomes)}`);
  console.log(`probe /healthz: ${fmt(p.healthzMs)}; DHCP DORA: ${fmt(p.doraMs)}`);
  // serve's own view (prom-client's event-loop delay since the last scrape: nobody else scrapes)
  const metrics = await scrape();
  const lag = (q: string) => Number(new RegExp(`^slipway_process_nodejs_eventloop_lag_${q}_seconds (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN) * 1000;
  console.log(`serve's event-loop delay over the fuzz: p99=${lag('p99').toFixed(1)} max=${lag('max').toFixed(1)} ms`);

  const seed = `(seed ${SEED})`;
  assert.deepEqual(f.unexpected, [], `what the model did not expect ${seed}`);
  assert.equal(f.serverErrors, 0, `no 5xx ${seed}`);
  assert.deepEqual(f.stateErrors, [], `the server's states and events match the model ${seed}`);
  assert.ok(f.requests >= (FUZZ_MS / 1000) * 100, `only ${f.requests} requests`);
  assert.ok(f.deepest >= 4_400, 'details nested as deep as the issue\'s');
  assert.ok(f.seqKeptAfterRefusal >= 100, `a refused report's seq was accepted next ${f.seqKeptAfterRefusal} times`);
  assert.ok(f.reprovisions >= 3, `${f.reprovisions} reprovisions`);
  assert.ok((f.outcomes['valid 429'] ?? 0) > 0, 'a flood of valid reports is throttled (429, seq unused)');
  assert.ok(f.oldTokenRefused >= 2 * f.reprovisions, 'every reprovision: the old token refused');
  assert.ok(f.maxGetBytes < 4 * 1024 * 1024, `a GET answered ${f.maxGetBytes} bytes`);
  assert.equal(f.streams.opened, MAX_EVENT_STREAMS);
  assert.ok(f.streams.refusedOverCap, `stream ${MAX_EVENT_STREAMS + 1} gets 503`);
  const transitions = f.streams.transitions + f.reprovisions;
  assert.deepEqual(f.streams.eventsEach, Array(MAX_EVENT_STREAMS).fill(transitions), 'every stream saw every transition once');

  assert.deepEqual(p.failures, [], 'every probe was answered');
  assert.ok(p.healthzMs.length >= FUZZ_MS / 100 / 3 && p.doraMs.length === p.healthzMs.length, `${p.healthzMs.length} probes`);
  assert.ok(max(p.healthzMs) <= BOUND_MS, `slowest /healthz ${max(p.healthzMs).toFixed(1)} ms ${seed}`);
  assert.ok(max(p.doraMs) <= BOUND_MS, `slowest DHCP DORA ${max(p.doraMs).toFixed(1)} ms ${seed}`);

  assert.equal(lab.serve!.exitCode, null, 'serve is still running');
  assert.equal(statSync(join(lab.state, 'tokens.json')).mode & 0o777, 0o600);
  assert.doesNotMatch(lab.log, /MaxListenersExceeded|http handler failed|Maximum call stack/);
});
