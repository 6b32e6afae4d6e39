// The lab's VLANs without 8021q (src/rehearse/lab/vlan.ts): the BPF programs built by the
// real llc from the repo's IR, loaded by the real tc, carrying real traffic between
// network namespaces this test creates, and the frames on the wire read by tcpdump -e.
//
//   - endpoints: two namespaces on VLAN 100 ping each other and every frame on the lab
//     bridge carries tag 100; a namespace on VLAN 200 and an untagged one on the same
//     bridge and subnet hear nothing of them;
//   - a port (a machine's tap): the bridge's own untagged address is reached by a
//     machine speaking untagged (its firmware) and, once the machine speaks VLAN 100 (its
//     installed system: an endpoint on its link), tagged in both directions on the port
//     while the bridge sees it untagged, and the lab's own pings to it answered tagged;
//     a machine on another VLAN is dropped; back to untagged when the machine is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Netns } from './helpers/netns.ts';
import { addVlanEndpoint, attachVlan, detachVlan, vlanObject, vlanToolsMissing } from '../src/rehearse/lab/vlan.ts';
import { answeredOnWire } from '../src/rehearse/vm/vlan.ts';

const missing = vlanToolsMissing();
const root = process.getuid?.() === 0;

/** tcpdump -e on `dev` in `ns`, started (it said "listening"); stop() gives its lines. */
async function capture(ns: Netns, dev: string, filter: string): Promise<{ stop: () => Promise<string> }> {
  const p: ChildProcess = ns.spawn('tcpdump', ['-i', dev, '-e', '-n', '-l', '-U', filter]);
  let out = '';
  let err = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await ns.waitFor(`tcpdump on ${dev}`, () => err.includes('listening on'), 10_000, 50);
  return {
    stop: async () => {
      await new Promise((r) => setTimeout(r, 300)); // the last frames' lines
      await ns.kill(p);
      return out;
    },
  };
}

const ping = (ns: Netns, to: string, count = 2) => ns.exec('/bin/busybox', ['ping', '-c', String(count), '-W', '1', to], { timeoutMs: 15_000 });

test('VLAN endpoints: two namespaces on VLAN 100 talk through the lab bridge tagged; VLAN 200 and untagged neighbours hear nothing', { skip: !root ? 'needs root (network namespaces)' : missing ? `needs ${missing}` : false, timeout: 60_000 }, async (t) => {
  const hub = Netns.create('slipway-vlan');
  const names = ['a', 'b', 'c', 'd'];
  const ns = names.map((n) => Netns.create(`slipway-vlan${n}`));
  t.after(async () => {
    for (const n of ns) await n.close();
    await hub.close();
  });
  hub.addBridge('br0');
  addVlanEndpoint(ns[0]!, { name: 'v100', port: 'pa', vid: 100, bridge: 'br0', bridgeNs: hub, address: '10.9.0.1/24' });
  addVlanEndpoint(ns[1]!, { name: 'v100', port: 'pb', vid: 100, bridge: 'br0', bridgeNs: hub, address: '10.9.0.2/24' });
  addVlanEndpoint(ns[2]!, { name: 'v200', port: 'pc', vid: 200, bridge: 'br0', bridgeNs: hub, address: '10.9.0.3/24' });
  hub.addVeth('plainp', 'plain', ns[3]);
  hub.setMaster('plainp', 'br0');
  ns[3]!.addAddress('plain', '10.9.0.4/24');

  const wire = await capture(hub, 'br0', 'icmp or arp');
  const ok = await ping(ns[0]!, '10.9.0.2');
  assert.equal(ok.code, 0, ok.out);
  assert.match(ok.out, /2 packets received/);
  const frames = (await wire.stop()).split('\n').filter((l) => /ICMP echo|ARP/.test(l));
  assert.ok(frames.some((l) => /vlan 100, .*10\.9\.0\.1 > 10\.9\.0\.2: ICMP echo request/.test(l)), frames.join('\n'));
  assert.ok(frames.some((l) => /vlan 100, .*10\.9\.0\.2 > 10\.9\.0\.1: ICMP echo reply/.test(l)), frames.join('\n'));
  // every frame of theirs on the bridge is tagged 100: none untagged, none in VLAN 200
  for (const l of frames) assert.match(l, /ethertype 802\.1Q \(0x8100\), length \d+: vlan 100, /, l);

  // the same subnet on VLAN 200 and untagged: unreachable from VLAN 100, both ways
  const pairs = [[ns[0]!, '10.9.0.3'], [ns[0]!, '10.9.0.4'], [ns[2]!, '10.9.0.1'], [ns[3]!, '10.9.0.2']] as const;
  const tries = await Promise.all(pairs.map(([from, to]) => ping(from, to, 1)));
  tries.forEach((r, i) => assert.notEqual(r.code, 0, `${pairs[i]![0].name} reached ${pairs[i]![1]}: ${r.out}`));
});

test('VLAN port: a machine reaches the untagged lab untagged while it boots and on VLAN 100 once installed, the port tagging towards it as it last spoke', { skip: !root ? 'needs root (network namespaces)' : missing ? `needs ${missing}` : false, timeout: 60_000 }, async (t) => {
  const hub = Netns.create('slipway-vlan');
  const m = Netns.create('slipway-vlanm');
  t.after(async () => {
    await m.close();
    await hub.close();
  });
  hub.addBridge('br0');
  hub.addAddress('br0', '10.9.0.254/24'); // the provisioner: untagged on the lab bridge
  hub.addVeth('tapm', 'eth0', m); // the machine's switch port
  hub.setMaster('tapm', 'br0');
  attachVlan(hub, 'tapm', 100, 'port');
  m.addAddress('eth0', '10.9.0.11/24');

  const phase = async (what: string, tagged: boolean) => {
    const port = await capture(hub, 'tapm', 'icmp');
    const bridge = await capture(hub, 'br0', 'icmp');
    const r = await ping(m, '10.9.0.254');
    assert.equal(r.code, 0, `${what}: ${r.out}`);
    const onPort = (await port.stop()).split('\n').filter((l) => l.includes('ICMP echo'));
    const onBridge = (await bridge.stop()).split('\n').filter((l) => l.includes('ICMP echo'));
    assert.ok(onPort.some((l) => l.includes('echo request')) && onPort.some((l) => l.includes('echo reply')), `${what}: ${onPort.join('\n')}`);
    for (const l of onPort) assert.equal(/vlan 100, /.test(l), tagged, `${what}, on the port: ${l}`);
    // the lab segment itself is untagged either way
    assert.ok(onBridge.length >= 2, `${what}: ${onBridge.join('\n')}`);
    for (const l of onBridge) assert.doesNotMatch(l, /vlan/, `${what}, on the bridge: ${l}`);
  };
  await phase('untagged, as firmware boots', false);
  attachVlan(m, 'eth0', 100, 'endpoint'); // the installed system: its link on VLAN 100
  await phase('on VLAN 100, as the installed system', true);
  // the lab's side starting the talk (bond-failover's wire check in the VM rehearsal)
  assert.match(await answeredOnWire(hub, { tap: 'tapm', ip: '10.9.0.11', vid: 100 }), /pings to 10\.9\.0\.11 answered, tagged VLAN 100 on tapm/);
  // another tag is not the lab's: dropped at the port
  detachVlan(m, 'eth0');
  attachVlan(m, 'eth0', 200, 'endpoint');
  const other = await ping(m, '10.9.0.254', 1);
  assert.notEqual(other.code, 0, `VLAN 200 reached the lab: ${other.out}`);
  detachVlan(m, 'eth0'); // a reboot: firmware again
  await phase('untagged again, as firmware reboots', false);
});

test('VLAN objects: built once per VLAN id and source, then cached', { skip: !root ? 'needs root (the cache under /var/cache)' : missing ? `needs ${missing}` : false }, () => {
  const a = vlanObject(100);
  assert.equal(vlanObject(100), a);
  assert.notEqual(vlanObject(200), a);
  assert.throws(() => vlanObject(4095), /VLAN id 4095: must be 1\.\.4094/);
});
