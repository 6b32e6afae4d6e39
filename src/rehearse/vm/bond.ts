// The `bond-failover` check (issue 20): a machine whose node traffic rides an
// active-backup bond keeps its node address and its links configured when the active
// member's wire is cut (QEMU's monitor: `set_link NETDEV off`), and the bond makes the
// next member active. Read inside the machine over its serial console: systemd-networkd's
// own view (networkctl) and the kernel's (/proc/net/bonding, ip addr). The wire is put back
// afterwards, so the machine is as it was for whatever runs next.
//
// test/network.qemu.test.ts runs it on a VM of the node OS with both of cp1's member NICs;
// the VM rehearsal runs it for every machine with a bond, whose VM has a NIC for each
// member given by MAC (qemu.ts), and says not-run when one is missing.
import { nodeLink, type Link, type Machine } from '../../spec/types.ts';
import type { Outcome } from '../engine.ts';

/** What the check needs of a VM. */
export interface BondedVm {
  /** a command in the machine's root shell on its serial console; its output */
  sh(command: string, timeoutMs?: number): Promise<string>;
  /** one command to QEMU's monitor */
  monitor(cmd: string): Promise<void>;
  /** QEMU's netdev id of the VM's NIC with this MAC (lower case), if the VM has that NIC */
  netdevOf(mac: string): string | undefined;
}

export interface BondFailoverOptions {
  /** how long the bond may take to make another member active (default 30 s) */
  failoverMs?: number;
  /**
   * Watch the wire: called before the cut with the active member's MAC and after it with
   * the new one's; returns what was seen there (say, tagged frames from the node link), or
   * throws. Its lines go into the detail.
   */
  wire?: (memberMac: string, when: 'before' | 'after') => Promise<string>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isMac = (s: string) => /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(s);

/** The bond under the node link (the node link itself, or the link its VLAN is on), else the first bond. */
export function nodeBond(m: Machine): Link | undefined {
  const bonds = (m.links ?? []).filter((l) => l.kind === 'bond');
  const node = nodeLink(m);
  const under = node && (node.kind === 'bond' ? node : bonds.find((b) => b.name === node.on));
  return under ?? bonds[0];
}

interface Slave {
  nic: string;
  mac: string;
  up: boolean;
}
function bondingState(raw: string): { mode: string; primary?: string; active?: string; miimon?: number; slaves: Slave[] } {
  const text = raw.replace(/\r/g, '');
  const slaves = [...text.matchAll(/Slave Interface: (\S+)\nMII Status: (\S+)[\s\S]*?Permanent HW addr: (\S+)/g)].map((x) => ({ nic: x[1]!, up: x[2] === 'up', mac: x[3]!.toLowerCase() }));
  return {
    mode: /Bonding Mode: (.*)/.exec(text)?.[1]?.trim() ?? '?',
    primary: /Primary Slave: (\S+)/.exec(text)?.[1],
    active: /Currently Active Slave: (\S+)/.exec(text)?.[1],
    miimon: Number(/MII Polling Interval \(ms\): (\d+)/.exec(text)?.[1] ?? NaN),
    slaves,
  };
}

/** Links networkd says are configured (networkctl list: IDX LINK TYPE OPERATIONAL SETUP). */
async function configured(vm: BondedVm): Promise<Map<string, string>> {
  const out = (await vm.sh('networkctl list --no-legend --no-pager')).replace(/\r/g, '');
  return new Map(out.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 5).map((f) => [f[1]!, f[4]!]));
}

export async function bondFailover(vm: BondedVm, m: Machine, o: BondFailoverOptions = {}): Promise<Outcome> {
  const bond = nodeBond(m);
  if (!bond) return { result: 'not-run', detail: `${m.name} has no bond` };
  if ((bond.mode ?? 'active-backup') !== 'active-backup') return { result: 'not-run', detail: `${m.name}'s ${bond.name} is ${bond.mode}: only active-backup fails over by itself (802.3ad and balance-xor need the switch)` };
  const members = bond.members ?? [];
  if (members.length < 2) return { result: 'not-run', detail: `${m.name}'s ${bond.name} has ${members.length} member: nothing to fail over to` };
  const byName = members.filter((x) => !isMac(x));
  if (byName.length) return { result: 'not-run', detail: `${m.name}'s ${bond.name} names members by kernel name (${byName.join(', ')}): the VM's NICs are known by MAC` };
  const absent = members.filter((mac) => !vm.netdevOf(mac));
  if (absent.length) return { result: 'not-run', detail: `${m.name}'s VM has no NIC with ${absent.join(', ')} (a member of ${bond.name}): a VM with every member NIC is needed to cut one` };
  const node = nodeLink(m)!;
  const address = `${m.ip}/${m.prefix}`;
  const fail = (why: string): Outcome => ({ result: 'failed', detail: `${m.name}: ${why}` });

  // networkd built the links: the bond, the node link (and any VLAN on the bond) configured
  const mine = (m.links ?? []).filter((l) => l.name === bond.name || l.on === bond.name).map((l) => l.name);
  let setup = new Map<string, string>();
  for (let i = 0; i < 60; i++) {
    setup = await configured(vm);
    if (mine.every((n) => setup.get(n) === 'configured')) break;
    await sleep(2_000);
  }
  const notConfigured = mine.filter((n) => setup.get(n) !== 'configured');
  if (notConfigured.length) return fail(`networkd has not configured ${notConfigured.map((n) => `${n} (${setup.get(n) ?? 'absent'})`).join(', ')}`);

  const before = bondingState(await vm.sh(`cat /proc/net/bonding/${bond.name}`));
  const nicOf = new Map(before.slaves.map((s) => [s.mac, s.nic]));
  const missing = members.filter((mac) => !nicOf.has(mac));
  if (missing.length) return fail(`${bond.name}'s members per the kernel are ${before.slaves.map((s) => `${s.nic} (${s.mac})`).join(', ') || 'none'}; missing ${missing.join(', ')}`);
  if (!/active-backup/.test(before.mode)) return fail(`${bond.name} is "${before.mode}", not active-backup`);
  const [first, second] = [members[0]!, members[1]!];
  if (before.active !== nicOf.get(first)) return fail(`${bond.name}'s active member is ${before.active}, not the first member ${nicOf.get(first)} (${first})`);
  if (!before.slaves.every((s) => s.up)) return fail(`${bond.name}'s members are not all up: ${before.slaves.map((s) => `${s.nic} ${s.up ? 'up' : 'down'}`).join(', ')}`);
  if (!(await vm.sh(`ip -4 addr show dev ${node.name}`)).includes(`inet ${address} `)) return fail(`${node.name} does not hold ${address}`);
  // the rendered MACAddress=: the bond answers ARP with its first member's MAC, one the file names
  const bondMac = (await vm.sh(`cat /sys/class/net/${bond.name}/address`)).trim().toLowerCase();
  if (bondMac !== first.toLowerCase()) return fail(`${bond.name}'s MAC is ${bondMac || 'unreadable'}, not its first member's (${first})`);
  const seen: string[] = [];
  if (o.wire) seen.push(`before: ${await o.wire(first, 'before')}`);

  // the cut: the active member's wire
  const netdev = vm.netdevOf(first)!;
  await vm.monitor(`set_link ${netdev} off`);
  const t0 = Date.now();
  try {
    let after = before;
    const deadline = t0 + (o.failoverMs ?? 30_000);
    while (Date.now() < deadline) {
      after = bondingState(await vm.sh(`cat /proc/net/bonding/${bond.name}`));
      if (after.active === nicOf.get(second)) break;
      await sleep(1_000);
    }
    const took = ((Date.now() - t0) / 1000).toFixed(1);
    if (after.active !== nicOf.get(second)) return fail(`after ${netdev} (${first}) was cut the active member is ${after.active ?? 'none'}, not ${nicOf.get(second)} (${second})`);
    if (after.slaves.find((s) => s.mac === first)?.up) return fail(`the bond still sees ${nicOf.get(first)} up after its wire was cut`);
    if (!(await vm.sh(`ip -4 addr show dev ${node.name}`)).includes(`inet ${address} `)) return fail(`${node.name} lost ${address} after the cut`);
    const still = await configured(vm);
    const lost = mine.filter((n) => still.get(n) !== 'configured');
    if (lost.length) return fail(`after the cut networkd says ${lost.map((n) => `${n} ${still.get(n) ?? 'absent'}`).join(', ')}`);
    if (o.wire) seen.push(`after: ${await o.wire(second, 'after')}`);
    return {
      result: 'ok',
      detail: `${m.name}: ${bond.name} (active-backup, MII every ${before.miimon} ms, its MAC the first member's) on ${nicOf.get(first)} (${first}); its wire cut (${netdev} off): ${nicOf.get(second)} (${second}) active within ${took} s, ${node.name} kept ${address}, ${mine.join(', ')} still configured${seen.length ? `; on the wire ${seen.join('; ')}` : ''}; wire put back`,
    };
  } finally {
    await vm.monitor(`set_link ${netdev} on`).catch(() => {});
  }
}
