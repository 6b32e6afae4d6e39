// The lab's bridge carries the provisioner's address. A Linux bridge left to itself takes
// the lowest MAC of its ports, so a VM's tap (or a container's veth) joining or leaving
// would move the provisioner to another MAC while the machines still hold the old one in
// their ARP caches: for up to ~30 s nothing reaches the provisioner. (This is what made
// boot.qemu's PXELINUX case fail now and then: its report got no answer while the
// concurrent cases' VMs were stopped.) Netns.addBridge sets the bridge's address, so it
// stays. Proved here with real links and a real neighbour: busybox ping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Netns } from './helpers/netns.ts';

const haveBusybox = spawnSync('busybox', ['ping', '--help'], { encoding: 'utf8' }).error === undefined;
const skip = haveBusybox ? false : 'missing busybox (Debian busybox-static)';

const macOf = (ns: Netns, dev: string) => /link\/ether (\S+)/.exec(ns.ip('link', 'show', dev))?.[1];

test('a lab bridge keeps its MAC as ports join and leave, so a neighbour keeps reaching the provisioner', { skip, timeout: 60_000 }, async () => {
  const hub = Netns.create('slipway-br');
  const host = Netns.create('slipway-brh');
  try {
    hub.addBridge('br0');
    hub.addAddress('br0', '10.20.30.2/24');
    const brMac = macOf(hub, 'br0');
    assert.match(brMac ?? '', /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/, 'a locally administered address');

    // a port with a lower MAC than any other (00:00:5e:00:53:xx, RFC 7042's documentation
    // range) is on the bridge: a VM's tap, say; a self-assigned bridge takes its MAC
    hub.ip('link', 'add', 'p1', 'address', '00:00:5e:00:53:01', 'type', 'veth', 'peer', 'name', 'p1p');
    hub.up('p1');
    hub.up('p1p');
    hub.setMaster('p1', 'br0');
    assert.equal(macOf(hub, 'br0'), brMac, 'the bridge kept its MAC when a lower one joined');

    // a machine on the bridge, which learns the provisioner's MAC
    hub.addVeth('m1', 'eth0', host);
    hub.setMaster('m1', 'br0');
    host.addAddress('eth0', '10.20.30.11/24');
    const ping = () => host.exec('busybox', ['ping', '-c', '1', '-W', '2', '10.20.30.2'], { timeoutMs: 10_000 });
    assert.equal((await ping()).code, 0, 'the machine reaches the provisioner');
    const learned = /lladdr (\S+)/.exec(host.ip('neigh', 'show', '10.20.30.2'))?.[1];
    assert.ok(learned, 'and has its MAC cached');

    // the VM is powered off: its tap leaves the bridge
    hub.ip('link', 'del', 'p1');
    const r = await ping();
    assert.equal(r.code, 0, `the machine lost the provisioner when a port left the bridge (it holds ${learned}; the bridge is now ${macOf(hub, 'br0')})\n${r.out}`);
    assert.equal(macOf(hub, 'br0'), brMac, 'the bridge kept its MAC when a port left');
  } finally {
    await host.close();
    await hub.close();
  }
});
