// `cni: bridge` proved by its real consumers. examples/lab.yaml with `cni: bridge` is
// rendered by the CLI; two of its machines (cp1, w1) become two network namespaces on one
// segment (a bridge in a third namespace that also holds the lab's router address,
// 10.20.30.1, which has no route to any pod network). In each node namespace:
//
//   - Debian's systemd-networkd (252) applies the machine's rendered
//     10-slipway.network (address, IPForward=, one [Route] per other machine's pod /24);
//   - the rendered slipway-pod-masquerade.service's iptables commands run;
//   - Debian's containernetworking-plugins run the rendered conflist (bridge with
//     host-local, then portmap) per the CNI spec for one "pod" namespace, as containerd
//     would: ADD, and DEL at the end.
//
// Then: each pod has an address of its machine's slice; a pod on cp1 reaches the pod on
// w1 by its pod IP (ping and TCP) and is seen there with its own pod IP (no NAT between
// pods); the router sees it as cp1's address (masqueraded: the router has no pod route);
// w1's hostPort (portmap) reaches the pod behind it.
//
// Only namespaces this test creates are touched; networkd runs in a private mount
// namespace (its /run/systemd and /etc/systemd/network are tmpfs there) and is killed by
// its pid; host-local keeps its leases in a temporary dataDir instead of /var/lib/cni.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slipway, EXAMPLE_HA } from './helpers/cli.ts';
import { Netns } from './helpers/netns.ts';

const CNI_PATH = '/usr/lib/cni';
const NETWORKD = '/lib/systemd/systemd-networkd';
const ROUTER = '10.20.30.1';
const POD_PORT = 8080;
const HOST_PORT = 30080;
const ROUTER_PORT = 9000;

let work: string;
let out: string;
const spaces: Netns[] = [];

before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-cni-'));
  out = join(work, 'out');
  const file = join(work, 'bridge.yaml');
  const text = readFileSync(EXAMPLE_HA, 'utf8');
  assert.match(text, /^ {4}cni: flannel$/m);
  writeFileSync(file, text.replace(/^ {4}cni: flannel$/m, '    cni: bridge'));
  const r = slipway(['render', '-f', file, '-o', out, '--state', join(work, 'state')]);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  for (const ns of spaces.reverse()) await ns.close();
  rmSync(work, { recursive: true, force: true });
});

function netns(prefix: string): Netns {
  const ns = Netns.create(prefix);
  spaces.push(ns);
  return ns;
}

/** systemd's INI dialect, as far as a .network file needs: sections in order, repeated keys kept. */
function ini(text: string): { name: string; entries: [string, string][] }[] {
  const sections: { name: string; entries: [string, string][] }[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) sections.push({ name: head[1]!, entries: [] });
    else {
      const eq = line.indexOf('=');
      sections.at(-1)!.entries.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
    }
  }
  return sections;
}
const get = (s: { entries: [string, string][] }, key: string) => s.entries.find(([k]) => k === key)?.[1];

const machineFile = (m: string, path: string) => readFileSync(join(out, 'machines', m, 'root', path), 'utf8');

interface Node {
  name: string;
  ns: Netns;
  ip: string;
  mac: string;
  routes: { destination: string; gateway: string }[];
  conflist: { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  dataDir: string;
}

/** A machine as a namespace: its NIC on the lab segment (MAC from the cluster file), configured by the real networkd from its rendered file. */
async function machine(lan: Netns, name: string, mac: string): Promise<Node> {
  const networkFile = join(out, 'machines', name, 'root/etc/systemd/network/10-slipway.network');
  const sections = ini(readFileSync(networkFile, 'utf8'));
  const net = sections.find((s) => s.name === 'Network')!;
  const routes = sections.filter((s) => s.name === 'Route').map((s) => ({ destination: get(s, 'Destination')!, gateway: get(s, 'Gateway')! }));
  assert.equal(get(net, 'IPForward'), 'ipv4', `${name}: IPForward`);
  assert.equal(routes.length, 4, `${name}: a route per other machine`);

  const ns = netns(`slipway-cni-${name}`);
  lan.addVeth(`lan-${name}`, 'eth0', ns);
  lan.setMaster(`lan-${name}`, 'br0');
  ns.ip('link', 'set', 'eth0', 'address', mac);

  // networkd wants udev unless /sys is read-only (its test for "in a container"); its
  // runtime directory and the host's own .network files are hidden behind tmpfs.
  const script = [
    'set -e',
    'mount --bind /sys /sys',
    'mount -o remount,bind,ro /sys',
    'mount -t tmpfs tmpfs /run/systemd',
    'mkdir -p /run/systemd/network /run/systemd/netif',
    'chown systemd-network:systemd-network /run/systemd/netif',
    'mount -t tmpfs tmpfs /etc/systemd/network',
    'cp "$1" /etc/systemd/network/10-slipway.network',
    `exec ${NETWORKD}`,
  ].join('\n');
  const daemon = ns.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', networkFile], { env: { ...process.env, SYSTEMD_LOG_TARGET: 'console' } });
  let log = '';
  daemon.stdout?.setEncoding('utf8').on('data', (d: string) => (log += d));
  daemon.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));

  const applied = () => ns.ip('-4', 'route', 'show', 'proto', 'static');
  try {
    await ns.waitFor(`${name}: networkd to apply ${routes.length} routes`, () => routes.every((r) => applied().includes(`${r.destination} via ${r.gateway} dev eth0`)), 20_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nroutes: ${applied()}\nnetworkd:\n${log.split('\n').slice(-30).join('\n')}`);
  }
  const address = get(net, 'Address')!;
  assert.match(ns.ip('-4', 'addr', 'show', 'dev', 'eth0'), new RegExp(`inet ${address.replace(/\./g, '\\.')} `), `${name}: networkd set ${address}`);
  assert.match(ns.ip('-4', 'route', 'show', 'default'), new RegExp(`default via ${ROUTER.replace(/\./g, '\\.')} dev eth0`));
  const fwd = await ns.exec('cat', ['/proc/sys/net/ipv4/ip_forward']);
  assert.equal(fwd.stdout.trim(), '1', `${name}: IPForward=ipv4 turned forwarding on`);

  // The rendered masquerade unit, run as systemd would: ExecStartPre (failure ignored: "-"), then ExecStart.
  const unit = machineFile(name, '/etc/systemd/system/slipway-pod-masquerade.service');
  for (const [, key, ignore, cmd] of unit.matchAll(/^(ExecStartPre|ExecStart)=(-?)(.+)$/gm)) {
    const [bin, ...args] = cmd!.split(/\s+/);
    const r = await ns.exec(bin!, args);
    if (!ignore) assert.equal(r.code, 0, `${name}: ${key}=${cmd}: ${r.out}`);
  }

  const conflist = JSON.parse(machineFile(name, '/etc/cni/net.d/10-slipway-bridge.conflist')) as Node['conflist'];
  return { name, ns, ip: address.split('/')[0]!, mac, routes, conflist, dataDir: mkdtempSync(join(work, `cni-${name}-`)) };
}

/**
 * Run the conflist's plugins for one container as a CNI runtime does (spec 0.4.0): ADD in
 * order, each given the previous result; DEL in reverse. The plugins run in the node's
 * namespace and enter the pod's by CNI_NETNS.
 */
async function cni(node: Node, command: 'ADD' | 'DEL', pod: Netns, id: string, runtime: Record<string, unknown>, prev?: unknown): Promise<Record<string, unknown>> {
  const { cniVersion, name, plugins } = node.conflist;
  const order = command === 'ADD' ? plugins : [...plugins].reverse();
  let result = prev as Record<string, unknown> | undefined;
  for (const plugin of order) {
    const caps = (plugin.capabilities ?? {}) as Record<string, boolean>;
    const runtimeConfig = Object.fromEntries(Object.entries(runtime).filter(([k]) => caps[k]));
    const conf: Record<string, unknown> = { ...plugin, name, cniVersion };
    // host-local's leases go to a temporary directory instead of the host's /var/lib/cni
    if (plugin.ipam) conf.ipam = { ...(plugin.ipam as object), dataDir: node.dataDir };
    if (Object.keys(runtimeConfig).length) conf.runtimeConfig = runtimeConfig;
    if (result) conf.prevResult = result;
    const env = {
      PATH: `${process.env.PATH}:/usr/sbin:/sbin`,
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: `/var/run/netns/${pod.name}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH,
    };
    const r = await node.ns.exec(join(CNI_PATH, plugin.type as string), [], { input: JSON.stringify(conf), env });
    assert.equal(r.code, 0, `${node.name}: ${plugin.type} ${command}: ${r.out}`);
    if (command === 'ADD') result = JSON.parse(r.stdout) as Record<string, unknown>;
  }
  return result ?? {};
}

/** A TCP server that answers each connection with the address it sees the client at. */
function whoami(ns: Netns, host: string, port: number) {
  const code = `require('net').createServer((s) => s.end(s.remoteAddress)).listen(${port}, '${host}', () => console.log('ready'))`;
  const child = ns.spawn(process.execPath, ['-e', code]);
  let outText = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (outText += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (outText += d));
  return ns.waitFor(`whoami on ${host}:${port}`, () => outText.includes('ready'), 10_000);
}

/** Connect from `ns` to host:port; resolves to what the server said (the client address it saw). */
async function ask(ns: Netns, host: string, port: number): Promise<string> {
  const code = `const s = require('net').connect(${port}, '${host}'); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => console.log(d)); s.on('error', (e) => { console.error(e.message); process.exit(1); }); s.setTimeout(5000, () => { console.error('timeout'); process.exit(1); });`;
  const r = await ns.exec(process.execPath, ['-e', code], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, `${host}:${port}: ${r.out}`);
  return r.stdout.trim();
}

test('two machines with cni: bridge: pods get their slices and reach each other by pod IP through the rendered routes', async (t) => {
  for (const need of [join(CNI_PATH, 'bridge'), join(CNI_PATH, 'host-local'), join(CNI_PATH, 'portmap'), NETWORKD, '/usr/sbin/iptables', '/usr/bin/busybox'])
    if (!existsSync(need)) return t.skip(`${need} is missing (bash .ci/run installs it)`);

  const lan = netns('slipway-cni-lan');
  lan.addBridge('br0');
  lan.addAddress('br0', `${ROUTER}/24`);
  const a = await machine(lan, 'cp1', '52:54:00:20:30:11');
  const b = await machine(lan, 'w1', '52:54:00:20:30:21');

  const podA = netns('slipway-cni-pod');
  const podB = netns('slipway-cni-pod');
  const addA = await cni(a, 'ADD', podA, 'pod-a', {});
  const addB = await cni(b, 'ADD', podB, 'pod-b', { portMappings: [{ hostPort: HOST_PORT, containerPort: POD_PORT, protocol: 'tcp' }] });
  const ipOf = (r: Record<string, unknown>) => ((r.ips as { address: string; gateway: string }[])[0]!);
  const ipA = ipOf(addA).address.split('/')[0]!;
  const ipB = ipOf(addB).address.split('/')[0]!;
  // cp1 is the file's first machine, w1 its fourth: /24 slices 0 and 3 of 10.244.0.0/16.
  assert.equal(ipOf(addA).address, '10.244.0.2/24');
  assert.equal(ipOf(addA).gateway, '10.244.0.1');
  assert.equal(ipOf(addB).address, '10.244.3.2/24');
  assert.match(podA.ip('-4', 'route', 'show', 'default'), /default via 10\.244\.0\.1 dev eth0/);
  assert.match(a.ns.ip('-4', 'addr', 'show', 'dev', 'cni0'), /inet 10\.244\.0\.1\/24 /);

  // The routes on each machine are the ones its networkd file names, to the other's slice.
  assert.ok(a.routes.some((r) => r.destination === '10.244.3.0/24' && r.gateway === b.ip));
  assert.ok(b.routes.some((r) => r.destination === '10.244.0.0/24' && r.gateway === a.ip));

  const ping = await podA.exec('busybox', ['ping', '-c', '2', '-W', '2', ipB], { timeoutMs: 15_000 });
  assert.equal(ping.code, 0, `pod on cp1 pings the pod on w1 (${ipB}): ${ping.out}`);
  const back = await podB.exec('busybox', ['ping', '-c', '1', '-W', '2', ipA], { timeoutMs: 15_000 });
  assert.equal(back.code, 0, `and back: ${back.out}`);

  await whoami(podB, '0.0.0.0', POD_PORT);
  await whoami(lan, ROUTER, ROUTER_PORT);
  assert.equal(await ask(podA, ipB, POD_PORT), ipA, 'pod to pod across machines keeps the pod address (no NAT)');
  assert.equal(await ask(podA, ROUTER, ROUTER_PORT), a.ip, 'leaving the pod network, traffic is masqueraded to the machine address');
  assert.equal(await ask(podA, b.ip, HOST_PORT), a.ip, 'portmap: w1\'s hostPort reaches its pod');

  // DEL, in reverse plugin order with the ADD result: the pod's interface and its lease go.
  await cni(b, 'DEL', podB, 'pod-b', { portMappings: [{ hostPort: HOST_PORT, containerPort: POD_PORT, protocol: 'tcp' }] }, addB);
  await cni(a, 'DEL', podA, 'pod-a', {}, addA);
  for (const [pod, node, ip] of [[podA, a, ipA], [podB, b, ipB]] as const) {
    assert.doesNotMatch(pod.ip('link', 'show'), /eth0/, `${node.name}: pod interface removed`);
    const leases = readdirSync(join(node.dataDir, node.conflist.name));
    assert.ok(!leases.includes(ip), `${node.name}: lease ${ip} released (${leases.join(', ')})`);
  }
  const nat = await b.ns.exec('iptables', ['-t', 'nat', '-S']);
  assert.doesNotMatch(nat.stdout, new RegExp(`--dport ${HOST_PORT}\\b`), 'portmap DEL removed the hostPort rule');
  assert.match(nat.stdout, /-A POSTROUTING -s 10\.244\.0\.0\/16 ! -d 10\.244\.0\.0\/16 -j MASQUERADE/);
});
