// Many machines reporting at once: each walks installing → installed → joined → ready
// with increasing seq. Prints one JSON line per acknowledged (HTTP 200) report, as soon
// as it is acknowledged, so a test can compare what the server acknowledged with what
// it still has after a crash. Usage: node report-storm.ts URL TOKENS.json [concurrency]
import { readFileSync } from 'node:fs';

const [url, tokensFile, conc = '100'] = process.argv.slice(2);
const tokens = (JSON.parse(readFileSync(tokensFile!, 'utf8')) as { machineTokens: Record<string, string> }).machineTokens;
const STEPS = ['installing', 'installed', 'joined', 'ready'] as const;
const names = Object.keys(tokens);
let next = 0;
let alive = true;

async function machine(name: string): Promise<void> {
  for (const [i, state] of STEPS.entries()) {
    if (!alive) return;
    try {
      const res = await fetch(`${url}/api/v1/report`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${tokens[name]}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ state, seq: i + 1 }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = await res.text();
      if (res.status !== 200) {
        process.stdout.write(JSON.stringify({ name, seq: i + 1, state, status: res.status, body }) + '\n');
        return;
      }
      process.stdout.write(JSON.stringify({ name, seq: i + 1, state, status: 200 }) + '\n');
    } catch {
      alive = false; // the server is gone: stop everywhere
      return;
    }
  }
}

async function worker(): Promise<void> {
  while (alive && next < names.length) await machine(names[next++]!);
}
await Promise.all(Array.from({ length: Number(conc) }, worker));
