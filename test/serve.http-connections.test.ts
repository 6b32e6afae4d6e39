// The HTTP server's connection cap (src/serve/http/connections.ts), on loopback with a
// cap of 4: a newcomer displaces the oldest connection that holds no request (still
// sending its head, or an idle keep-alive) once it has waited MIN_AGE_MS; when every
// connection holds a request, loopback gets LOCAL_RESERVE more and then Node refuses;
// every refusal is counted. (Under a real 1,024 open-file limit, from other machines:
// test/serve.fd-limit.test.ts.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request, Agent } from 'node:http';
import { startHttpServer, type HttpServer } from '../src/serve/http/server.ts';
import { MIN_AGE_MS } from '../src/serve/http/connections.ts';
import { LOCAL_RESERVE } from '../src/serve/fdlimit.ts';
import { newLogger } from '../src/serve/log.ts';
import { newRegistry } from '../src/serve/metrics.ts';
import type { ServerResponse } from 'node:http';

const CAP = 4;
const registry = newRegistry();
let http: HttpServer;
const held: ServerResponse[] = [];

before(async () => {
  http = await startHttpServer({
    address: '127.0.0.1',
    port: 0,
    maxConnections: CAP,
    log: newLogger({ level: 'silent' }),
    registry,
    handlers: [
      (_req, res, url) => {
        if (url.pathname === '/hold') return void held.push(res), true;
        if (url.pathname !== '/healthz') return false;
        res.end('ok\n');
        return true;
      },
    ],
  });
});
after(async () => {
  for (const r of held) r.end();
  await http?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const metric = async (name: string, labels = '') => {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
};

/** A raw connection that sends `data` and records whether and how the server closed it. */
function raw(data: string): Promise<{ socket: Socket; closed: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: http.port });
    let got = '';
    const closed = new Promise<string>((r) => socket.on('close', () => r(got)));
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => {});
    socket.once('connect', () => {
      socket.write(data);
      resolve({ socket, closed });
    });
    socket.once('error', reject);
  });
}
/** Still open after 200 ms (only ever asserted false: an open socket has no event to wait for). */
const isClosed = (p: Promise<string>) => Promise.race([p.then(() => true), sleep(200).then(() => false)]);

/** GET on a connection of its own unless an agent is given (Node's global agent keeps connections alive). */
function get(path: string, agent: Agent | false = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: http.port, path, agent, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer in 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

test('past the cap a newcomer displaces the oldest slow connection, then the oldest idle keep-alive', { timeout: 30_000 }, async () => {
  const slow = [];
  for (let i = 0; i < CAP; i++) slow.push(await raw('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
  await sleep(MIN_AGE_MS + 100);
  assert.equal(await get('/healthz'), 200);
  await slow[0]!.closed; // the oldest slow connection was closed (bounded by the test's timeout)
  for (const s of slow.slice(1)) assert.equal(await isClosed(s.closed), false);
  assert.equal(await metric('slipway_http_connections_refused_total', '{reason="slow-headers"}'), 1);

  // an idle keep-alive waits like a slow head; it goes before younger slow ones
  for (const s of slow) s.socket.destroy();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  assert.equal(await get('/healthz', agent), 200);
  const fresh = [];
  for (let i = 0; i < CAP - 1; i++) fresh.push(await raw('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
  await sleep(MIN_AGE_MS + 100);
  assert.equal(await get('/healthz'), 200);
  assert.equal(await metric('slipway_http_idle_connections_closed_total'), 1);
  for (const s of fresh) s.socket.destroy();
  agent.destroy();
});

test('when every connection holds a request: loopback gets LOCAL_RESERVE more, then connections are refused and counted', { timeout: 30_000 }, async () => {
  await sleep(100);
  const before = await metric('slipway_http_connections_refused_total', '{reason="limit"}');
  const holds = [];
  for (let i = 0; i < CAP + LOCAL_RESERVE; i++) holds.push(await raw('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n'));
  await sleep(100);
  assert.equal(held.length, CAP + LOCAL_RESERVE, 'the reserve admitted loopback connections past the cap');
  const refused = await raw('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(await refused.closed, '', 'refused without an answer');
  assert.equal(await metric('slipway_http_connections_refused_total', '{reason="limit"}'), before + 1);
  assert.equal(await metric('slipway_http_open_connections'), CAP + LOCAL_RESERVE);
  // a request ends: its connection is idle above the cap and goes at once, and there is room again
  held.shift()!.end('done\n');
  await sleep(100);
  assert.equal(await metric('slipway_http_idle_connections_closed_total'), 2);
  assert.equal(await get('/healthz'), 200);
  for (const r of held.splice(0)) r.end();
  for (const h of holds) h.socket.destroy();
});

test('bad request heads still get the answers Node gives (400, 431), not a silent close', { timeout: 30_000 }, async () => {
  await sleep(100);
  const bad = await raw('BLAH\r\n\r\n');
  assert.match(await bad.closed, /^HTTP\/1\.1 400 Bad Request\r\n/);
  const big = await raw(`GET / HTTP/1.1\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`);
  assert.match(await big.closed, /^HTTP\/1\.1 431 /);
});
