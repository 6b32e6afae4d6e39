// File-descriptor exhaustion under the default soft limit (issue 14, item 6): the real
// `slipway serve`, started as a user starts it but under `prlimit --nofile=1024:1024`
// (systemd's default soft limit, and a hard one it cannot raise), in a lab namespace.
// 1,100 slow HTTP clients that never finish their request head connect from one
// machine's namespace; while they are there, health checks, a DHCP DORA and a TFTP read
// from other namespaces still work, serve never holds more descriptors than its limit,
// /metrics counts the refused connections, and once the header timeout has passed the
// slow connections are all gone (each told 408 or closed to make room).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { Lab } from './helpers/serve.ts';
import { BIN } from './helpers/cli.ts';
import type { Netns } from './helpers/netns.ts';
import type { Status } from './helpers/slow-http.ts';
import { fdBudget } from '../src/serve/fdlimit.ts';
import { CHECK_INTERVAL_MS, HEADERS_TIMEOUT_MS } from '../src/serve/http/server.ts';
import { MIN_AGE_MS } from '../src/serve/http/connections.ts';

const BASE = 'http://10.20.30.2:8080';
const SLOW = 1100;
const SLOW_HTTP = fileURLToPath(new URL('./helpers/slow-http.ts', import.meta.url));
const budget = fdBudget({ soft: 1024, hard: 1024 });
const has = (cmd: string) => readdirSync('/usr/bin').includes(cmd) || readdirSync('/usr/sbin').includes(cmd);
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : ['prlimit', 'udhcpc', 'tftp', 'curl'].filter((c) => !has(c)).map((c) => `needs ${c}`)[0] ?? false;

let lab: Lab;
let monitor: Netns;
let cp1: Netns;
let attacker: Netns;
let slow: ChildProcess | undefined;

const curl = (ns: Netns, args: string[]) => ns.exec('curl', ['-sS', '-m', '20', ...args], { timeoutMs: 25_000 });
const servePid = () => lab.serve!.pid!;
const openFds = () => readdirSync(`/proc/${servePid()}/fd`).length;
const metric = (text: string, name: string, labels = ''): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
};

before(async () => {
  if (skip) return;
  lab = Lab.create();
  // As Lab.start, with prlimit in front: ip netns exec and prlimit both exec, so the pid is serve's own.
  const child = lab.hub.spawn('prlimit', ['--nofile=1024:1024', '--', process.execPath, BIN, 'serve', '-f', lab.file, '--state', lab.state]);
  lab.serve = child;
  const add = (d: Buffer) => (lab.log = (lab.log + d.toString()).slice(-4_000_000));
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  await lab.hub.waitFor('slipway serve /readyz', async () => {
    if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}:\n${lab.log}`);
    return (await lab.hub.exec('curl', ['-fsS', '-m', '2', `${BASE}/readyz`], { timeoutMs: 5_000 })).code === 0;
  }, 30_000, 250);
  monitor = lab.host('52:54:00:20:30:50', '10.20.30.50');
  cp1 = lab.host('52:54:00:20:30:11', '10.20.30.11');
  attacker = lab.host('52:54:00:66:66:66', '10.20.30.66');
});
after(async () => {
  if (slow && attacker) await attacker.kill(slow);
  await lab?.close();
});

test('serve runs with soft = hard = 1024, says so, and sizes HTTP and TFTP from it', { skip, timeout: 60_000 }, async () => {
  const limits = readFileSync(`/proc/${servePid()}/limits`, 'utf8');
  assert.match(limits, /^Max open files\s+1024\s+1024\s/m);
  assert.match(lab.log, /open-file limit 1024 is low: HTTP is capped at \d+ connections and TFTP at \d+ transfers/);
  const m = (await curl(monitor, [`${BASE}/metrics`])).stdout;
  assert.equal(metric(m, 'slipway_http_connection_limit'), budget.httpConnections);
  assert.equal(metric(m, 'slipway_tftp_transfer_limit'), budget.tftpTransfers);
  assert.equal(metric(m, 'slipway_process_process_max_fds'), 1024);
  console.log(`# idle serve holds ${openFds()} descriptors; HTTP cap ${budget.httpConnections}, TFTP cap ${budget.tftpTransfers}`);
});

test(`${SLOW} slow HTTP clients: health checks, DHCP and TFTP keep answering; refusals are counted; the slow ones time out`, { skip, timeout: 180_000 }, async () => {
  const statuses: string[] = [];
  slow = attacker.spawn(process.execPath, [SLOW_HTTP, JSON.stringify({ host: '10.20.30.2', port: 8080, count: SLOW, maxMs: 120_000 })]);
  slow.stdout!.setEncoding('utf8').on('data', (d: string) => statuses.push(...d.split('\n').filter(Boolean)));
  slow.stderr!.on('data', () => {});
  const status = (): Status | undefined => (statuses.length ? (JSON.parse(statuses.at(-1)!) as Status) : undefined);
  let maxFds = 0;
  const sampleFds = () => (maxFds = Math.max(maxFds, openFds()));

  // every connection attempted, and serve holding no more of them than its cap (the
  // client hears of the ones closed for it a moment after)
  await attacker.waitFor(`all ${SLOW} slow connections attempted, at most ${budget.httpConnections} still open`, () => {
    sampleFds();
    const s = status();
    return !!s && s.started === SLOW && s.connected + s.failed === SLOW && s.open <= budget.httpConnections;
  }, 60_000, 100);
  const held = status()!;
  console.log(`# slow clients: ${JSON.stringify(held)}`);
  assert.equal(held.failed, 0, 'every slow client got a TCP connection (none reset by EMFILE on accept)');
  assert.ok(held.open > 0);

  // while they are held: health checks from another machine answer. A newcomer displaces
  // only a connection that has had MIN_AGE_MS to send its request head; right after the
  // burst every slow one is younger than that and newcomers are refused (connections.ts).
  await new Promise((r) => setTimeout(r, MIN_AGE_MS));
  for (let i = 0; i < 5; i++) {
    const r = await curl(monitor, ['-f', '-w', ' %{http_code}', `${BASE}/healthz`]);
    assert.equal(r.stdout, 'ok\n 200', `health check ${i}: ${r.out}`);
    sampleFds();
  }
  // a DHCP DORA completes (busybox udhcpc: DISCOVER, OFFER, REQUEST, ACK)
  const dhcp = await cp1.exec('udhcpc', ['-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', '/bin/true', '-V', 'PXEClient:Arch:00000'], { timeoutMs: 20_000 });
  assert.equal(dhcp.code, 0, dhcp.out);
  assert.match(dhcp.out, /lease of 10\.20\.30\.11 obtained/);
  // a TFTP read works (tftp-hpa exits 0 even on an ERROR: compare the bytes)
  const got = join(lab.dir, 'undionly.kpxe');
  const tftp = await cp1.exec('tftp', ['-m', 'binary', '10.20.30.2', '-c', 'get', 'undionly.kpxe', got], { timeoutMs: 30_000 });
  assert.ok(readFileSync(got).equals(readFileSync(join(lab.state, 'tftp/undionly.kpxe'))), `tftp: ${tftp.out}`);
  sampleFds();
  assert.ok(status()!.open > 0, 'slow connections were still open during the checks');

  // the refused ones are counted
  const during = (await curl(monitor, [`${BASE}/metrics`])).stdout;
  const limit = metric(during, 'slipway_http_connections_refused_total', '{reason="limit"}');
  const shed = metric(during, 'slipway_http_connections_refused_total', '{reason="slow-headers"}');
  console.log(`# refused while held: limit ${limit}, slow-headers ${shed}; serve held at most ${maxFds} descriptors`);
  assert.ok(limit + shed >= SLOW - budget.httpConnections, `refused ${limit} + ${shed} < ${SLOW - budget.httpConnections}`);
  assert.ok(maxFds < 1024, `serve held ${maxFds} descriptors`);

  // after the header timeout every slow connection is gone: closed by serve with a 408
  await attacker.waitFor('every slow connection closed', () => status()?.done === true, HEADERS_TIMEOUT_MS + CHECK_INTERVAL_MS + 30_000, 250);
  const end = status()!;
  console.log(`# slow clients at the end: ${JSON.stringify(end)}`);
  assert.equal(end.open, 0);
  assert.equal(end.closed, SLOW);
  assert.ok(end.got408 > 0, 'the slow connections still open at the timeout were told 408');
  const after = (await curl(monitor, [`${BASE}/metrics`])).stdout;
  assert.equal(metric(after, 'slipway_http_connections_refused_total', '{reason="timeout"}'), end.got408);
  assert.ok(metric(after, 'slipway_http_open_connections') <= 2, 'only the metrics request itself is open');
  assert.equal((await curl(monitor, ['-f', `${BASE}/healthz`])).stdout, 'ok\n');

  assert.doesNotMatch(lab.log, /EMFILE|ENFILE|too many open files/i);
  assert.doesNotMatch(lab.log, /"level":50/);
  assert.doesNotMatch(lab.log, /Server busy/);
});
