// Measures how long a running `slipway serve` takes to answer, every `intervalMs`: an
// HTTP GET /healthz, then a whole DHCP DORA for one MAC (played as a relay agent, so it
// needs no port 68 and no MAC of its own). Runs until stdin closes or durationMs passes,
// then prints one JSON line: every probe's latency in ms (a failed probe counts as its
// timeout). Run it inside a test namespace:
//
//   ip netns exec <ns> node serve-prober.ts '{"base":"http://10.20.30.2:8080","server":"10.20.30.2","relay":"10.20.30.250","mac":"…"}'
import { fileURLToPath } from 'node:url';
import { runLoad } from './dhcp-load.ts';

export interface ProbeRequest {
  base: string;
  server: string;
  relay: string;
  mac: string;
  intervalMs?: number;
  /** upper bound on the whole run */
  durationMs?: number;
  /** per probe */
  timeoutMs?: number;
}

export interface ProbeResult {
  healthzMs: number[];
  doraMs: number[];
  failures: string[];
}

export async function probeLoop(req: ProbeRequest, stop: () => boolean): Promise<ProbeResult> {
  const interval = req.intervalMs ?? 100;
  const timeout = req.timeoutMs ?? 2_000;
  const end = performance.now() + (req.durationMs ?? 300_000);
  const out: ProbeResult = { healthzMs: [], doraMs: [], failures: [] };
  for (let next = performance.now(); !stop() && performance.now() < end; ) {
    let t = performance.now();
    try {
      const res = await fetch(`${req.base}/healthz`, { signal: AbortSignal.timeout(timeout) });
      await res.text();
      if (res.status !== 200) out.failures.push(`healthz ${res.status}`);
      out.healthzMs.push(performance.now() - t);
    } catch (e) {
      out.failures.push(`healthz: ${(e as Error).message}`);
      out.healthzMs.push(timeout);
    }
    t = performance.now();
    const r = await runLoad({ server: req.server, relay: req.relay, macs: [req.mac], attempts: 1, timeoutMs: timeout, deadlineMs: timeout + 500 });
    if (r.acks.length === 1) out.doraMs.push(r.latenciesMs[0]!);
    else {
      out.failures.push(`dora: ${r.naks.length ? 'NAK' : 'no ACK'}`);
      out.doraMs.push(timeout);
    }
    next += interval;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    else next = performance.now(); // a slow probe: start again from now, do not burst
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const req = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest;
  let stopped = false;
  process.stdin.on('end', () => (stopped = true)).on('close', () => (stopped = true)).resume();
  probeLoop(req, () => stopped).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e: Error) => {
      console.error(e.stack);
      process.exit(2);
    },
  );
}
