// HTTP assets: 100 concurrent downloads of a 256 MiB file from Slipway's asset server
// versus nginx serving the same file, on loopback, in the same run. The client is one
// curl process per download (the same for both servers), writing to /dev/null.
// Goal: Slipway >= 0.9 x nginx aggregate throughput. Run: node bench/http.bench.ts
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Assets } from '../src/serve/http/assets.ts';
import { startHttpServer } from '../src/serve/http/server.ts';
import { newRegistry } from '../src/serve/metrics.ts';

const SIZE_MIB = Number(process.env.HTTP_BENCH_MIB ?? 256);
const CONCURRENT = Number(process.env.HTTP_BENCH_CONCURRENT ?? 100);

function curlAll(url: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let left = CONCURRENT;
    for (let i = 0; i < CONCURRENT; i++) {
      const c = spawn('curl', ['-sS', '-f', '-o', '/dev/null', url], { stdio: ['ignore', 'ignore', 'inherit'] });
      c.on('exit', (code) => {
        if (code !== 0) reject(new Error(`curl exited ${code}`));
        else if (--left === 0) resolve(performance.now() - t0);
      });
    }
  });
}

export async function benchHttp(): Promise<{ slipwayMs: number; nginxMs: number }> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir(); // keep the disk out of the comparison
  const dir = mkdtempSync(join(base, 'slipway-http-bench-'));
  const root = join(dir, 'assets');
  mkdirSync(join(root, 'os'), { recursive: true });
  const fd = openSync(join(root, 'os/big.img'), 'w');
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  for (let i = 0; i < SIZE_MIB; i++) writeSync(fd, chunk);
  closeSync(fd);
  const log = pino({ level: 'silent' });
  const registry = newRegistry();
  const assets = new Assets(root);
  const http = await startHttpServer({ address: '127.0.0.1', port: 0, registry, log, handlers: [async (req, res, url) => (url.pathname.startsWith('/assets/') ? assets.serve(url.pathname.slice(8), req, res) : false)] });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, `daemon off; worker_processes auto; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:18089; location /assets/ { alias ${root}/; } } }
`);
  const nginx = spawn('nginx', ['-c', conf, '-p', dir], { stdio: 'inherit' });
  try {
    for (let i = 0; i < 50 && spawnSync('curl', ['-sf', '-o', '/dev/null', 'http://127.0.0.1:18089/assets/os/big.img', '-r', '0-0']).status !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    // warm the page cache and the digest cache once for both
    await curlAll(`http://127.0.0.1:${http.port}/assets/os/big.img`).catch(() => 0);
    const slipwayMs = await curlAll(`http://127.0.0.1:${http.port}/assets/os/big.img`);
    const nginxMs = await curlAll('http://127.0.0.1:18089/assets/os/big.img');
    const total = (SIZE_MIB * CONCURRENT) / 1024;
    console.log(`| ${CONCURRENT} x ${SIZE_MIB} MiB over loopback | wall | GiB/s |`);
    console.log('|---|---|---|');
    console.log(`| slipway | ${(slipwayMs / 1000).toFixed(1)} s | ${(total / (slipwayMs / 1000)).toFixed(2)} |`);
    console.log(`| nginx 1.22 (sendfile) | ${(nginxMs / 1000).toFixed(1)} s | ${(total / (nginxMs / 1000)).toFixed(2)} |`);
    console.log(`slipway / nginx throughput = ${(nginxMs / slipwayMs).toFixed(2)} (goal >= 0.9)`);
    return { slipwayMs, nginxMs };
  } finally {
    nginx.kill('SIGTERM');
    await http.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await benchHttp();
