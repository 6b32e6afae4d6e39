// TFTP throughput: Slipway's server against tftpd-hpa and dnsmasq, with one client for
// all three (atftp, the client here that can ask for windowsize).
//
//   node bench/tftp.bench.ts          prints the table
//   import { benchTftp } from ...     the numbers, for `npm run bench`
//
// Scenarios: one 32 MiB transfer and 50 at once, each in lock-step (blksize 1468) and
// with windowsize 16 asked for (RFC 7440). Neither peer grants windowsize, so for them
// the second run is lock-step again; Slipway grants it.
//
// On loopback a round trip costs ~20 µs, so lock-step loses little there and the windowed
// gain is mostly fewer context switches. Over a real LAN, lock-step TFTP to PXE firmware
// runs at 1-5 MB/s, i.e. round trips of 0.3-1.5 ms, and that is where windows pay off.
// The kernel here has no netem to add delay, so the last scenario sends the same client
// through a relay (test/helpers/tftp.ts LossyProxy, no loss) that holds every packet
// ~1 ms each way, with a smaller file (every server pays the same relay).
//
// Everything runs in a throwaway network namespace on its loopback: dnsmasq's TFTP has
// no port option and needs port 69, which a namespace gives us without touching the
// host. The namespace also gets an addressed link, because tftpd-hpa resolves its bind
// address with AI_ADDRCONFIG, which fails where loopback is the only interface. Slipway
// runs as a child process (this file with --serve) so it competes with its client the
// way the peers do. Files live in tmpfs, so the disk is not measured. Each output is
// checked by sha256: a fast wrong transfer does not count.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Netns } from '../test/helpers/netns.ts';

export interface TftpBenchRow {
  scenario: string;
  /** wall seconds per server; undefined when that server is not installed */
  slipway: number;
  tftpdHpa?: number;
  dnsmasq?: number;
}

export interface TftpBenchOptions {
  /** size of the file, MiB (default 32) */
  sizeMiB?: number;
  /** size of the file sent through the delaying relay, MiB (default 2; 0 skips that scenario) */
  lanMiB?: number;
  /** the relay's delay each way, ms (default 1) */
  lanDelayMs?: number;
  /** transfers at once in the concurrent scenarios (default 50) */
  concurrent?: number;
  /** windowsize asked for in the windowed scenarios (default 16) */
  windowsize?: number;
  blksize?: number;
  /** runs of each single-transfer scenario; the median counts (default 3) */
  repeats?: number;
}

const SERVERS = { slipway: 6901, tftpdHpa: 6902, dnsmasq: 69 } as const;
/** each server's delaying relay listens here */
const RELAYS = { slipway: 7901, tftpdHpa: 7902, dnsmasq: 7903 } as const;
type ServerName = keyof typeof SERVERS;
const NAMES: ServerName[] = ['slipway', 'tftpdHpa', 'dnsmasq'];
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

export async function benchTftp(o: TftpBenchOptions = {}): Promise<TftpBenchRow[]> {
  const sizeMiB = o.sizeMiB ?? 32;
  const lanMiB = o.lanMiB ?? 2;
  const lanDelayMs = o.lanDelayMs ?? 1;
  const concurrent = o.concurrent ?? 50;
  const windowsize = o.windowsize ?? 16;
  const blksize = o.blksize ?? 1468;
  const repeats = o.repeats ?? 3;
  if (!has('atftp')) throw new Error('the TFTP bench needs atftp (the client that asks for windowsize)');
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'slipway-tftp-bench-'));
  const ns = Netns.create('slipway-b');
  try {
    const root = join(dir, 'root');
    const out = join(dir, 'out');
    mkdirSync(root);
    mkdirSync(out);
    // Both peers drop privileges (tftpd-hpa to nobody inside its chroot, dnsmasq to nobody).
    for (const d of [dir, root]) chmodSync(d, 0o755);
    const client: Client = { ns, out, blksize, sums: new Map() };
    addFile(client, root, 'big.bin', sizeMiB);
    if (lanMiB > 0) addFile(client, root, 'lan.bin', lanMiB);
    ns.addDummy('eth0');
    ns.addAddress('eth0', '10.254.0.1/24');
    const running = await startServers(ns, root);
    const rows: TftpBenchRow[] = [];
    for (const w of [undefined, windowsize]) {
      const label = w ? `windowsize ${w} asked` : 'lock-step';
      rows.push(await scenario(`1 × ${sizeMiB} MiB, ${label}`, running, (s) => median(repeats, () => fetchAll(client, SERVERS[s], 'big.bin', 1, w))));
      rows.push(await scenario(`${concurrent} × ${sizeMiB} MiB at once, ${label}`, running, (s) => fetchAll(client, SERVERS[s], 'big.bin', concurrent, w)));
    }
    if (lanMiB > 0) {
      await startRelays(ns, running, lanDelayMs);
      for (const w of [undefined, windowsize]) {
        const label = `${w ? `windowsize ${w} asked` : 'lock-step'}, ${lanDelayMs} ms each way`;
        rows.push(await scenario(`1 × ${lanMiB} MiB, ${label}`, running, (s) => fetchAll(client, RELAYS[s], 'lan.bin', 1, w)));
      }
    }
    return rows;
  } finally {
    await ns.close(); // kills the servers and relays it spawned, by pid
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A file of random bytes in the root, world-readable, with its sha256 kept to check copies. */
function addFile(c: Client, root: string, name: string, mib: number): void {
  const data = randomBytes(mib * 1024 * 1024);
  writeFileSync(join(root, name), data, { mode: 0o644 });
  c.sums.set(name, createHash('sha256').update(data).digest('hex'));
}

/** Start every installed server in the namespace; returns the ones that run. */
async function startServers(ns: Netns, root: string): Promise<Set<ServerName>> {
  const running = new Set<ServerName>();
  const self = fileURLToPath(import.meta.url);
  const slipway = ns.spawn(process.execPath, [self, '--serve', root, String(SERVERS.slipway)]);
  await waitForLine(slipway, /^ready/, 'Slipway');
  running.add('slipway');
  if (has('in.tftpd')) {
    // -L: foreground; -4: IPv4 only; -s: chroot to the root, as a boot server runs it.
    const hpa = ns.spawn('in.tftpd', ['-L', '-4', '-s', root, '-a', `127.0.0.1:${SERVERS.tftpdHpa}`]);
    await waitForPort(ns, SERVERS.tftpdHpa, hpa, 'tftpd-hpa');
    running.add('tftpdHpa');
  }
  if (has('dnsmasq')) {
    // --port=0: no DNS; --tftp-max: its default of 50 would be exactly at the limit.
    const args = ['-k', '-C', '/dev/null', '--port=0', '--enable-tftp', `--tftp-root=${root}`, '--tftp-max=500', '--pid-file=', '--log-facility=-', '--quiet-tftp'];
    const dnsmasq = ns.spawn('dnsmasq', args);
    await waitForPort(ns, SERVERS.dnsmasq, dnsmasq, 'dnsmasq');
    running.add('dnsmasq');
  }
  return running;
}

/** One relay per running server, all in one child process in the namespace. */
async function startRelays(ns: Netns, running: Set<ServerName>, delayMs: number): Promise<void> {
  const pairs = NAMES.filter((s) => running.has(s)).map((s) => `${RELAYS[s]}:${SERVERS[s]}`);
  const relay = ns.spawn(process.execPath, [fileURLToPath(import.meta.url), '--relay', pairs.join(','), String(delayMs)]);
  await waitForLine(relay, /^ready/, 'the relay');
}

async function scenario(name: string, running: Set<ServerName>, run: (s: ServerName) => Promise<number>): Promise<TftpBenchRow> {
  const row: TftpBenchRow = { scenario: name, slipway: NaN };
  for (const s of NAMES) if (running.has(s)) row[s] = await run(s);
  return row;
}

interface Client {
  ns: Netns;
  out: string;
  blksize: number;
  /** sha256 of each file in the root */
  sums: Map<string, string>;
}

/** `n` atftp fetches at once; wall seconds until the last one ends. Every copy must be exact. */
async function fetchAll(c: Client, port: number, remote: string, n: number, windowsize: number | undefined): Promise<number> {
  const locals = Array.from({ length: n }, (_, i) => join(c.out, `copy-${port}-${i}`));
  const opts = ['--option', `blksize ${c.blksize}`, ...(windowsize ? ['--option', `windowsize ${windowsize}`] : [])];
  const t0 = performance.now();
  const results = await Promise.all(locals.map((l) => c.ns.exec('atftp', [...opts, '-g', '-r', remote, '-l', l, '127.0.0.1', String(port)], { timeoutMs: 300_000 })));
  const seconds = (performance.now() - t0) / 1000;
  results.forEach((r, i) => {
    const got = existsSync(locals[i]!) ? createHash('sha256').update(readFileSync(locals[i]!)).digest('hex') : 'missing';
    if (r.code !== 0 || got !== c.sums.get(remote)) throw new Error(`port ${port}: copy ${i} of ${remote} is wrong (exit ${r.code}): ${r.out.slice(-500)}`);
    rmSync(locals[i]!);
  });
  return seconds;
}

async function median(n: number, run: () => Promise<number>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await run());
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function waitForLine(child: ChildProcess, re: RegExp, what: string, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${text}`)), timeoutMs);
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (text += d));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      text += d;
      if (re.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`${what} exited ${code}: ${text}`)));
  });
}

async function waitForPort(ns: Netns, port: number, child: ChildProcess, what: string): Promise<void> {
  let log = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-2000)));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-2000)));
  await ns.waitFor(
    `${what} on UDP ${port}`,
    async () => {
      if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}: ${log}`);
      return (await ns.exec('ss', ['-Hulnp', `sport = :${port}`], { timeoutMs: 5_000 })).stdout.trim() !== '';
    },
    10_000,
    100,
  );
}

export function formatTftpBench(rows: TftpBenchRow[]): string {
  const f = (s: number | undefined) => (s === undefined || Number.isNaN(s) ? 'n/a' : `${s.toFixed(2)} s`);
  const ratio = (peer: number | undefined, own: number) => (peer === undefined || Number.isNaN(own) ? 'n/a' : `${(peer / own).toFixed(1)}×`);
  const w = Math.max(34, ...rows.map((r) => r.scenario.length));
  const lines = [
    `| ${'TFTP, client atftp, blksize 1468'.padEnd(w)} | Slipway  | tftpd-hpa | dnsmasq  | hpa/Slipway | dnsmasq/Slipway |`,
    `|${'-'.repeat(w + 2)}|----------|-----------|----------|-------------|-----------------|`,
  ];
  for (const r of rows) {
    lines.push(`| ${r.scenario.padEnd(w)} | ${f(r.slipway).padStart(8)} | ${f(r.tftpdHpa).padStart(9)} | ${f(r.dnsmasq).padStart(8)} | ${ratio(r.tftpdHpa, r.slipway).padStart(11)} | ${ratio(r.dnsmasq, r.slipway).padStart(15)} |`);
  }
  return lines.join('\n');
}

/** The child that runs Slipway's server: quiet logs, "ready" once bound, closes on SIGTERM. */
async function serve(root: string, port: number): Promise<void> {
  const { startTftpServer } = await import('../src/serve/tftp/server.ts');
  const { newLogger } = await import('../src/serve/log.ts');
  const { newRegistry } = await import('../src/serve/metrics.ts');
  const server = await startTftpServer({ root, address: '127.0.0.1', port, log: newLogger({ level: 'warn', pretty: false }), registry: newRegistry() });
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
}

/** The child that runs the delaying relays: "listen:target,..." pairs, every packet held delayMs each way. */
async function relay(pairs: string, delayMs: number): Promise<void> {
  const { LossyProxy } = await import('../test/helpers/tftp.ts');
  const proxies = await Promise.all(
    pairs.split(',').map((p) => {
      const [listen, target] = p.split(':').map(Number);
      return LossyProxy.start(target!, { port: listen, delayMs });
    }),
  );
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => void Promise.all(proxies.map((x) => x.close())).then(() => process.exit(0)));
}

if (import.meta.main) {
  if (process.argv[2] === '--serve') await serve(process.argv[3]!, Number(process.argv[4]));
  else if (process.argv[2] === '--relay') await relay(process.argv[3]!, Number(process.argv[4]));
  else {
    const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
    const rows = await benchTftp({
      sizeMiB: env('TFTP_BENCH_MIB', 32),
      lanMiB: env('TFTP_BENCH_LAN_MIB', 2),
      concurrent: env('TFTP_BENCH_CONCURRENT', 50),
      repeats: env('TFTP_BENCH_REPEATS', 3),
    });
    console.log(formatTftpBench(rows));
  }
}
