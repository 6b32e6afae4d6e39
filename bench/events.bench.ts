// Live events at scale: 1,000 SSE clients watching while 500 machines report their
// progress at once. Reports the event latency (server commit time → each client has it,
// p50/p99 over every delivery) and the server's peak RSS. Needs root (a lab namespace).
// Run: node bench/events.bench.ts [clients] [machines]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../test/helpers/serve.ts';
import { bigClusterFile } from '../test/helpers/spec.ts';

const CLIENTS = Number(process.argv[2] ?? 1000);
const MACHINES = Number(process.argv[3] ?? 500);

// Runs inside the lab namespace: opens the SSE clients, then fires the reports, and
// prints the latency of every delivery.
const DRIVER = `
const [url, token, tokensFile, clients, machines] = process.argv.slice(2);
const tokens = Object.entries(JSON.parse(require('fs').readFileSync(tokensFile, 'utf8')).machineTokens).slice(0, Number(machines));
const STEPS = ['installing', 'installed', 'joined', 'ready'];
const expected = tokens.length * STEPS.length;
const lat = [];
let open = 0;
const streams = [];
function listen() {
  return new Promise((resolve) => {
    fetch(url + '/api/v1/events', { headers: { Authorization: 'Bearer ' + token } }).then(async (res) => {
      open++; resolve();
      let buf = '', got = 0;
      const dec = new TextDecoder();
      for await (const c of res.body) {
        buf += dec.decode(c, { stream: true });
        let i;
        while ((i = buf.indexOf('\\n\\n')) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const m = /^data: (.*)$/m.exec(block);
          if (!m) continue;
          lat.push(Date.now() - Date.parse(JSON.parse(m[1]).at));
          if (++got === expected) return;
        }
      }
    });
  });
}
(async () => {
  for (let i = 0; i < Number(clients); i += 100) await Promise.all(Array.from({ length: Math.min(100, Number(clients) - i) }, listen));
  const t0 = Date.now();
  let next = 0;
  async function worker() {
    while (next < tokens.length) {
      const [, tok] = tokens[next++];
      for (const [i, state] of STEPS.entries())
        await fetch(url + '/api/v1/report', { method: 'POST', headers: { Authorization: 'Bearer ' + tok }, body: JSON.stringify({ state, seq: i + 1 }) });
    }
  }
  await Promise.all(Array.from({ length: 100 }, worker));
  const reportsDone = Date.now() - t0;
  const deadline = Date.now() + 60000;
  while (lat.length < expected * Number(clients) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  console.log(JSON.stringify({ clients: open, deliveries: lat.length, expected: expected * Number(clients), reportsMs: reportsDone, p50: q(0.5), p99: q(0.99), max: lat[lat.length - 1] }));
  process.exit(0);
})();
`;

export async function benchEvents(): Promise<{ clients: number; deliveries: number; p50: number; p99: number; rssMiB: number }> {
  const lab = Lab.create(bigClusterFile(MACHINES));
  try {
    await lab.start(['--log-level', 'warn']);
    const driver = join(lab.dir, 'driver.cjs');
    writeFileSync(driver, DRIVER);
    const r = await lab.hub.exec(process.execPath, [driver, 'http://10.20.30.2:8080', lab.apiToken(), join(lab.state, 'tokens.json'), String(CLIENTS), String(MACHINES)], { timeoutMs: 180_000 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (!line.startsWith('{')) throw new Error(`driver failed: ${r.out}`);
    const res = JSON.parse(line) as { clients: number; deliveries: number; expected: number; reportsMs: number; p50: number; p99: number; max: number };
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${lab.serve!.pid}/status`, 'utf8'))?.[1];
    const rssMiB = Number(hwm) / 1024;
    console.log(`| SSE clients | reports | deliveries (expected) | reports sent in | event latency p50 | p99 | max | serve peak RSS |`);
    console.log(`|---|---|---|---|---|---|---|---|`);
    console.log(`| ${res.clients} | ${MACHINES * 4} | ${res.deliveries} (${res.expected}) | ${res.reportsMs} ms | ${res.p50} ms | ${res.p99} ms | ${res.max} ms | ${rssMiB.toFixed(0)} MiB |`);
    return { clients: res.clients, deliveries: res.deliveries, p50: res.p50, p99: res.p99, rssMiB };
  } finally {
    await lab.close();
  }
}

if (import.meta.main) await benchEvents();
