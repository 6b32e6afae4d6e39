// TFTP through the product as a user runs it: `slipway serve -f cluster.yaml --assets DIR`
// from the CLI in a lab namespace (default log level, lifecycle and event store on)
// against tftpd-hpa with Debian's production flags (`--secure --user tftp`, i.e. chroot to
// the root and drop privileges), both serving the same root: serve's own staged TFTP root
// (the Debian loaders undionly.kpxe and ipxe.efi, and a 30 MiB os/initrd.img from the
// assets directory, the file PXELINUX loads over TFTP).
//
// Clients: bench/tftp-load.c (compiled here with cc), one process in its own namespace on
// the lab bridge, running N transfers at once (1, 16, 64) as N firmware clients would:
// RRQ with blksize (1468 as iPXE asks, or none: RFC 1350's 512) and tsize, lock-step
// ACKs; every byte compared with the file. Rows with windowsize (RFC 7440) stand beside:
// tftpd-hpa does not grant it, so for it those rows are lock-step again.
//
// Both servers run at once on the lab bridge (serve on 10.20.30.2, tftpd-hpa on
// 10.20.30.4), idle while the other is measured; each scenario runs on one and then the
// other straight after, several times, so the host's load (shared with other work)
// drifts less between the two halves of a ratio.
//
// Run (as root: it creates namespaces): node bench/tftp.bench.ts
//   TFTP_SCENARIOS=lock-1468,lock-512,window-16  which modes (default all three)
//   TFTP_FILES=undionly.kpxe,ipxe.efi,os/initrd.img   TFTP_CONCURRENCY=1,16,64
//   TFTP_BIG_MIB=30   TFTP_ROUNDS=4 (transfers per client slot for the small files)
//   TFTP_REPEATS=3: runs per scenario and server, alternating which server goes first; the
//   median counts (the host is shared: single runs move by tens of percent)
//   SERVE_CPU_PROF=/tmp/prof: serve runs with --cpu-prof, its profile written there on exit.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from '../test/helpers/serve.ts';
import { percentile } from '../test/helpers/dhcp-load.ts';
import type { Netns } from '../test/helpers/netns.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const SERVE_IP = '10.20.30.2';
const HPA_IP = '10.20.30.4';
const CLIENT_IP = '10.20.30.50';

export type TftpServerName = 'slipway serve' | 'tftpd-hpa';
export interface TftpScenario {
  file: string;
  /** 0: no blksize option (512-byte blocks) */
  blksize: number;
  /** 0: no windowsize option (lock-step) */
  windowsize: number;
  concurrency: number;
  transfers: number;
}
export interface TftpBenchRow extends TftpScenario {
  server: TftpServerName;
  size: number;
  done: number;
  failed: string[];
  seconds: number;
  /** file bytes of completed transfers per second, all clients together */
  mbPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** runs this row is the median of */
  runs?: number;
}

export interface TftpBenchOptions {
  modes?: string[];
  files?: string[];
  concurrency?: number[];
  bigMiB?: number;
  rounds?: number;
  /** runs of each scenario on each server; the median counts (default 3) */
  repeats?: number;
}

const MODES: Record<string, { blksize: number; windowsize: number }> = {
  'lock-1468': { blksize: 1468, windowsize: 0 },
  'lock-512': { blksize: 0, windowsize: 0 },
  'window-16': { blksize: 1468, windowsize: 16 },
};

function compileClient(dir: string): string {
  const out = join(dir, 'tftp-load');
  const r = spawnSync('cc', ['-O2', '-Wall', '-o', out, join(HERE, 'tftp-load.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot compile bench/tftp-load.c (needs cc, Debian gcc): ${r.stderr}${r.error?.message ?? ''}`);
  return out;
}

async function run(client: Netns, bin: string, ip: string, s: TftpScenario, local: string, size: number, server: TftpServerName): Promise<TftpBenchRow> {
  const deadlineS = 300;
  const args = [ip, '69', s.file, local, String(s.blksize), String(s.windowsize), String(s.concurrency), String(s.transfers), '1000', String(deadlineS)];
  const r = await client.exec(bin, args, { timeoutMs: (deadlineS + 30) * 1000 });
  if (r.code !== 0) throw new Error(`tftp-load failed (exit ${r.code}): ${r.out.slice(-2000)}`);
  const times: number[] = [];
  const failed: string[] = [];
  let wall = NaN;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('T ')) times.push(Number(line.split(' ')[1]));
    else if (line.startsWith('F ')) failed.push(line.slice(2));
    else if (line.startsWith('W ')) wall = Number(line.slice(2));
  }
  const seconds = wall / 1000;
  return { ...s, server, size, done: times.length, failed, seconds, mbPerSecond: (times.length * size) / 1e6 / seconds, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99) };
}

export async function benchTftp(o: TftpBenchOptions = {}): Promise<TftpBenchRow[]> {
  const modes = o.modes ?? Object.keys(MODES);
  const files = o.files ?? ['undionly.kpxe', 'ipxe.efi', 'os/initrd.img'];
  const concurrency = o.concurrency ?? [1, 16, 64];
  const rounds = o.rounds ?? 4;
  const repeats = o.repeats ?? 3;
  const lab = Lab.create();
  const prof = process.env.SERVE_CPU_PROF;
  const saved = process.env.NODE_OPTIONS;
  try {
    const bin = compileClient(lab.dir);
    const assets = join(lab.dir, 'assets');
    mkdirSync(join(assets, 'os'), { recursive: true, mode: 0o755 });
    writeFileSync(join(assets, 'os', 'initrd.img'), randomBytes((o.bigMiB ?? 30) * 1024 * 1024), { mode: 0o644 });
    if (prof) process.env.NODE_OPTIONS = `${saved ?? ''} --cpu-prof --cpu-prof-dir=${prof}`;
    try {
      await lab.start(['--assets', assets]);
    } finally {
      if (prof) saved === undefined ? delete process.env.NODE_OPTIONS : (process.env.NODE_OPTIONS = saved);
    }
    const root = join(lab.state, 'tftp');
    // tftpd-hpa as Debian's tftpd-hpa.service starts it (TFTP_OPTIONS="--secure",
    // TFTP_USERNAME="tftp"), in the foreground (-L) so it stays this bench's child.
    lab.hub.addAddress('br0', `${HPA_IP}/24`);
    const hpa = lab.hub.spawn('in.tftpd', ['-L', '--user', 'tftp', '--address', `${HPA_IP}:69`, '--secure', root]);
    let hpaLog = '';
    hpa.stderr?.on('data', (d: Buffer) => (hpaLog = (hpaLog + d.toString()).slice(-2000)));
    const client = lab.host('02:00:00:00:00:fe', CLIENT_IP);
    const rows: TftpBenchRow[] = [];
    for (const mode of modes) {
      const m = MODES[mode];
      if (!m) throw new Error(`unknown mode ${mode} (${Object.keys(MODES).join(', ')})`);
      for (const file of files) {
        const local = join(root, file);
        const size = statSync(local).size;
        for (const n of concurrency) {
          // the 30 MiB file once per client, small files `rounds` times each
          const transfers = size > 8 << 20 ? Math.max(n, 3) : Math.max(n * rounds, 20);
          const s: TftpScenario = { file, ...m, concurrency: n, transfers };
          // Each server `repeats` times, alternating which goes first; the median run counts.
          const runs: Record<TftpServerName, TftpBenchRow[]> = { 'slipway serve': [], 'tftpd-hpa': [] };
          for (let i = 0; i < repeats; i++) {
            const order = [['slipway serve', SERVE_IP], ['tftpd-hpa', HPA_IP]] as const;
            for (const [server, ip] of i % 2 ? [...order].reverse() : order) {
              if (server === 'tftpd-hpa' && hpa.exitCode !== null) throw new Error(`tftpd-hpa exited ${hpa.exitCode}: ${hpaLog}`);
              const row = await run(client, bin, ip, s, local, size, server);
              runs[server].push(row);
              console.error(formatRow(row));
            }
          }
          for (const server of ['slipway serve', 'tftpd-hpa'] as const) rows.push(median(runs[server]));
        }
      }
    }
    if (lab.serve!.exitCode !== null) throw new Error(`serve died during the run:\n${lab.log.slice(-3000)}`);
    await lab.stop();
    return rows;
  } finally {
    await lab.close();
  }
}

/** The run with the median throughput, with the median p50 and p99 of the runs (failures of every run kept). */
function median(runs: TftpBenchRow[]): TftpBenchRow {
  const mid = <T>(xs: T[], by: (x: T) => number) => [...xs].sort((a, b) => by(a) - by(b))[Math.floor(xs.length / 2)]!;
  const m = mid(runs, (r) => r.mbPerSecond);
  return { ...m, p50Ms: mid(runs, (r) => r.p50Ms).p50Ms, p99Ms: mid(runs, (r) => r.p99Ms).p99Ms, failed: runs.flatMap((r) => r.failed), runs: runs.length };
}

const modeLabel = (r: TftpScenario) => `${r.blksize ? `blksize ${r.blksize}` : 'blksize 512 (none asked)'}${r.windowsize ? `, windowsize ${r.windowsize}` : ', lock-step'}`;

function formatRow(r: TftpBenchRow): string {
  const fail = r.failed.length ? ` | ${r.failed.length} failed: ${[...new Set(r.failed)].slice(0, 3).join('; ')}` : '';
  return `| ${r.server.padEnd(13)} | ${r.file.padEnd(13)} | ${modeLabel(r).padEnd(36)} | ${String(r.concurrency).padStart(3)} | ${String(r.done).padStart(4)}/${String(r.transfers).padEnd(4)} | ${r.mbPerSecond.toFixed(1).padStart(7)} | ${r.p50Ms.toFixed(1).padStart(8)} | ${r.p99Ms.toFixed(1).padStart(8)} |${fail}`;
}

export function formatTftpBench(rows: TftpBenchRow[]): string {
  const out = [
    'TFTP: slipway serve (product, from the CLI) vs tftpd-hpa (--secure --user tftp), same root, same run',
    '| server        | file          | mode                                 |   N | done      |    MB/s |  p50 ms  |  p99 ms  |',
    '|---------------|---------------|--------------------------------------|----:|-----------|--------:|---------:|---------:|',
    ...rows.map(formatRow),
    '',
    '| file          | mode                                 |   N | throughput × tftpd-hpa | p50 × hpa | p99 × hpa |',
    '|---------------|--------------------------------------|----:|-----------------------:|----------:|----------:|',
  ];
  for (const us of rows.filter((r) => r.server === 'slipway serve')) {
    const peer = rows.find((r) => r.server === 'tftpd-hpa' && r.file === us.file && r.blksize === us.blksize && r.windowsize === us.windowsize && r.concurrency === us.concurrency);
    if (!peer) continue;
    out.push(`| ${us.file.padEnd(13)} | ${modeLabel(us).padEnd(36)} | ${String(us.concurrency).padStart(3)} | ${(us.mbPerSecond / peer.mbPerSecond).toFixed(2).padStart(22)} | ${(us.p50Ms / peer.p50Ms).toFixed(2).padStart(9)} | ${(us.p99Ms / peer.p99Ms).toFixed(2).padStart(9)} |`);
  }
  out.push('(throughput: higher is better for serve; p50/p99 × hpa: below 1 is better for serve)');
  return out.join('\n');
}

if (import.meta.main) {
  const list = (name: string) => process.env[name]?.split(',').filter(Boolean);
  const rows = await benchTftp({
    ...(list('TFTP_SCENARIOS') ? { modes: list('TFTP_SCENARIOS') } : {}),
    ...(list('TFTP_FILES') ? { files: list('TFTP_FILES') } : {}),
    ...(list('TFTP_CONCURRENCY') ? { concurrency: list('TFTP_CONCURRENCY')!.map(Number) } : {}),
    ...(process.env.TFTP_BIG_MIB ? { bigMiB: Number(process.env.TFTP_BIG_MIB) } : {}),
    ...(process.env.TFTP_ROUNDS ? { rounds: Number(process.env.TFTP_ROUNDS) } : {}),
    ...(process.env.TFTP_REPEATS ? { repeats: Number(process.env.TFTP_REPEATS) } : {}),
  });
  console.log(formatTftpBench(rows));
}
