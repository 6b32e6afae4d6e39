// The provisioner's HTTP side: iPXE scripts decided per MAC, each machine's Ignition and
// cloud-config (only to that machine, only while it is being provisioned), the assets
// directory, /healthz and Prometheus /metrics. Extra routes (API, console) plug in.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import type { Inventory } from '../inventory.ts';
import { normalizeMac } from '../../lib/mac.ts';
import type { Lifecycle } from '../../lifecycle/lifecycle.ts';
import { counter, histogram } from '../metrics.ts';
import type { Site } from '../site.ts';
import { bootAnswer } from '../boot-answers.ts';
import { Assets } from './assets.ts';
import { arpTableMac, type MacOf } from './neighbors.ts';
import { guardConnections } from './connections.ts';

/**
 * A client that has not sent a whole request head in this long is closed (408): real
 * clients send it in one packet. Node checks every connectionsCheckingInterval, so a
 * slow one goes within HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
/** The whole request, body included (reports are at most 64 KiB); only receiving it: responses (downloads, SSE) are not bounded. */
export const REQUEST_TIMEOUT_MS = 30_000;
export const CHECK_INTERVAL_MS = 1_000;
/** A connection with no traffic either way for this long is closed: a stalled download's client. SSE sends a ping every 15 s. */
export const IDLE_SOCKET_TIMEOUT_MS = 120_000;

export interface HttpContext {
  site: () => Site;
  inventory: () => Inventory;
  lifecycle: Lifecycle;
  assets?: Assets;
  log: Logger;
  registry: Registry;
  macOf?: MacOf;
  /** every server of this serve is up (for /readyz) */
  ready?: () => boolean;
  /** `--unknown enlist`: the iPXE script that enlists this unknown MAC (a new token each time) */
  enlistScript?: (mac: string) => string;
  /** a machine was sent its configuration: record what it was given (for `slipway apply`) */
  configServed?: (machine: string) => Promise<void>;
}

/** A route returns true when it answered. Extra handlers (API, console) are tried first. */
export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> | boolean;

/** The per-machine files served only to that machine while it is provisioned, and their types. */
const CONFIG_TYPES: Record<string, string> = {
  'ignition.json': 'application/vnd.coreos.ignition+json',
  'cloud-config.yml': 'text/cloud-config; charset=utf-8',
  // what the installer initramfs reads before it writes the disk (plan/phases/install.ts)
  'install.env': 'text/plain; charset=utf-8',
};

export const clientIp = (req: IncomingMessage): string => (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');

/** decodeURIComponent, or undefined for malformed percent-encoding ("%E0%A4%A", "%"), which must not be a 500. */
export function decodePath(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

export const BAD_ENCODING = 'malformed percent-encoding in the URL path\n';

/** A whole small response (no body for HEAD), never cached; true, for handlers to return. */
export function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): true {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
  return true;
}

export function coreRoutes(ctx: HttpContext): Handler {
  const macOf = ctx.macOf ?? ((ip: string) => arpTableMac(ip));
  const refusals = counter(ctx.registry, 'slipway_http_refused_total', 'HTTP requests for machine credentials that were refused', ['reason']);
  return async (req, res, url) => {
    const path = url.pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    if (path === '/healthz') return send(res, 200, 'ok\n');
    if (path === '/readyz') return ctx.ready?.() === false ? send(res, 503, 'starting\n') : send(res, 200, 'ready\n');
    if (path === '/metrics') return send(res, 200, await ctx.registry.metrics(), ctx.registry.contentType);
    const site = ctx.site();
    if (path === '/boot.ipxe') {
      const body = site.file('pxe/boot.ipxe');
      return body ? send(res, 200, body) : false;
    }
    let m = /^\/ipxe\/mac\/([0-9a-fA-F]{2}(?:-[0-9a-fA-F]{2}){5})\.ipxe$/.exec(path);
    if (m) {
      const mac = normalizeMac(m[1]!);
      const inv = ctx.inventory();
      inv.seen(mac, 'http', { path });
      const answer = bootAnswer('ipxe', mac, inv.getByMac(mac));
      if (answer.kind === 'none') return send(res, 404, `unknown machine ${mac}\n`);
      if (answer.kind === 'local') return send(res, 200, answer.body);
      if (answer.kind === 'enlist') {
        if (!ctx.enlistScript) return send(res, 404, `unknown machine ${mac}\n`);
        ctx.log.info({ mac, from: clientIp(req) }, 'unknown machine: enlistment boot');
        return send(res, 200, ctx.enlistScript(mac));
      }
      ctx.lifecycle.observe(answer.machine.name, 'booting', 'http', { detail: { path } });
      const body = site.file(`pxe/ipxe/mac/${m[1]!.toLowerCase()}.ipxe`);
      return body ? send(res, 200, body) : false;
    }
    m = /^\/ipxe\/([a-z0-9-]+)\.ipxe$/.exec(path);
    if (m) {
      const machine = site.machine(m[1]!);
      if (!machine) return false;
      const answer = bootAnswer('ipxe', machine.mac, { machine, action: ctx.lifecycle.bootAction(machine.name), why: ctx.lifecycle.localReason(machine.name) });
      if (answer.kind === 'local') return send(res, 200, answer.body);
      if (answer.kind !== 'install') return false; // a known machine is never 'none' or 'enlist'
      ctx.lifecycle.observe(machine.name, 'booting', 'http', { detail: { path } });
      return send(res, 200, site.file(`pxe/ipxe/${machine.name}.ipxe`)!);
    }
    m = /^\/machines\/([a-z0-9-]+)\/(ignition\.json|cloud-config\.yml|install\.env)$/.exec(path);
    if (m) {
      const machine = site.machine(m[1]!);
      if (!machine) return send(res, 404, 'no such machine\n');
      const ip = clientIp(req);
      const mac = macOf(ip);
      const refuse = (status: number, reason: string, why: string) => {
        refusals.inc({ reason });
        ctx.log.warn({ machine: machine.name, from: ip, mac, path, reason }, `refused ${path}: ${why}`);
        return send(res, status, `${why}\n`);
      };
      if (ctx.lifecycle.bootAction(machine.name) !== 'install') return refuse(404, 'not-provisioning', `${machine.name} is not being provisioned (reprovision it first)`);
      if (ip !== machine.ip) return refuse(403, 'wrong-ip', `${machine.name}'s configuration is served only to ${machine.ip}`);
      if (mac && mac !== machine.mac) return refuse(403, 'wrong-mac', `${ip} answers from ${mac}, not ${machine.name}'s NIC`);
      if (!mac) ctx.log.info({ machine: machine.name, from: ip }, 'requester MAC not in the neighbour table (routed segment?): checked by IP only');
      ctx.lifecycle.observe(machine.name, 'config-fetched', 'http', { detail: { path, from: ip } });
      // A new install (a first one, or one cut short by a power loss) numbers its reports
      // from 1 again: the installer has no memory of an earlier attempt's seq.
      if (m[2] === 'install.env') ctx.lifecycle.store.resetSeq(machine.name);
      const type = CONFIG_TYPES[m[2]!]!;
      if (m[2] !== 'install.env') await ctx.configServed?.(machine.name).catch((e: Error) => ctx.log.error({ machine: machine.name, err: e.message }, 'could not record what the machine was given'));
      return send(res, 200, site.file(`machines/${machine.name}/${m[2]}`)!, type);
    }
    if (path.startsWith('/assets/') && ctx.assets) {
      const rel = decodePath(path.slice('/assets/'.length));
      if (rel === undefined) return send(res, 400, BAD_ENCODING);
      if (rel.endsWith('SHA256SUMS') && !(await ctx.assets.resolve(rel))) {
        const sums = await ctx.assets.sha256sums(rel.slice(0, -'SHA256SUMS'.length) || '.');
        return sums === undefined ? false : send(res, 200, sums);
      }
      return ctx.assets.serve(rel, req, res);
    }
    return false;
  };
}

export interface HttpServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(opts: {
  address?: string;
  port: number;
  handlers: Handler[];
  log: Logger;
  registry: Registry;
  /** open connections before idle or slow ones are closed for new ones (connections.ts); default: no cap */
  maxConnections?: number;
}): Promise<HttpServer> {
  const requests = counter(opts.registry, 'slipway_http_requests_total', 'HTTP requests by route class and status', ['class', 'status']);
  const latency = histogram(opts.registry, 'slipway_http_request_duration_seconds', 'HTTP request handling time', ['class']);
  const classOf = (p: string) => (/^\/(api|assets|machines|ipxe|metrics|healthz|readyz|v2)\b/.exec(p)?.[1] ?? (p === '/boot.ipxe' ? 'ipxe' : 'other'));
  const server = createServer({ connectionsCheckingInterval: CHECK_INTERVAL_MS }, async (req, res) => {
    const t0 = performance.now();
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://slipway');
    } catch {
      send(res, 400, 'bad request\n');
      return;
    }
    const cls = classOf(url.pathname);
    res.on('finish', () => {
      requests.inc({ class: cls, status: String(res.statusCode) });
      latency.observe({ class: cls }, (performance.now() - t0) / 1000);
    });
    try {
      for (const h of opts.handlers) if (await h(req, res, url)) return;
      send(res, 404, 'not found\n');
    } catch (e) {
      // a handler's decodeURIComponent on a malformed path: the client's mistake
      if (e instanceof URIError) {
        opts.log.debug({ err: e.message, path: url.pathname }, 'malformed percent-encoding');
        if (!res.headersSent) send(res, 400, BAD_ENCODING);
        return;
      }
      opts.log.error({ err: (e as Error).message, path: url.pathname }, 'http handler failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.timeout = IDLE_SOCKET_TIMEOUT_MS;
  guardConnections(server, { cap: opts.maxConnections, registry: opts.registry, log: opts.log });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address ?? '0.0.0.0', () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
