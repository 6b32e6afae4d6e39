// A machine whose node link is a VLAN (issue 20), in the VM rehearsal. It network-boots
// and installs untagged, like a rack machine on its switch port's native VLAN, and its
// installed system speaks on VLAN N from the same provisioning subnet. The lab's host
// kernel cannot terminate a VLAN, so the machine's taps become lab switch ports
// (lab/vlan.ts, role `port`): VLAN N and the untagged lab segment are one network, tagged
// towards the machine once it speaks tagged.
import type { ChildProcess } from 'node:child_process';
import { nodeLink, type Machine } from '../../spec/types.ts';
import type { Netns } from '../lab/netns.ts';

/** The VLAN id of the machine's node link, when its node link is a VLAN. */
export function nodeVlan(m: Machine): number | undefined {
  const node = nodeLink(m);
  return node?.kind === 'vlan' ? node.id : undefined;
}

/**
 * The lab pings `ip` through `tap` (a VM's NIC): every echo answered, and, with `vid`, the
 * replies on the tap tagged `vid` (tcpdump -e in the hub). What was seen, or throws.
 */
export async function answeredOnWire(hub: Netns, o: { tap: string; ip: string; vid?: number }): Promise<string> {
  const ping = () => hub.exec('/bin/busybox', ['ping', '-c', '3', '-W', '2', o.ip], { timeoutMs: 20_000 });
  const answered = (out: string) => {
    if (!/3 packets received/.test(out)) throw new Error(`the lab's pings to ${o.ip} through ${o.tap}: ${out.trim()}`);
  };
  if (!o.vid) {
    answered((await ping()).out);
    return `the lab's pings to ${o.ip} answered through ${o.tap}`;
  }
  const cap: ChildProcess = hub.spawn('tcpdump', ['-i', o.tap, '-e', '-n', '-l', '-U', `vlan ${o.vid} and icmp`]);
  let frames = '';
  let err = '';
  cap.stdout!.setEncoding('utf8').on('data', (d: string) => (frames += d));
  cap.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  let out: string;
  try {
    await hub.waitFor(`tcpdump on ${o.tap}`, () => err.includes('listening on'), 10_000, 50);
    out = (await ping()).out;
    await new Promise((r) => setTimeout(r, 300)); // tcpdump's last lines
  } finally {
    await hub.kill(cap);
  }
  answered(out);
  const replies = frames.split('\n').filter((l) => l.includes(`${o.ip} > `) && l.includes('ICMP echo reply'));
  if (!replies.length) throw new Error(`${o.ip} answered, but no echo reply tagged VLAN ${o.vid} on ${o.tap}: ${frames || err}`);
  return `the lab's pings to ${o.ip} answered, tagged VLAN ${o.vid} on ${o.tap}`;
}
