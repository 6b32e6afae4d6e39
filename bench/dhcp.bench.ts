// DHCP throughput and latency: the product as a user starts it (`slipway serve -f
// cluster.yaml` from the CLI, default log level, lifecycle and event store on) against
// kea-dhcp4 (memfile) and dnsmasq running the configuration Slipway exports for the same
// cluster, in one run, one server after another. A load generator plays a relay agent
// (test/helpers/dhcp-load.ts): it runs the full DORA exchange for N distinct MACs
// (default 10,000) with a bounded number in flight, and reports exchanges per second and
// p50/p99 latency from the first DISCOVER to the ACK.
//
// Two product rows: `slipway-known` (the N MACs are the cluster file's machines: each
// DORA also moves its machine to dhcp in the lifecycle, an event in the store) and
// `slipway-pool` (`--unknown local`: the N MACs are unknown, leased from the pool and
// recorded as discovered). Kea and dnsmasq lease from the pool.
//
// Every server keeps its leases on disk the way it would in production: Slipway in
// SQLite (a lease fsynced before its ACK, group commit), Kea in its memfile CSV, dnsmasq
// in its lease file. Kea and dnsmasq log at warning level (their packaged defaults log
// every lease to syslog; that is the operator's choice there).
//
// Run directly (as root: it creates namespaces): node bench/dhcp.bench.ts
//   CLIENTS=10000 CONCURRENCY=64 SERVERS=slipway-known,slipway-pool,kea-dhcp4 node bench/dhcp.bench.ts
//   SERVE_CPU_PROF=/tmp/prof: serve runs with --cpu-prof, its profile written there on exit.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DhcpLab } from '../test/helpers/dhcp-lab.ts';
import { Lab } from '../test/helpers/serve.ts';
import { bigClusterFile } from '../test/helpers/spec.ts';
import type { Netns } from '../test/helpers/netns.ts';
import { generatedMacs, percentile, type LoadRequest, type LoadResult } from '../test/helpers/dhcp-load.ts';
import { haSpec } from '../test/helpers/spec.ts';
import { keaConfig } from '../src/plan/phases/pxe/kea.ts';
import { dnsmasqConf } from '../src/plan/phases/pxe/dnsmasq.ts';
import { parseCidr } from '../src/lib/ipv4.ts';
import type { Spec } from '../src/spec/types.ts';

const HELPERS = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'helpers');
const NODE = process.execPath;
const SERVER_IP = '10.20.30.2';
const RELAY_IP = '10.20.30.3';
const SUBNET = '10.20.0.0/16';
const POOL = { start: '10.20.64.0', end: '10.20.127.255' }; // 16,384 addresses

export type DhcpServerName = 'slipway-known' | 'slipway-pool' | 'kea-dhcp4' | 'dnsmasq';

export interface DhcpBenchRow {
  server: DhcpServerName;
  clients: number;
  acked: number;
  /** NAKs seen (each sends its client back to DISCOVER) */
  naks: number;
  /** clients without a lease at the end (gave up after their retries, or the run's deadline) */
  unserved: number;
  seconds: number;
  /** complete DORA exchanges per second */
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export interface DhcpBenchOptions {
  clients?: number;
  /** exchanges in flight (default 64) */
  concurrency?: number;
  servers?: DhcpServerName[];
}

/** The cluster the exported configs are rendered from: the lab example on a /16 with a pool. */
function benchSpec(): Spec {
  const spec = haSpec();
  spec.provisioner.address = SERVER_IP;
  spec.provisioner.dhcp.mode = 'full';
  spec.provisioner.dhcp.subnet = parseCidr(SUBNET)!;
  spec.provisioner.dhcp.pool = POOL;
  spec.provisioner.dhcp.interface = 'br0';
  return spec;
}

interface Running {
  stop(): Promise<void>;
  log(): string;
}

function spawnLogged(ns: Netns, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Running {
  const child = ns.spawn(cmd, args, env ? { env } : {});
  let log = '';
  // keep only the tail: a chatty daemon must not grow the benchmark's memory
  const keep = (d: Buffer) => (log = (log + d.toString()).slice(-20_000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { stop: () => ns.kill(child), log: () => log };
}

function startServer(name: 'kea-dhcp4' | 'dnsmasq', lab: DhcpLab, dir: string): Running {
  const spec = benchSpec();
  if (name === 'kea-dhcp4') {
    const cfg = keaConfig(spec) as { Dhcp4: Record<string, unknown> };
    cfg.Dhcp4['lease-database'] = { type: 'memfile', persist: true, name: join(dir, 'kea-leases4.csv'), 'lfc-interval': 0 };
    cfg.Dhcp4.loggers = [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'WARN' }];
    const file = join(dir, 'kea-dhcp4.json');
    writeFileSync(file, JSON.stringify(cfg));
    return spawnLogged(lab.srv, 'kea-dhcp4', ['-c', file], { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir });
  }
  const tftp = join(dir, 'tftp');
  mkdirSync(tftp, { recursive: true });
  const conf = dnsmasqConf(spec)
    .replace(/^tftp-root=.*$/m, `tftp-root=${tftp}`)
    .replace(/^log-dhcp$/m, '# log-dhcp: off for the benchmark')
    // dnsmasq's default lease limit is 1,000. No ICMP check before offering: neither Kea
    // nor Slipway does one, and with it dnsmasq is slower still (measured: ~3x).
    .concat('dhcp-lease-max=100000\nno-ping\n');
  const file = join(dir, 'dnsmasq.conf');
  writeFileSync(file, conf);
  return spawnLogged(lab.srv, 'dnsmasq', ['-k', '-C', file, '--log-facility=-', `--dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`, `--pid-file=${join(dir, 'dnsmasq.pid')}`, '--user=root']);
}

async function load(gen: Netns, req: LoadRequest, timeoutMs: number): Promise<LoadResult> {
  const r = await gen.exec(NODE, [join(HELPERS, 'dhcp-load.ts'), '-'], { timeoutMs, input: JSON.stringify(req) });
  if (r.code !== 0) throw new Error(`load generator failed: ${r.out.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as LoadResult;
}

/** The N MACs and the cluster file serve runs: N machines, or 3 and the pool for unknown MACs. */
function productCluster(name: 'slipway-known' | 'slipway-pool', clients: number): { yaml: string; macs: string[]; warm?: string } {
  if (name === 'slipway-known') {
    // one machine more than measured: the warm-up's. Their addresses from 10.20.128.0 up,
    // clear of the provisioner's 10.20.30.0/24 and of the pool (at most 32,767 clients).
    if (clients > 32_767) throw new Error('at most 32,767 known machines fit 10.20.128.0-10.20.255.255');
    const yaml = bigClusterFile(clients + 1).replace(/ip: 10\.20\.(\d+)\.(\d+)\//g, (_, a: string, b: string) => {
      const host = 32_768 + (Number(a) * 256 + Number(b) - 256);
      return `ip: 10.20.${host >> 8}.${host & 255}/`;
    });
    const macs = [...yaml.matchAll(/mac: "([0-9a-f:]+)"/g)].map((m) => m[1]!);
    return { yaml, macs: macs.slice(1), warm: macs[0] };
  }
  const yaml = bigClusterFile(3).replace('dhcp: {mode: full, subnet: 10.20.0.0/16,', `dhcp: {mode: full, subnet: 10.20.0.0/16, pool: {start: ${POOL.start}, end: ${POOL.end}},`);
  if (yaml === bigClusterFile(3)) throw new Error('could not add the pool to the cluster file');
  return { yaml, macs: generatedMacs(clients, 1, true) };
}

async function measure(name: DhcpServerName, gen: Netns, macs: string[], concurrency: number, log: () => string, warmMac?: string): Promise<DhcpBenchRow> {
  // Ready when one client completes (each server takes its own time to start).
  const warm = await load(gen, { server: SERVER_IP, relay: RELAY_IP, ...(warmMac ? { macs: [warmMac] } : { count: 1 }), timeoutMs: 250, attempts: 60, deadlineMs: 20_000 }, 30_000);
  if (warm.acks.length !== 1) throw new Error(`${name} never answered:\n${log()}`);
  // A PXE client told NAK starts over, and firmware keeps trying: allow many restarts.
  const r = await load(gen, { server: SERVER_IP, relay: RELAY_IP, macs, concurrency, timeoutMs: 1000, attempts: 3, restarts: 100, deadlineMs: 300_000 }, 330_000);
  const seconds = r.elapsedMs / 1000;
  return {
    server: name,
    clients: macs.length,
    acked: r.acks.length,
    naks: r.nakCount,
    unserved: macs.length - r.acks.length,
    seconds,
    perSecond: r.acks.length / seconds,
    p50Ms: percentile(r.latenciesMs, 50),
    p99Ms: percentile(r.latenciesMs, 99),
  };
}

/** The product: `slipway serve` from the CLI in the lab namespace, default log level. */
async function benchProduct(name: 'slipway-known' | 'slipway-pool', clients: number, concurrency: number): Promise<DhcpBenchRow> {
  const { yaml, macs, warm } = productCluster(name, clients);
  const lab = Lab.create(yaml);
  const prof = process.env.SERVE_CPU_PROF;
  const saved = process.env.NODE_OPTIONS;
  try {
    if (prof) process.env.NODE_OPTIONS = `${saved ?? ''} --cpu-prof --cpu-prof-dir=${prof}`;
    try {
      await lab.start(name === 'slipway-pool' ? ['--unknown', 'local'] : []);
    } finally {
      if (prof) saved === undefined ? delete process.env.NODE_OPTIONS : (process.env.NODE_OPTIONS = saved);
    }
    const gen = lab.host('02:00:00:00:00:fe', RELAY_IP);
    const row = await measure(name, gen, macs, concurrency, () => lab.log.slice(-3000), warm);
    if (lab.serve!.exitCode !== null) throw new Error(`serve died during the run:\n${lab.log.slice(-3000)}`);
    await lab.stop();
    return row;
  } finally {
    await lab.close();
  }
}

async function benchOne(name: DhcpServerName, clients: number, concurrency: number): Promise<DhcpBenchRow> {
  if (name === 'slipway-known' || name === 'slipway-pool') return benchProduct(name, clients, concurrency);
  const dir = mkdtempSync(join(tmpdir(), `slipway-dhcp-bench-${name}-`));
  const lab = DhcpLab.create(`${SERVER_IP}/16`);
  try {
    const gen = lab.host('gen', { address: `${RELAY_IP}/16` });
    const server = startServer(name, lab, dir);
    const row = await measure(name, gen, generatedMacs(clients, 1, true), concurrency, server.log);
    await server.stop();
    return row;
  } finally {
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchDhcp(opts: DhcpBenchOptions = {}): Promise<DhcpBenchRow[]> {
  const rows: DhcpBenchRow[] = [];
  for (const name of opts.servers ?? (['slipway-known', 'slipway-pool', 'kea-dhcp4', 'dnsmasq'] as DhcpServerName[])) rows.push(await benchOne(name, opts.clients ?? 10_000, opts.concurrency ?? 64));
  return rows;
}

export function formatDhcpBench(rows: DhcpBenchRow[]): string {
  const out = [
    `DHCP: full DORA for ${rows[0]?.clients ?? 0} distinct MACs through a relay; same segment, same exported policy`,
    '| server        | DORA/s | p50 ms | p99 ms | acked |  NAKs | unserved | seconds |',
    '|---------------|-------:|-------:|-------:|------:|------:|---------:|--------:|',
  ];
  for (const r of rows)
    out.push(
      `| ${r.server.padEnd(13)} | ${r.perSecond.toFixed(0).padStart(6)} | ${r.p50Ms.toFixed(2).padStart(6)} | ${r.p99Ms.toFixed(2).padStart(6)} | ${String(r.acked).padStart(5)} | ${String(r.naks).padStart(5)} | ${String(r.unserved).padStart(8)} | ${r.seconds.toFixed(1).padStart(7)} |`,
    );
  for (const us of rows.filter((r) => r.server.startsWith('slipway')))
    for (const r of rows.filter((x) => !x.server.startsWith('slipway')))
      out.push(`${us.server} vs ${r.server}: ${(us.perSecond / r.perSecond).toFixed(2)}x the exchanges per second, ${(us.p99Ms / r.p99Ms).toFixed(2)}x the p99 latency`);
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await benchDhcp({
    clients: Number(process.env.CLIENTS ?? 10_000),
    concurrency: Number(process.env.CONCURRENCY ?? 64),
    ...(process.env.SERVERS ? { servers: process.env.SERVERS.split(',') as DhcpServerName[] } : {}),
  });
  console.log(formatDhcpBench(rows));
}
