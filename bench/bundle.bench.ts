// Bundle benchmarks, each against a peer on the same machine in the same run:
//
//   1. creation: `bundle create`'s image side (pull every blob, check its digest, write
//      the tar) versus `skopeo copy docker://... oci:...` of the same images (one skopeo
//      per image, run one after another and all at once), from the same local
//      docker-registry;
//   2. serving: 50 concurrent pulls of one 200 MiB layer from Slipway's bundle registry
//      (bytes read straight out of the tar) versus the same pulls from docker-registry
//      serving that layer from its own storage.
//
//   node bench/bundle.bench.ts        prints the table
//   import { benchBundle } from ...   the numbers, for `npm run bench`
//
// Layers are random bytes (gzip cannot shrink them), files live in /dev/shm so the disk
// is not measured, every client is a separate process (curl, skopeo) and Slipway's
// registry runs in a child process as the peer does. Each result is checked: a pull
// counts only with the right byte count, and one pull from each server is hashed.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../src/bundle/create.ts';
import { parseMirrors } from '../src/bundle/mirror.ts';
import { progressFor } from '../src/bundle/progress.ts';
import type { BundleContents } from '../src/bundle/contents.ts';
import { buildImage, BUSYBOX } from '../test/helpers/oci-images.ts';
import { freePort, has, killChild, LocalRegistry, runAsync, waitFor } from '../test/helpers/oci-upstream.ts';
import { randomBytes } from 'node:crypto';

export interface BundleBenchOptions {
  /** images for the creation bench (default 3) */
  images?: number;
  /** random payload per image, MiB (default 64) */
  imageMiB?: number;
  /** concurrent pulls in the serving bench (default 50) */
  pulls?: number;
  /** the pulled layer, MiB (default 200) */
  layerMiB?: number;
  /** runs of each measurement; the median counts (default 3) */
  repeats?: number;
}

export interface BundleBenchResult {
  create: { bytes: number; slipwaySeconds: number; skopeoSequentialSeconds: number; skopeoParallelSeconds: number };
  serve: { pulls: number; layerBytes: number; slipwaySeconds: number; dockerRegistrySeconds: number };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(f: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
}

/** `pulls` curls at once; each must receive exactly `size` bytes. */
async function pullMany(url: string, pulls: number, size: number): Promise<void> {
  const results = await Promise.all(Array.from({ length: pulls }, () => runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', url], 600_000)));
  for (const r of results) if (r.stdout !== `200 ${size}`) throw new Error(`pull of ${url} got "${r.stdout}" ${r.stderr}`);
}

async function sha256Of(url: string): Promise<string> {
  const r = await runAsync('sh', ['-c', `curl -sS "${url}" | sha256sum`], 120_000);
  return r.stdout.split(' ')[0]!;
}

export async function benchBundle(o: BundleBenchOptions = {}): Promise<BundleBenchResult> {
  const images = o.images ?? 3;
  const imageMiB = o.imageMiB ?? 64;
  const pulls = o.pulls ?? 50;
  const layerMiB = o.layerMiB ?? 200;
  const repeats = o.repeats ?? 3;
  for (const cmd of ['docker-registry', 'skopeo', 'curl']) if (!has(cmd)) throw new Error(`the bundle bench needs ${cmd}`);
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'slipway-bundle-bench-'));
  const registry = await LocalRegistry.start();
  let child: ChildProcess | undefined;
  try {
    // --- creation ---
    const refs: string[] = [];
    let bytes = 0;
    for (let i = 0; i < images; i++) {
      const img = await buildImage(join(dir, `img${i}`), 'v1', { amd64: [{ path: 'bin/busybox', content: BUSYBOX() }, { path: 'data/payload', content: randomBytes(imageMiB << 20) }] });
      registry.push(img, `bench/img${i}`);
      refs.push(`registry.k8s.io/bench/img${i}:v1`);
      bytes += [...img.blobs.values()].reduce((n, b) => n + b.size, 0);
    }
    const contents: BundleContents = {
      cluster: { name: 'bench', kubernetesVersion: 'v1.34.2' },
      os: { name: 'debian-12' }, // images only: no os-image item, no OS image
      items: refs.map((ref, i) => ({ kind: 'image', name: `img${i}`, version: 'v1', ref, usedBy: 'bench' })),
    };
    const mirrors = parseMirrors([`registry.k8s.io=${registry.url}`]);
    const host = registry.url.slice('http://'.length);
    const slipwayRuns: number[] = [];
    const seqRuns: number[] = [];
    const parRuns: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const out = join(dir, `create-${r}.tar`);
      slipwayRuns.push(await timed(async () => {
        await createBundle({ contents, output: out, mirrors, platforms: [{ os: 'linux', architecture: 'amd64' }], progress: progressFor(process.stderr, true) });
      }));
      rmSync(out);
      const copy = (i: number, d: string) => runAsync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${host}/bench/img${i}:v1`, `oci:${d}:img${i}`], 600_000).then((x) => {
        if (x.code !== 0) throw new Error(`skopeo copy: ${x.out}`);
      });
      const seq = join(dir, `skopeo-seq-${r}`);
      seqRuns.push(await timed(async () => {
        for (let i = 0; i < images; i++) await copy(i, seq);
      }));
      const par = join(dir, `skopeo-par-${r}`);
      parRuns.push(await timed(async () => {
        await Promise.all(refs.map((_, i) => copy(i, `${par}-${i}`)));
      }));
      rmSync(seq, { recursive: true, force: true });
      for (let i = 0; i < images; i++) rmSync(`${par}-${i}`, { recursive: true, force: true });
    }

    // --- serving ---
    const big = await buildImage(join(dir, 'big'), 'v1', { amd64: [{ path: 'data/layer', content: randomBytes(layerMiB << 20) }] });
    registry.push(big, 'bench/big');
    const layer = big.platforms[0]!.layers[0]!;
    const bundle = join(dir, 'serve.tar');
    const bigContents: BundleContents = { ...contents, items: [{ kind: 'image', name: 'big', version: 'v1', ref: 'registry.k8s.io/bench/big:v1', usedBy: 'bench' }] };
    await createBundle({ contents: bigContents, output: bundle, mirrors, platforms: [{ os: 'linux', architecture: 'amd64' }], progress: progressFor(process.stderr, true) });
    const port = await freePort();
    child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--serve', bundle, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let ready = false;
    child.stdout!.on('data', (d: Buffer) => (ready ||= d.toString().includes('ready')));
    await waitFor('the bundle registry', async () => ready);
    const urls = {
      slipway: `http://127.0.0.1:${port}/v2/bench/big/blobs/${layer.digest}?ns=registry.k8s.io`,
      dockerRegistry: `${registry.url}/v2/bench/big/blobs/${layer.digest}`,
    };
    for (const [name, url] of Object.entries(urls)) if ((await sha256Of(url)) !== layer.digest.slice(7)) throw new Error(`${name} served the layer wrong`);
    const slipwayServe: number[] = [];
    const peerServe: number[] = [];
    for (let r = 0; r < repeats; r++) {
      slipwayServe.push(await timed(() => pullMany(urls.slipway, pulls, layer.size)));
      peerServe.push(await timed(() => pullMany(urls.dockerRegistry, pulls, layer.size)));
    }
    return {
      create: { bytes, slipwaySeconds: median(slipwayRuns), skopeoSequentialSeconds: median(seqRuns), skopeoParallelSeconds: median(parRuns) },
      serve: { pulls, layerBytes: layer.size, slipwaySeconds: median(slipwayServe), dockerRegistrySeconds: median(peerServe) },
    };
  } finally {
    if (child) await killChild(child);
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatBundleBench(r: BundleBenchResult): string {
  const mbs = (bytes: number, s: number) => `${(bytes / 1048576 / s).toFixed(0)} MiB/s`;
  const c = r.create;
  const s = r.serve;
  const total = s.pulls * s.layerBytes;
  return [
    `bundle create, ${(c.bytes / 1048576).toFixed(0)} MiB of images from a local docker-registry:`,
    `  slipway bundle create (pull + verify + write tar)  ${c.slipwaySeconds.toFixed(2)} s  ${mbs(c.bytes, c.slipwaySeconds)}`,
    `  skopeo copy, one image after another               ${c.skopeoSequentialSeconds.toFixed(2)} s  ${mbs(c.bytes, c.skopeoSequentialSeconds)}`,
    `  skopeo copy, all images at once                    ${c.skopeoParallelSeconds.toFixed(2)} s  ${mbs(c.bytes, c.skopeoParallelSeconds)}`,
    `registry, ${s.pulls} concurrent pulls of a ${(s.layerBytes / 1048576).toFixed(0)} MiB layer (${(total / 1073741824).toFixed(1)} GiB):`,
    `  slipway (bundle registry, from the tar)            ${s.slipwaySeconds.toFixed(2)} s  ${mbs(total, s.slipwaySeconds)}`,
    `  docker-registry (filesystem storage)               ${s.dockerRegistrySeconds.toFixed(2)} s  ${mbs(total, s.dockerRegistrySeconds)}`,
  ].join('\n');
}

/** The child that serves a bundle's registry: quiet, "ready" once bound, closes on SIGTERM. */
async function serve(bundle: string, port: number): Promise<void> {
  const { serveBundle } = await import('../src/bundle/serve.ts');
  const { startHttpServer } = await import('../src/serve/http/server.ts');
  const { newLogger } = await import('../src/serve/log.ts');
  const { newRegistry } = await import('../src/serve/metrics.ts');
  const served = await serveBundle(bundle);
  const http = await startHttpServer({ address: '127.0.0.1', port, handlers: served.handlers, log: newLogger({ level: 'warn', pretty: false }), registry: newRegistry() });
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => void http.close().then(() => served.close()).then(() => process.exit(0)));
}

if (import.meta.main) {
  if (process.argv[2] === '--serve') await serve(process.argv[3]!, Number(process.argv[4]));
  else {
    const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
    const r = await benchBundle({
      images: env('BUNDLE_BENCH_IMAGES', 3),
      imageMiB: env('BUNDLE_BENCH_IMAGE_MIB', 64),
      pulls: env('BUNDLE_BENCH_PULLS', 50),
      layerMiB: env('BUNDLE_BENCH_LAYER_MIB', 200),
      repeats: env('BUNDLE_BENCH_REPEATS', 3),
    });
    console.log(formatBundleBench(r));
  }
}
