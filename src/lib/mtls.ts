// One HTTPS exchange with a client certificate (the apiserver, etcd's gRPC gateway): the
// status and body, or an error. Callers keep their own rules for what a status means.
//
// Bounded: one timer covers the whole exchange (connect, TLS, headers, body), so a peer
// that accepts and then trickles or says nothing cannot hold the caller past timeoutMs
// (a socket idle timeout would restart on every byte); the body kept is at most maxBytes
// (the rest is read and dropped, `truncated` says so).
import { request } from 'node:https';

export interface ClientTls {
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
}

export interface MtlsResponse {
  status: number;
  body: string;
  /** the answer was longer than maxBytes: body holds its start */
  truncated: boolean;
}

export interface MtlsOptions {
  method?: string;
  /** sent as JSON (a string as is) */
  body?: unknown;
  headers?: Record<string, string>;
  /** the whole exchange; default 10 s */
  timeoutMs?: number;
  /** body bytes kept; default 1 MiB */
  maxBytes?: number;
}

export function mtlsRequest(url: string | URL, tls: ClientTls, o: MtlsOptions = {}): Promise<MtlsResponse> {
  const text = o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
  const timeoutMs = o.timeoutMs ?? 10_000;
  const maxBytes = o.maxBytes ?? 1 << 20;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const req = request(url, {
      method: o.method ?? (text === undefined ? 'GET' : 'POST'),
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      headers: { Accept: 'application/json', ...(text === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)) }), ...o.headers },
      agent: false, // a fresh connection each time: a restarted peer is asked anew, nothing pooled
    });
    const timer = setTimeout(() => {
      const e = new Error(`no answer within ${timeoutMs / 1000} s`);
      settle(() => reject(e));
      req.destroy(e);
    }, timeoutMs);
    req.on('error', (e) => settle(() => reject(e)));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < maxBytes) chunks.push(c.subarray(0, maxBytes - size));
        size += c.length;
      });
      res.on('end', () => settle(() => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), truncated: size > maxBytes })));
      res.on('error', (e) => settle(() => reject(e)));
      res.on('close', () => settle(() => reject(new Error('the connection closed before the answer ended'))));
    });
    req.end(text);
  });
}
