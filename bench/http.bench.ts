// HTTP assets through the product as a user runs it: `slipway serve -f cluster.yaml
// --assets DIR` from the CLI in a lab namespace (default log level; serve pins the sha256
// of the os/ files it serves) against nginx in Debian's packaged configuration
// (/etc/nginx/nginx.conf: worker_processes auto, sendfile on, tcp_nopush on, access log
// on; `apt-get install nginx-light`), both serving the same assets directory: a
// kernel-size os/vmlinuz (8 MiB of random bytes) and an image-size os/disk.img.zst
// (300 MiB, sparse: no disk space, read from the page cache).
//
// Clients: 100 curl processes at once (one download each, to /dev/null, as 100 machines
// fetching their kernel) in their own namespace on the lab bridge; per download curl's
// time_total, status and byte count (every download must be 200 and whole), and one more
// download of each file through sha256sum (a fast wrong answer does not count). nginx runs
// on 10.20.30.4 beside serve on 10.20.30.2, idle while the other is measured; each
// scenario alternates which server goes first.
//
// Run (as root: it creates namespaces): node bench/http.bench.ts
//   HTTP_CLIENTS=100  HTTP_IMAGE_MIB=300  HTTP_KERNEL_MIB=8
//   HTTP_REPEATS=3 (the kernel; the image runs HTTP_IMAGE_REPEATS=1 time per server)
//   SERVE_CPU_PROF=/tmp/prof: serve runs with --cpu-prof, its profile written there on exit.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, ftruncateSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../test/helpers/serve.ts';
import { percentile } from '../test/helpers/dhcp-load.ts';
import type { Netns } from '../test/helpers/netns.ts';

const SERVE_IP = '10.20.30.2';
const NGINX_IP = '10.20.30.4';
const CLIENT_IP = '10.20.30.50';
const PORT = 8080; // examples/lab.yaml's httpPort; nginx listens on the same port at its own address

export type HttpServerName = 'slipway serve' | 'nginx';
export interface HttpBenchRow {
  server: HttpServerName;
  file: string;
  size: number;
  clients: number;
  ok: number;
  seconds: number;
  /** bytes of all downloads per second */
  mbPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  runs: number;
}

export interface HttpBenchOptions {
  clients?: number;
  kernelMiB?: number;
  imageMiB?: number;
  repeats?: number;
  imageRepeats?: number;
}

/** Debian's /etc/nginx/nginx.conf with the paths moved into the bench's directory and one server block for the assets. */
function nginxConf(dir: string, assets: string): string {
  return `user www-data;
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
daemon off;
events {
	worker_connections 768;
}
http {
	sendfile on;
	tcp_nopush on;
	types_hash_max_size 2048;
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log ${dir}/access.log;
	gzip on;
	client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
	server {
		listen ${NGINX_IP}:${PORT};
		location /assets/ { alias ${assets}/; }
	}
}
`;
}

async function download(client: Netns, ip: string, file: string, size: number, clients: number, server: HttpServerName): Promise<Omit<HttpBenchRow, 'runs'>> {
  const url = `http://${ip}:${PORT}/assets/${file}`;
  // every curl in the background, then wait: wall time from the first start to the last end
  const script = `start=$(date +%s%N); for i in $(seq ${clients}); do curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}\\n' --max-time 600 ${url} & done; wait; echo "W $(( ($(date +%s%N) - start) / 1000 ))"`;
  const r = await client.exec('sh', ['-c', script], { timeoutMs: 700_000 });
  const times: number[] = [];
  let ok = 0;
  let wallUs = NaN;
  for (const line of r.stdout.trim().split('\n')) {
    if (line.startsWith('W ')) wallUs = Number(line.slice(2));
    const [code, bytes, t] = line.split(' ');
    if (code === '200' && Number(bytes) === size) {
      ok++;
      times.push(Number(t) * 1000);
    }
  }
  const seconds = wallUs / 1e6;
  return { server, file, size, clients, ok, seconds, mbPerSecond: (ok * size) / 1e6 / seconds, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99) };
}

async function checkSum(client: Netns, ip: string, file: string, want: string): Promise<void> {
  const r = await client.exec('sh', ['-c', `curl -sSf http://${ip}:${PORT}/assets/${file} | sha256sum`], { timeoutMs: 120_000 });
  if (!r.stdout.startsWith(want)) throw new Error(`${ip}: /assets/${file} has the wrong content: ${r.out.slice(-300)}`);
}

export async function benchHttp(o: HttpBenchOptions = {}): Promise<HttpBenchRow[]> {
  const clients = o.clients ?? 100;
  const lab = Lab.create();
  const prof = process.env.SERVE_CPU_PROF;
  const saved = process.env.NODE_OPTIONS;
  try {
    // nginx's workers run as www-data (Debian's default): it must reach the assets
    chmodSync(lab.dir, 0o711);
    const assets = join(lab.dir, 'assets');
    mkdirSync(join(assets, 'os'), { recursive: true, mode: 0o755 });
    chmodSync(assets, 0o755);
    const kernel = randomBytes((o.kernelMiB ?? 8) * 1024 * 1024);
    writeFileSync(join(assets, 'os/vmlinuz'), kernel, { mode: 0o644 });
    const fd = openSync(join(assets, 'os/disk.img.zst'), 'w', 0o644);
    ftruncateSync(fd, (o.imageMiB ?? 300) * 1024 * 1024); // sparse
    closeSync(fd);
    const files = [
      { file: 'os/vmlinuz', size: kernel.length, sha: createHash('sha256').update(kernel).digest('hex'), repeats: o.repeats ?? 3 },
      { file: 'os/disk.img.zst', size: (o.imageMiB ?? 300) * 1024 * 1024, sha: createHash('sha256').update(readFileSync(join(assets, 'os/disk.img.zst'))).digest('hex'), repeats: o.imageRepeats ?? 1 },
    ];
    if (prof) process.env.NODE_OPTIONS = `${saved ?? ''} --cpu-prof --cpu-prof-dir=${prof}`;
    try {
      await lab.start(['--assets', assets]);
    } finally {
      if (prof) saved === undefined ? delete process.env.NODE_OPTIONS : (process.env.NODE_OPTIONS = saved);
    }
    lab.hub.addAddress('br0', `${NGINX_IP}/24`);
    const ndir = join(lab.dir, 'nginx');
    mkdirSync(ndir);
    writeFileSync(join(ndir, 'nginx.conf'), nginxConf(ndir, assets));
    const nginx = lab.hub.spawn('nginx', ['-c', join(ndir, 'nginx.conf'), '-p', ndir]);
    let nlog = '';
    nginx.stderr?.on('data', (d: Buffer) => (nlog = (nlog + d.toString()).slice(-2000)));
    const client = lab.host('02:00:00:00:00:fe', CLIENT_IP);
    await client.waitFor('nginx', async () => {
      if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${nlog}`);
      return (await client.exec('curl', ['-sf', '-o', '/dev/null', `http://${NGINX_IP}:${PORT}/assets/os/vmlinuz`], { timeoutMs: 5_000 })).code === 0;
    }, 10_000, 100);
    const rows: HttpBenchRow[] = [];
    for (const f of files) {
      for (const ip of [SERVE_IP, NGINX_IP]) await checkSum(client, ip, f.file, f.sha);
      const runs: Record<HttpServerName, Omit<HttpBenchRow, 'runs'>[]> = { 'slipway serve': [], nginx: [] };
      for (let i = 0; i < f.repeats; i++) {
        const order = [['slipway serve', SERVE_IP], ['nginx', NGINX_IP]] as const;
        for (const [server, ip] of i % 2 ? [...order].reverse() : order) {
          const row = await download(client, ip, f.file, f.size, clients, server);
          runs[server].push(row);
          console.error(formatRow({ ...row, runs: 1 }));
        }
      }
      for (const server of ['slipway serve', 'nginx'] as const) rows.push(median(runs[server]));
    }
    if (lab.serve!.exitCode !== null) throw new Error(`serve died during the run:\n${lab.log.slice(-3000)}`);
    await lab.stop();
    return rows;
  } finally {
    await lab.close();
  }
}

/** The run with the median throughput, with the median p50 and p99 of the runs. */
function median(runs: Omit<HttpBenchRow, 'runs'>[]): HttpBenchRow {
  const mid = <T>(xs: T[], by: (x: T) => number) => [...xs].sort((a, b) => by(a) - by(b))[Math.floor(xs.length / 2)]!;
  const m = mid(runs, (r) => r.mbPerSecond);
  return { ...m, p50Ms: mid(runs, (r) => r.p50Ms).p50Ms, p99Ms: mid(runs, (r) => r.p99Ms).p99Ms, ok: Math.min(...runs.map((r) => r.ok)), runs: runs.length };
}

function formatRow(r: HttpBenchRow): string {
  return `| ${r.server.padEnd(13)} | ${r.file.padEnd(15)} | ${String(r.clients).padStart(3)} | ${String(r.ok).padStart(3)} | ${r.seconds.toFixed(2).padStart(7)} | ${r.mbPerSecond.toFixed(0).padStart(6)} | ${r.p50Ms.toFixed(0).padStart(7)} | ${r.p99Ms.toFixed(0).padStart(7)} | ${r.runs} |`;
}

export function formatHttpBench(rows: HttpBenchRow[]): string {
  const out = [
    'HTTP assets: slipway serve (product, from the CLI) vs nginx (Debian config, sendfile on), same files, same run',
    '| server        | file            |   N |  ok |  wall s |   MB/s |  p50 ms |  p99 ms | runs |',
    '|---------------|-----------------|----:|----:|--------:|-------:|--------:|--------:|-----:|',
    ...rows.map(formatRow),
    '',
  ];
  for (const us of rows.filter((r) => r.server === 'slipway serve')) {
    const peer = rows.find((r) => r.server === 'nginx' && r.file === us.file);
    if (peer) out.push(`${us.file}: ${(us.mbPerSecond / peer.mbPerSecond).toFixed(2)}x nginx's throughput, ${(us.p99Ms / peer.p99Ms).toFixed(2)}x its p99 (below 1 is better for serve)`);
  }
  return out.join('\n');
}

if (import.meta.main) {
  const n = (name: string) => (process.env[name] ? Number(process.env[name]) : undefined);
  const opts: HttpBenchOptions = {};
  if (n('HTTP_CLIENTS')) opts.clients = n('HTTP_CLIENTS')!;
  if (n('HTTP_KERNEL_MIB')) opts.kernelMiB = n('HTTP_KERNEL_MIB')!;
  if (n('HTTP_IMAGE_MIB')) opts.imageMiB = n('HTTP_IMAGE_MIB')!;
  if (n('HTTP_REPEATS')) opts.repeats = n('HTTP_REPEATS')!;
  if (n('HTTP_IMAGE_REPEATS')) opts.imageRepeats = n('HTTP_IMAGE_REPEATS')!;
  console.log(formatHttpBench(await benchHttp(opts)));
}
