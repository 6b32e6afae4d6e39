// A local "internet" for bundle tests, all on 127.0.0.1:
//   - LocalRegistry: Debian's docker-registry (the Distribution reference server) with a
//     temporary config and storage, started and killed by PID;
//   - AuthProxy: a token-auth front for it, as Docker Hub works (401 + WWW-Authenticate:
//     Bearer realm=..., a token endpoint, blobs redirected elsewhere), counting what it saw
//     and able to corrupt a blob on the way;
//   - FileMirror: a static HTTP server (Range, request log, fault injection) holding
//     release files and their checksum files at <host>/<path>, as a --mirror URL wants them;
//   - startUpstream(): all three filled with what a cluster's bundle needs, built here,
//     and a small OS image directory (helpers/os-image.ts) for the bundle's os/ entries.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BundleContents } from '../../src/bundle/contents.ts';
import { readOsImage, type OsImage } from '../../src/image/os-image.ts';
import { fakeOsImage } from './os-image.ts';
import { parseRef } from '../../src/bundle/oci/ref.ts';
import { buildImage, BUSYBOX, sha256, tarGz, type BuiltImage } from './oci-images.ts';
import { BIN } from './cli.ts';

export const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

const closeServer = (s: Server) =>
  new Promise<void>((r) => {
    s.closeAllConnections();
    s.close(() => r());
  });

/** Poll until `check` is true, at most `ms`. */
export async function waitFor(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stop a child by its PID: SIGTERM, SIGKILL after a grace period; resolves when it has exited (bounded). */
export async function killChild(child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs + 2_000))]);
  clearTimeout(t);
}

/** Run a command to completion (bounded); never throws for a non-zero exit. */
export function run(cmd: string, args: string[], timeoutMs = 120_000) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''), out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

export class LocalRegistry {
  readonly url: string;
  readonly dir: string;
  private readonly child: ChildProcess;
  log = '';

  private constructor(url: string, dir: string, child: ChildProcess) {
    this.url = url;
    this.dir = dir;
    this.child = child;
  }

  static async start(): Promise<LocalRegistry> {
    if (!has('docker-registry')) throw new Error('these tests need Debian\'s docker-registry (apt-get install docker-registry)');
    const dir = mkdtempSync(join(tmpdir(), 'slipway-registry-'));
    const port = await freePort();
    const config = join(dir, 'config.yml');
    writeFileSync(config, [
      'version: 0.1',
      'log: {level: warn, accesslog: {disabled: true}}',
      `storage: {filesystem: {rootdirectory: ${join(dir, 'data')}}, delete: {enabled: true}}`,
      `http: {addr: "127.0.0.1:${port}"}`,
      '',
    ].join('\n'));
    const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = new LocalRegistry(`http://127.0.0.1:${port}`, dir, child);
    const add = (d: Buffer) => (r.log = (r.log + d.toString()).slice(-20_000));
    child.stdout!.on('data', add);
    child.stderr!.on('data', add);
    try {
      await waitFor('docker-registry /v2/', async () => {
        if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${r.log}`);
        return (await fetch(`${r.url}/v2/`, { signal: AbortSignal.timeout(2_000) })).status === 200;
      });
    } catch (e) {
      await r.close();
      throw e;
    }
    return r;
  }

  /** Push an OCI layout's image with skopeo, every platform, digests unchanged. */
  push(image: BuiltImage, repository: string): void {
    const r = run('skopeo', ['copy', '--quiet', '--all', '--preserve-digests', '--dest-tls-verify=false', `oci:${image.dir}:${image.tag}`, `docker://${this.url.slice('http://'.length)}/${repository}:${image.tag}`]);
    if (r.code !== 0) throw new Error(`skopeo copy to ${repository}:${image.tag} failed: ${r.out}`);
  }

  async close(): Promise<void> {
    await killChild(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Token auth in front of a registry, as public registries do it: /v2/ requests without
 * a valid bearer token get 401 + a challenge naming /token; tokens are scoped to one
 * repository. Blob GETs are redirected to /cdn/... (served without auth), as Docker Hub
 * and registry.k8s.io send blobs to a CDN.
 */
export class AuthProxy {
  readonly url: string;
  private readonly server: Server;
  /** token → repository it grants */
  private readonly tokens = new Map<string, string>();
  stats = { challenges: 0, tokens: 0, authorized: 0, redirects: 0 };
  /** blob digests whose bytes get one bit flipped on the way out */
  readonly tamper = new Set<string>();

  private constructor(url: string, server: Server) {
    this.url = url;
    this.server = server;
  }

  static async start(upstream: string): Promise<AuthProxy> {
    let proxy!: AuthProxy;
    const server = createServer((req, res) => void proxy.handle(req, res, upstream));
    const port = await listen(server);
    proxy = new AuthProxy(`http://127.0.0.1:${port}`, server);
    return proxy;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, upstream: string): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    if (url.pathname === '/token') {
      const scope = url.searchParams.get('scope') ?? '';
      const m = /^repository:([^:]+):pull$/.exec(scope);
      if (!m || url.searchParams.get('service') !== 'slipway-test') {
        res.writeHead(400).end('bad scope or service');
        return;
      }
      const token = randomBytes(12).toString('hex');
      this.tokens.set(token, m[1]!);
      this.stats.tokens++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    if (url.pathname.startsWith('/cdn/')) return this.forward(req, res, upstream, url.pathname.slice('/cdn'.length));
    const m = /^\/v2\/(.+)\/(manifests|blobs|tags)\//.exec(url.pathname);
    const repo = m?.[1];
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!repo || !token || this.tokens.get(token) !== repo) {
      this.stats.challenges++;
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="${this.url}/token",service="slipway-test",scope="repository:${repo ?? 'catalog'}:pull"`,
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      return;
    }
    this.stats.authorized++;
    if (m![2] === 'blobs' && req.method === 'GET') {
      this.stats.redirects++;
      res.writeHead(307, { location: `/cdn${url.pathname}` }).end();
      return;
    }
    return this.forward(req, res, upstream, url.pathname + url.search);
  }

  private forward(req: IncomingMessage, res: ServerResponse, upstream: string, path: string): Promise<void> {
    return new Promise((resolve) => {
      const headers = { ...req.headers, host: new URL(upstream).host };
      delete headers.authorization;
      const up = httpRequest(`${upstream}${path}`, { method: req.method, headers }, (ur) => {
        const digest = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path)?.[1];
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        if (digest && this.tamper.has(digest)) {
          let first = true;
          ur.on('data', (c: Buffer) => {
            if (first) c[0]! ^= 0x01;
            first = false;
            res.write(c);
          });
          ur.on('end', () => (res.end(), resolve()));
        } else ur.pipe(res).on('finish', () => resolve());
      });
      up.on('error', () => (res.destroy(), resolve()));
      req.pipe(up);
    });
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }
}

/** Static files by path, with Range; `corrupt` and `cutAfter` break chosen paths on purpose. */
export class FileMirror {
  readonly url: string;
  readonly files = new Map<string, Buffer>();
  /** paths requested, in order, with the Range header if any */
  readonly requests: { path: string; range?: string }[] = [];
  /** path → bytes sent instead (a corrupted copy) */
  readonly corrupt = new Map<string, Buffer>();
  /** path → send this many bytes, then drop the connection (once) */
  readonly cutAfter = new Map<string, number>();
  private readonly server: Server;

  private constructor(url: string, server: Server) {
    this.url = url;
    this.server = server;
  }

  static async start(): Promise<FileMirror> {
    let m!: FileMirror;
    const server = createServer((req, res) => m.handle(req, res));
    const port = await listen(server);
    m = new FileMirror(`http://127.0.0.1:${port}`, server);
    return m;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent(new URL(req.url ?? '/', this.url).pathname);
    this.requests.push({ path, ...(req.headers.range ? { range: req.headers.range } : {}) });
    const body = this.corrupt.get(path) ?? this.files.get(path);
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    let start = 0;
    const r = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (r && Number(r[1]) < body.length) start = Number(r[1]);
    const part = body.subarray(start);
    res.writeHead(start ? 206 : 200, {
      'content-length': part.length,
      'accept-ranges': 'bytes',
      ...(start ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    const cut = this.cutAfter.get(path);
    if (cut !== undefined && req.method !== 'HEAD') {
      this.cutAfter.delete(path);
      res.write(part.subarray(0, cut), () => setTimeout(() => res.destroy(), 50));
      return;
    }
    res.end(req.method === 'HEAD' ? undefined : part);
  }

  /** requests for `path` since the log was last cleared */
  count(path: string): number {
    return this.requests.filter((r) => r.path === path).length;
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }
}

export interface Upstream {
  registry: LocalRegistry;
  proxy: AuthProxy;
  mirror: FileMirror;
  /** --mirror arguments mapping every upstream to the servers above */
  mirrorArgs: string[];
  /** the images pushed, by the reference the cluster uses */
  images: Map<string, BuiltImage>;
  /** the file each bundle path must hold */
  expected: Map<string, Buffer>;
  /** mirror path (as requested) of each item's main download, by item name */
  paths: Map<string, string>;
  /** the OS image `bundle create --os-image` packages (no image is built) */
  osImageDir: string;
  osImage: OsImage;
  close(): Promise<void>;
}

const mirrorPath = (url: string) => {
  const u = new URL(url);
  return `/${u.host}${u.pathname}`;
};
/** dl.k8s.io goes through a prefix rule (the other --mirror form), under /k8s */
const K8S_PREFIX = '/k8s';

/**
 * Fill a registry, a token proxy and a file mirror with everything `contents` names.
 * Real binaries where the machine has them (Debian's etcd and etcdctl, busybox), small
 * scripts elsewhere; every checksum file in the shape its project publishes.
 */
export async function startUpstream(contents: BundleContents, opts: { imageBytes?: number } = {}): Promise<Upstream> {
  const work = mkdtempSync(join(tmpdir(), 'slipway-upstream-'));
  const registry = await LocalRegistry.start();
  const proxy = await AuthProxy.start(registry.url);
  const mirror = await FileMirror.start();
  const up: Upstream = {
    registry, proxy, mirror, images: new Map(), expected: new Map(), paths: new Map(),
    osImageDir: join(work, 'os-image'),
    osImage: undefined as unknown as OsImage, // read below
    mirrorArgs: [`https://dl.k8s.io=${mirror.url}${K8S_PREFIX}`, `${mirror.url}/`, `registry.k8s.io=${registry.url}`, `docker.io=${proxy.url}`],
    async close() {
      await Promise.all([mirror.close(), proxy.close()]);
      await registry.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
  try {
    const put = (url: string, body: Buffer) => {
      const p = url.startsWith('https://dl.k8s.io/') ? K8S_PREFIX + new URL(url).pathname : mirrorPath(url);
      mirror.files.set(p, body);
      return p;
    };
    const realOr = (path: string, name: string) => (existsSync(path) ? readFileSync(path) : Buffer.from(`#!/bin/sh\necho ${name}\n`));
    const binary = (name: string) => {
      if (name === 'etcd') return realOr('/usr/bin/etcd', name);
      if (name === 'etcdctl') return realOr('/usr/bin/etcdctl', name);
      if (name === 'kubectl') return realOr('/usr/bin/kubectl', name);
      return Buffer.from(`#!/bin/sh\n# test stand-in for ${name}\necho "${name} $*"\n`);
    };
    const os = fakeOsImage(up.osImageDir);
    up.osImage = await readOsImage(up.osImageDir);
    for (const item of contents.items) {
      if (item.kind === 'os-image') {
        for (const f of item.files) up.expected.set(f.dest, os.bytes.get(f.dest.slice('os/'.length))!);
      } else if (item.kind === 'file') {
        const body = binary(item.name);
        up.paths.set(item.name, put(item.url, body));
        up.expected.set(item.dest, body);
        const sumURL = item.checksum.url;
        if (item.checksum.entry) {
          // runc.sha256sum: every architecture's binary
          put(sumURL, Buffer.from(`${sha256('other arch')}  runc.arm64\n${sha256(body)}  ${item.checksum.entry}\n`));
        } else put(sumURL, Buffer.from(sha256(body))); // dl.k8s.io: the bare digest, no newline
      } else if (item.kind === 'archive') {
        const files = item.members.map((m) => {
          const content = binary(m.dest.split('/').pop()!);
          up.expected.set(m.dest, content);
          return { path: m.member, content };
        });
        files.push({ path: files[0]!.path.replace(/[^/]+$/, 'README.md'), content: Buffer.from('readme\n') });
        const body = await tarGz(files);
        up.paths.set(item.name, put(item.url, body));
        const name = item.url.slice(item.url.lastIndexOf('/') + 1);
        const sums = item.checksum.entry
          ? `${sha256('another file')}  ${name.replace('amd64', 'arm64')}\n${sha256(body)}  ${name}\n`
          : `${sha256(body)}\n`;
        put(item.checksum.url, Buffer.from(sums));
      } else {
        const ref = item.kind === 'image' ? item.ref : item.image;
        const r = parseRef(ref);
        const files = [{ path: 'bin/busybox', content: BUSYBOX() }, { path: 'etc/slipway-test', content: Buffer.from(`${ref}\n`) }];
        if (opts.imageBytes) files.push({ path: 'data/payload', content: randomBytes(opts.imageBytes) });
        if (item.kind === 'image-file') {
          const content = binary(item.name);
          files.push({ path: item.member, content });
          up.expected.set(item.dest, content);
        }
        // pause and nginx and flannel as manifest lists (amd64 + arm64), CoreDNS as a single manifest
        const platforms: Record<string, typeof files> = { amd64: files };
        if (item.name !== 'coredns') platforms.arm64 = [{ path: 'etc/slipway-test', content: Buffer.from(`${ref} arm64\n`) }];
        const img = await buildImage(join(work, `img-${up.images.size}`), r.tag!, platforms);
        registry.push(img, r.repository);
        up.images.set(ref, img);
      }
    }
    return up;
  } catch (e) {
    await up.close();
    throw e;
  }
}


/**
 * Run the real `slipway` asynchronously (the upstream servers live in the test's own
 * event loop, which spawnSync would freeze), killed after timeoutMs.
 */
export function slipwayAsync(args: string[], timeoutMs = 180_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[test] slipway ${args[0]} killed after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => (clearTimeout(timer), reject(e)));
    child.on('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })));
  });
}

/** `run`, without freezing this process's own servers while the command talks to them. */
export function runAsync(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[test] ${cmd} killed after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => (clearTimeout(timer), reject(e)));
    child.on('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr, out: stdout + stderr })));
  });
}
