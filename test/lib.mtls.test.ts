// lib/mtls.ts, the one HTTPS-with-a-client-certificate exchange the kube client, apply's
// etcd membership calls and the restore's member checks share: the client certificate is
// presented and the CA checked; one bound covers the whole exchange, so a peer that
// trickles its answer or never sends one is given up at the bound; a long answer is cut.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseClusterFile } from '../src/spec/parse.ts';
import { loadOrCreateSecrets } from '../src/secrets/store.ts';
import { mtlsRequest } from '../src/lib/mtls.ts';
import { EXAMPLE_HA } from './helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'slipway-mtls-'));
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.closeAllConnections(), s.close();
  rmSync(dir, { recursive: true, force: true });
});

const spec = parseClusterFile(readFileSync(EXAMPLE_HA, 'utf8'), 'lab.yaml').spec!;
const secrets = await loadOrCreateSecrets(dir, spec);
const tls = { ca: secrets.certs.ca.cert, cert: secrets.certs.admin.cert, key: secrets.certs.admin.key };

/** An HTTPS server on loopback with the apiserver's pair, asking for a client certificate from the CA. */
async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const s = createServer({ cert: secrets.certs.apiserver.cert, key: secrets.certs.apiserver.key, ca: secrets.certs.ca.cert, requestCert: true, rejectUnauthorized: true }, handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `https://127.0.0.1:${(s.address() as { port: number }).port}`;
}

test('an answer: status and body; the client certificate was presented and the JSON body sent', async () => {
  const url = await serve((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d)).on('end', () => {
      const cn = (req.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN;
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ cn, method: req.method, type: req.headers['content-type'], body: JSON.parse(body) }));
    });
  });
  const r = await mtlsRequest(`${url}/x`, tls, { body: { a: 1 } });
  assert.equal(r.status, 201);
  assert.deepEqual(JSON.parse(r.body), { cn: 'kubernetes-admin', method: 'POST', type: 'application/json', body: { a: 1 } });
  assert.equal(r.truncated, false);
});

test('a server the CA does not vouch for is refused', async () => {
  const url = await serve((_req, res) => res.end('{}'));
  const other = await loadOrCreateSecrets(mkdtempSync(join(dir, 'other-')), spec);
  await assert.rejects(mtlsRequest(url, { ...tls, ca: other.certs.ca.cert }, { timeoutMs: 5_000 }), /self[- ]signed|unable to verify|certificate/i);
});

test('a peer that trickles its answer (a byte every 100 ms) is given up at the bound, not kept alive by each byte', async () => {
  const url = await serve((_req, res) => {
    res.writeHead(200);
    const t = setInterval(() => res.write(' '), 100);
    res.on('close', () => clearInterval(t));
  });
  const t0 = performance.now();
  await assert.rejects(mtlsRequest(url, tls, { timeoutMs: 1_000 }), /no answer within 1 s/);
  const took = performance.now() - t0;
  assert.ok(took >= 950 && took < 3_000, `gave up after ${took.toFixed(0)} ms`);
});

test('a peer that never answers is given up at the bound', async () => {
  const url = await serve(() => {});
  await assert.rejects(mtlsRequest(url, tls, { timeoutMs: 500 }), /no answer within 0\.5 s/);
});

test('a long answer is cut at maxBytes and says so', async () => {
  const url = await serve((_req, res) => res.end('x'.repeat(100_000)));
  const r = await mtlsRequest(url, tls, { maxBytes: 4000 });
  assert.equal(r.body.length, 4000);
  assert.equal(r.truncated, true);
});
