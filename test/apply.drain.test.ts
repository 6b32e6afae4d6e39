// apply's drain of an apiserver (drainScripts in src/apply/apply.ts), run by the real
// iptables in a network namespace of the test's own (the machine), with a real HTTP server
// on the apiserver's address and another namespace over a veth (another control-plane
// machine's haproxy): while drained, a new connection from there is refused at once with a
// TCP reset (what haproxy's `redispatch 1` retries on another apiserver), a connection
// already open keeps working, and the machine's own clients (the apiserver's loopback
// client, apply's /readyz check) still get through; a second drain leaves one rule, and the
// undrain leaves none. (systemd is not PID 1 here, so the 15-minute safety timer is not
// started; its line tolerates that.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Netns } from './helpers/netns.ts';
import { ROOT } from './helpers/cli.ts';
import { drainScripts } from '../src/apply/apply.ts';
import { parseClusterFile } from '../src/spec/parse.ts';

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const SKIP = process.getuid?.() !== 0 ? 'needs root (network namespaces, iptables)' : !has('iptables') ? 'iptables missing (Debian package iptables)' : !has('curl') ? 'curl missing' : false;
const IP = '10.99.0.1';
const PEER = '10.99.0.2';

const SERVER = `
const http = require('node:http');
const net = require('node:net');
http.createServer((req, res) => res.end('ok')).listen(6443, '${IP}', () => console.log('READY'));
`;

/** A connection opened before the drain that sends its request 2.5 s later. */
const OPEN = `
const s = require('node:net').connect(6443, '${IP}', () => {
  console.log('open');
  setTimeout(() => s.write('GET /readyz HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'), 2500);
});
s.on('data', (b) => process.stdout.write(b.toString()));
s.on('error', (e) => console.log('ERR', e.code));
`;

/** A TCP client inside the namespace: 'connected' or the error code. */
const CLIENT = `
const net = require('node:net');
const [host, port, localPort] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), ...(localPort ? { localPort: Number(localPort) } : {}) });
s.setTimeout(5000, () => { console.log('timeout'); process.exit(0); });
s.on('connect', () => { console.log('connected'); s.destroy(); });
s.on('error', (e) => console.log(e.code));
`;

test("drain: another machine's new connections to the apiserver get a reset, an open one and the machine's own clients still get through; drain twice, undrain once, no rule left", { skip: SKIP, timeout: 60_000 }, async () => {
  const file = join(ROOT, 'examples/rehearsal.yaml');
  const spec = parseClusterFile(readFileSync(file, 'utf8'), file).spec!;
  const d = drainScripts(spec, IP);
  const ns = Netns.create('slipway-drain');
  const peer = Netns.create('slipway-drainp');
  try {
    ns.addVeth('dr0', 'dr0p', peer);
    ns.addAddress('dr0', `${IP}/24`);
    peer.addAddress('dr0p', `${PEER}/24`);
    const server = ns.spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    server.stdout!.on('data', (b: Buffer) => (out += b));
    await ns.waitFor('server', () => out.includes('READY'), 10_000);
    const from = async (where: Netns) => (await where.exec(process.execPath, ['-e', CLIENT, IP, '6443'])).stdout.trim();
    const rules = async () => (await ns.exec('iptables', ['-w', '-S', 'INPUT'])).stdout.split('\n').filter((l) => l.includes('slipway-apply-drain'));
    const sh = async (script: string) => ns.exec('sh', ['-c', script], { timeoutMs: 20_000 });

    assert.equal(await from(peer), 'connected');
    // a connection open before the drain (a request in flight, a watch), from the other machine
    const open = peer.spawn(process.execPath, ['-e', OPEN], { stdio: ['ignore', 'pipe', 'pipe'] });
    let openOut = '';
    open.stdout!.on('data', (b: Buffer) => (openOut += b));
    await peer.waitFor('open connection', () => openOut.includes('open'), 10_000);

    const on = await sh(d.on);
    assert.equal(on.code, 0, on.stdout + on.stderr);
    assert.equal((await sh(d.on)).code, 0, 'a second drain (a run that never came back) is fine');
    assert.equal((await rules()).length, 1, `one rule: ${(await rules()).join('\n')}`);
    assert.equal(await from(peer), 'ECONNREFUSED', "another machine's new connection is reset at once, not left to time out");
    assert.equal(await from(ns), 'connected', "the machine's own clients (the apiserver's loopback client, apply's check) still get through");
    const curl = await ns.exec('curl', ['-fsS', '-m', '5', `http://${IP}:6443/readyz`]);
    assert.equal(curl.stdout, 'ok', curl.stderr);
    await peer.waitFor('the open connection answered', () => /HTTP\/1\.1 200/.test(openOut) && /ok/.test(openOut.split('\r\n\r\n')[1] ?? ''), 10_000).catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(openOut)}`);
    });
    assert.doesNotMatch(openOut, /ERR/);

    const off = await sh(d.off);
    assert.equal(off.code, 0, off.stdout + off.stderr);
    assert.deepEqual(await rules(), []);
    assert.equal(await from(peer), 'connected');
    await peer.kill(open);
    await ns.kill(server);
  } finally {
    await peer.close();
    await ns.close();
  }
});
