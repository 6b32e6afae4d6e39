// Certificate generation: Slipway against cfssl, the tool guide 02 has operators run.
// Same set both ways: the three CAs and every leaf of the 3-control-plane HA spec,
// ECDSA P-256. The cfssl side is what the guide does by hand, one command per file:
//   cfssl gencert -initca ca-csr.json | cfssljson -bare ca
//   cfssl gencert -ca=ca.pem -ca-key=ca-key.pem -config=ca-config.json -profile=... x-csr.json | cfssljson -bare x
// Writing the CSR JSON files is not timed (the operator types those once); the runs are.
// Run directly: node bench/pki.bench.ts
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';
import { certList, type CertDef } from '../src/secrets/certlist.ts';
import { haSpec } from '../test/helpers/spec.ts';

const CFSSL = process.env.CFSSL ?? 'cfssl';
const CFSSLJSON = process.env.CFSSLJSON ?? 'cfssljson';
const RUNS = 5;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const profileOf = (d: CertDef): string => [...d.usages].sort().join('+'); // 'client', 'server', 'client+server'

/** ca-config.json with one profile per usage set, matching Slipway's key and extended usages for EC keys. */
function cfsslConfig(defs: CertDef[]): string {
  const profiles: Record<string, { expiry: string; usages: string[] }> = {};
  for (const d of defs.filter((x) => !x.isCA)) {
    const usages = ['digital signature', ...d.usages.map((u) => `${u} auth`)];
    profiles[profileOf(d)] = { expiry: `${d.validityDays * 24}h`, usages };
  }
  return JSON.stringify({ signing: { default: { expiry: '8760h' }, profiles } }, null, 2);
}

function cfsslCsr(d: CertDef): string {
  return JSON.stringify({
    CN: d.cn,
    key: { algo: 'ecdsa', size: 256 },
    ...(d.o ? { names: d.o.map((O) => ({ O })) } : {}),
    ...(d.sans ? { hosts: [...d.sans.dns, ...d.sans.ip] } : {}),
    ...(d.isCA ? { ca: { expiry: `${d.validityDays * 24}h` } } : {}),
  });
}

/** `cfssl <args> | cfssljson -bare <bare>` in cwd, without a shell. */
function cfsslPipe(cwd: string, args: string[], bare: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const gen = spawn(CFSSL, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const json = spawn(CFSSLJSON, ['-bare', bare], { cwd, stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    gen.stderr.on('data', (c: Buffer) => (err += c)); // cfssl logs every step on stderr
    json.stderr.on('data', (c: Buffer) => (err += c));
    gen.stdout.pipe(json.stdin);
    let pending = 2;
    const done = (who: string) => (code: number | null) => {
      if (code !== 0) reject(new Error(`${who} ${args.join(' ')} exited ${code}:\n${err}`));
      else if (--pending === 0) resolve();
    };
    gen.on('error', (e) => reject(new Error(`cannot run ${CFSSL} (Debian: apt install golang-cfssl): ${e.message}`)));
    json.on('error', (e) => reject(new Error(`cannot run ${CFSSLJSON} (Debian: apt install golang-cfssl): ${e.message}`)));
    gen.on('close', done(CFSSL));
    json.on('close', done(CFSSLJSON));
  });
}

async function cfsslOnce(dir: string, defs: CertDef[]): Promise<number> {
  await writeFile(join(dir, 'ca-config.json'), cfsslConfig(defs));
  for (const d of defs) {
    await mkdir(dirname(join(dir, d.id)), { recursive: true });
    await writeFile(join(dir, `${d.id}-csr.json`), cfsslCsr(d));
  }
  const t0 = performance.now();
  for (const d of defs) {
    const csr = `${d.id}-csr.json`;
    const args = d.isCA
      ? ['gencert', '-initca', csr]
      : ['gencert', `-ca=${d.ca}.pem`, `-ca-key=${d.ca}-key.pem`, '-config=ca-config.json', `-profile=${profileOf(d)}`, csr];
    await cfsslPipe(dir, args, d.id); // cfssljson writes <id>.pem and <id>-key.pem
  }
  return performance.now() - t0;
}

async function slipwayOnce(dir: string): Promise<number> {
  const t0 = performance.now();
  await loadOrCreateSecrets(join(dir, 'state'), haSpec());
  return performance.now() - t0;
}

/** Median wall time over RUNS fresh directories for each tool. */
export async function benchPki(): Promise<{ slipwayMs: number; cfsslMs: number }> {
  const defs = certList(haSpec());
  const root = await mkdtemp(join(tmpdir(), 'slipway-bench-pki-'));
  try {
    const slipway: number[] = [];
    const cfssl: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      slipway.push(await slipwayOnce(await mkdtemp(join(root, 'slipway-'))));
      cfssl.push(await cfsslOnce(await mkdtemp(join(root, 'cfssl-')), defs));
    }
    return { slipwayMs: median(slipway), cfsslMs: median(cfssl) };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

export function formatPkiBench(r: { slipwayMs: number; cfsslMs: number }): string {
  const defs = certList(haSpec());
  const cas = defs.filter((d) => d.isCA).length;
  const rows: [string, string][] = [
    ['slipway loadOrCreateSecrets (fresh state dir)', r.slipwayMs.toFixed(1)],
    [`cfssl gencert | cfssljson, ${defs.length} runs`, r.cfsslMs.toFixed(1)],
    ['cfssl / slipway', `${(r.cfsslMs / r.slipwayMs).toFixed(1)}x`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return [
    `PKI: ${cas} CAs + ${defs.length - cas} leaves of the 3-control-plane HA spec, ECDSA P-256, median of ${RUNS}`,
    `${'tool'.padEnd(w)}  wall ms`,
    ...rows.map(([k, v]) => `${k.padEnd(w)}  ${v.padStart(7)}`),
  ].join('\n');
}

if (import.meta.main) {
  console.log(formatPkiBench(await benchPki()));
}
