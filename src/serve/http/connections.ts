// How many connections the HTTP server holds, and which ones it gives up first.
//
// Past `cap` open connections a new one is not refused outright: the oldest connection
// that holds no request in progress is closed to make room for it, whether it is still
// sending its request headers (a slow or stalled client, or a slowloris) or an idle
// keep-alive, once it has waited MIN_AGE_MS (half a second) for nothing. A real client sends its headers
// in one packet, so a newcomer soon holds a request and is never closed for another;
// what gets closed is what has been waiting longest. When nothing qualifies (every
// connection busy with a request, downloads and SSE streams included, or just opened in
// a burst) the newcomer is refused at once; connections from the provisioner itself
// (loopback: local health checks) still get LOCAL_RESERVE more. server.maxConnections is set to that absolute
// bound, so Node itself drops anything past it, before any JavaScript runs.
//
// Each of these is counted in slipway_http_connections_refused_total{reason}: "limit"
// (refused at once, every connection busy), "slow-headers" (closed to make room before
// its request was complete), "timeout" (no complete request within headersTimeout or
// requestTimeout: Node answers 408). Idle keep-alives closed to make room are counted
// apart (slipway_http_idle_connections_closed_total): their clients lose nothing.
import type { Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { counter, gauge } from '../metrics.ts';
import { LOCAL_RESERVE } from '../fdlimit.ts';

/** A connection waiting less than this is not closed for a newcomer: in a burst, those accepted first would lose to those behind them before their headers are even read. */
export const MIN_AGE_MS = 500;

const isLoopback = (a: string | undefined) => !!a && (a.startsWith('127.') || a === '::1' || a.startsWith('::ffff:127.'));

interface Conn {
  /** requests in progress on it (pipelining can make this more than one) */
  inflight: number;
  /** the response being written, for clientError: nothing is written over one that has started */
  res?: ServerResponse;
}

export function guardConnections(server: Server, opts: { cap?: number; registry: Registry; log: Logger }): void {
  const refused = counter(opts.registry, 'slipway_http_connections_refused_total', 'HTTP connections closed before a request was answered: limit (every connection busy), slow-headers (closed to make room while its headers were incomplete), timeout (408)', ['reason']);
  const idleClosed = counter(opts.registry, 'slipway_http_idle_connections_closed_total', 'Idle keep-alive HTTP connections closed to make room for new ones');
  const openGauge = gauge(opts.registry, 'slipway_http_open_connections', 'HTTP connections open now');
  const cap = opts.cap;
  if (cap !== undefined) {
    gauge(opts.registry, 'slipway_http_connection_limit', 'HTTP connections held before idle or slow ones are closed for new ones (from the open-file limit)').set(cap);
    server.maxConnections = cap + LOCAL_RESERVE;
  }
  const conns = new Map<Socket, Conn>();
  /** connections holding no request and since when, oldest first (Map keeps insertion order) */
  const waiting = new Map<Socket, { state: 'headers' | 'idle'; since: number }>();
  let lastWarn = 0;
  const warn = (what: string) => {
    // one line per 10 s at most: under attack this happens thousands of times
    if (Date.now() - lastWarn < 10_000) return;
    lastWarn = Date.now();
    opts.log.warn({ open: conns.size, cap }, `http connection limit reached: ${what} (see slipway_http_connections_refused_total)`);
  };

  const forget = (s: Socket) => {
    conns.delete(s);
    waiting.delete(s);
    openGauge.set(conns.size);
  };
  const shed = (s: Socket, state: 'headers' | 'idle') => {
    if (state === 'headers') refused.inc({ reason: 'slow-headers' });
    else idleClosed.inc();
    forget(s);
    s.destroy();
  };

  const refuseBusy = () => {
    refused.inc({ reason: 'limit' });
    warn('refusing new connections, every one is busy');
  };

  server.on('drop', refuseBusy);
  server.on('connection', (s: Socket) => {
    const now = performance.now();
    conns.set(s, { inflight: 0 });
    waiting.set(s, { state: 'headers', since: now });
    openGauge.set(conns.size);
    s.once('close', () => forget(s));
    if (cap === undefined || conns.size <= cap) return;
    const [old, w] = waiting.entries().next().value ?? [];
    if (old && w && old !== s && now - w.since >= MIN_AGE_MS) {
      shed(old, w.state);
      warn('closing the oldest idle or slow connections for new ones');
      return;
    }
    if (isLoopback(s.remoteAddress) && conns.size <= cap + LOCAL_RESERVE) return;
    refuseBusy();
    forget(s);
    s.destroy();
  });
  server.on('request', (req, res: ServerResponse) => {
    const s = req.socket;
    const c = conns.get(s);
    if (!c) return;
    c.inflight++;
    c.res = res;
    waiting.delete(s);
    res.once('close', () => {
      if (c.res === res) c.res = undefined;
      if (--c.inflight > 0 || s.destroyed || !conns.has(s)) return;
      // above the cap (local reserve in use) an idle keep-alive goes at once
      if (cap !== undefined && conns.size > cap) return shed(s, 'idle');
      waiting.set(s, { state: 'idle', since: performance.now() });
    });
  });
  // Replaces Node's default answer to a bad or timed-out request (a listener disables
  // it), to count timeouts; what is written is what Node writes.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') refused.inc({ reason: 'timeout' });
    const res = conns.get(socket as Socket)?.res;
    if (err.code !== 'ECONNRESET' && socket.writable && !res?.headersSent) {
      socket.write(
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n'
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n'
            : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
      );
    }
    socket.destroy();
  });
}
