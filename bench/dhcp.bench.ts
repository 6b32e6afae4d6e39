// DHCP throughput and latency: Slipway's server against kea-dhcp4 (memfile) and dnsmasq,
// each running the configuration Slipway exports for the same cluster (so all three
// apply the same boot policy), on the same veth/bridge segment in network namespaces.
// A load generator plays a relay agent (test/helpers/dhcp-load.ts): it runs the full
// DORA exchange for N distinct MACs (default 10,000, all from the pool) with a bounded
// number in flight, and reports exchanges per second and p50/p99 latency from the first
// DISCOVER to the ACK.
//
// Every server keeps its leases on disk the way it would in production: Slipway in
// SQLite (WAL, synchronous=FULL, one commit per batch of ACKs), Kea in its memfile CSV,
// dnsmasq in its lease file. Logging is at warning level for all three (per-lease
// logging is a choice of the operator, not of the server).
//
// Run directly (as root: it creates namespaces): node bench/dhcp.bench.ts
//   CLIENTS=10000 CONCURRENCY=64 node bench/dhcp.bench.ts
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DhcpLab } from '../test/helpers/dhcp-lab.ts';
import type { Netns } from '../test/helpers/netns.ts';
import { generatedMacs, percentile, type LoadRequest, type LoadResult } from '../test/helpers/dhcp-load.ts';
import type { ServeRequest } from '../test/helpers/dhcp-serve.ts';
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

export type DhcpServerName = 'slipway' | 'kea-dhcp4' | 'dnsmasq';

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

function startServer(name: DhcpServerName, lab: DhcpLab, dir: string): Running {
  const spec = benchSpec();
  if (name === 'slipway') {
    const req: ServeRequest = { mode: 'full', subnet: SUBNET, pool: POOL, stateDir: join(dir, 'state'), logLevel: 'warn' };
    return spawnLogged(lab.srv, NODE, [join(HELPERS, 'dhcp-serve.ts'), JSON.stringify({ serve: req })]);
  }
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

async function benchOne(name: DhcpServerName, clients: number, concurrency: number): Promise<DhcpBenchRow> {
  const dir = mkdtempSync(join(tmpdir(), `slipway-dhcp-bench-${name}-`));
  const lab = DhcpLab.create(`${SERVER_IP}/16`);
  try {
    const gen = lab.host('gen', { address: `${RELAY_IP}/16` });
    const server = startServer(name, lab, dir);
    // Ready when one client completes (each server takes its own time to start).
    const warm = await load(gen, { server: SERVER_IP, relay: RELAY_IP, count: 1, timeoutMs: 250, attempts: 60, deadlineMs: 20_000 }, 30_000);
    if (warm.acks.length !== 1) throw new Error(`${name} never answered:\n${server.log()}`);
    const macs = generatedMacs(clients, 1, true);
    // A PXE client told NAK starts over, and firmware keeps trying: allow many restarts.
    const r = await load(gen, { server: SERVER_IP, relay: RELAY_IP, macs, concurrency, timeoutMs: 1000, attempts: 3, restarts: 100, deadlineMs: 300_000 }, 330_000);
    await server.stop();
    const seconds = r.elapsedMs / 1000;
    return {
      server: name,
      clients,
      acked: r.acks.length,
      naks: r.nakCount,
      unserved: clients - r.acks.length,
      seconds,
      perSecond: r.acks.length / seconds,
      p50Ms: percentile(r.latenciesMs, 50),
      p99Ms: percentile(r.latenciesMs, 99),
    };
  } finally {
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchDhcp(opts: DhcpBenchOptions = {}): Promise<DhcpBenchRow[]> {
  const rows: DhcpBenchRow[] = [];
  for (const name of opts.servers ?? (['slipway', 'kea-dhcp4', 'dnsmasq'] as DhcpServerName[])) rows.push(await benchOne(name, opts.clients ?? 10_000, opts.concurrency ?? 64));
  return rows;
}

export function formatDhcpBench(rows: DhcpBenchRow[]): string {
  const out = [
    `DHCP: full DORA for ${rows[0]?.clients ?? 0} distinct MACs through a relay; same segment, same exported policy`,
    '| server    | DORA/s | p50 ms | p99 ms | acked |  NAKs | unserved | seconds |',
    '|-----------|-------:|-------:|-------:|------:|------:|---------:|--------:|',
  ];
  for (const r of rows)
    out.push(
      `| ${r.server.padEnd(9)} | ${r.perSecond.toFixed(0).padStart(6)} | ${r.p50Ms.toFixed(2).padStart(6)} | ${r.p99Ms.toFixed(2).padStart(6)} | ${String(r.acked).padStart(5)} | ${String(r.naks).padStart(5)} | ${String(r.unserved).padStart(8)} | ${r.seconds.toFixed(1).padStart(7)} |`,
    );
  const us = rows.find((r) => r.server === 'slipway');
  if (us)
    for (const r of rows.filter((x) => x !== us))
      out.push(`slipway vs ${r.server}: ${(us.perSecond / r.perSecond).toFixed(2)}x the exchanges per second, ${(us.p99Ms / r.p99Ms).toFixed(2)}x the p99 latency`);
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
