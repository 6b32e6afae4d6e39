// etcd membership and the rules that keep its quorum (etcd's runtime-reconfiguration
// guide: one change at a time, never below a majority of healthy members). The rules are
// pure; checkMembership reads who is a member from the state directory's records.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadGiven } from '../render/given.ts';
import { etcdMembers, type Spec } from '../spec/types.ts';
import type { Targets } from './targets.ts';

export const ETCD_UNIT = '/etc/systemd/system/etcd.service';

/** A majority of n members. */
export const quorum = (n: number): number => Math.floor(n / 2) + 1;

export interface Member {
  name: string;
  healthy: boolean;
}

export type MembershipChange =
  | { kind: 'none' }
  | { kind: 'add'; name: string }
  | { kind: 'remove'; name: string }
  | { kind: 'refused'; rule: string; message: string };

/**
 * What turning `current` into `desired` takes, or why it is refused. The rules, by name:
 *  - one-change-at-a-time: at most one member added or removed per run
 *  - keep-a-member: the last member is never removed
 *  - quorum-after-add: an added member counts toward the new size before it runs, so the
 *    healthy members must already be a majority of the new size
 *  - quorum-after-remove: the healthy members that stay must be a majority of the new size
 */
export function membershipChange(current: Member[], desired: string[]): MembershipChange {
  const names = new Set(current.map((m) => m.name));
  const want = new Set(desired);
  const add = desired.filter((n) => !names.has(n));
  const remove = current.filter((m) => !want.has(m.name)).map((m) => m.name);
  const healthy = current.filter((m) => m.healthy);
  if (add.length + remove.length === 0) return { kind: 'none' };
  if (add.length + remove.length > 1) {
    const what = [...add.map((n) => `add ${n}`), ...remove.map((n) => `remove ${n}`)].join(', ');
    return { kind: 'refused', rule: 'one-change-at-a-time', message: `the file changes etcd's members by more than one (${what}): etcd must change one member at a time, each change applied and healthy before the next; edit the file to make one change, apply, then the next` };
  }
  if (add.length) {
    const n = current.length + 1;
    if (healthy.length < quorum(n))
      return { kind: 'refused', rule: 'quorum-after-add', message: `adding ${add[0]} makes ${n} members, whose quorum is ${quorum(n)}, but only ${healthy.length} of the ${current.length} members are healthy (${healthy.map((m) => m.name).join(', ') || 'none'}): the cluster would lose quorum until ${add[0]} runs; make the members healthy first` };
    return { kind: 'add', name: add[0]! };
  }
  const gone = remove[0]!;
  if (current.length === 1) return { kind: 'refused', rule: 'keep-a-member', message: `removing ${gone} would leave etcd with no member` };
  const n = current.length - 1;
  const staying = healthy.filter((m) => m.name !== gone).length;
  if (staying < quorum(n))
    return { kind: 'refused', rule: 'quorum-after-remove', message: `removing ${gone} leaves ${n} members, whose quorum is ${quorum(n)}, but only ${staying} of them are healthy: etcd would lose quorum; make the others healthy first` };
  return { kind: 'remove', name: gone };
}

/** The machines that were given an etcd member (records in <state>/given/), by name. */
export async function recordedMembers(stateDir: string): Promise<string[]> {
  let files: string[];
  try {
    files = await readdir(join(stateDir, 'given'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: string[] = [];
  for (const f of files.filter((x) => x.endsWith('.json')).sort()) {
    const name = f.slice(0, -5);
    const g = await loadGiven(stateDir, name);
    if (g?.[ETCD_UNIT]) out.push(name);
  }
  return out;
}

/**
 * Refuses (returns why) when the file changes etcd's members: apply delivers files, and a
 * member added or removed by a file change alone would split or break etcd. The rule is
 * named; `slipway remove` handles a worker; members change one at a time with the etcd
 * steps (member add / member remove) described in docs/day2.md.
 */
export async function checkMembership(stateDir: string, spec: Spec, targets: Targets): Promise<string | undefined> {
  const current = await recordedMembers(stateDir);
  if (!current.length) return undefined; // nothing installed yet: the first install makes the cluster
  const installed = new Set([...targets.reachable, ...targets.unpinned].map((t) => t.machine.name));
  // A member's health is read when apply reaches it; here a member counts as healthy when it is installed and in the file.
  const members: Member[] = current.map((name) => ({ name, healthy: installed.has(name) }));
  const change = membershipChange(members, etcdMembers(spec).map((m) => m.name));
  if (change.kind === 'none') return undefined;
  if (change.kind === 'refused') return `${change.message} [rule ${change.rule}]`;
  return change.kind === 'add'
    ? `${change.name} is a new etcd member: it must be added with \`etcdctl member add\` before it is provisioned and rendered with --initial-cluster-state=existing, which this version of apply does not do yet (docs/day2.md: adding a control-plane machine) [rule member-add-first]`
    : `${change.name} is no longer an etcd member in the file: drain it, delete its Node and \`etcdctl member remove\` it before apply delivers the others' new member lists (docs/day2.md: removing a control-plane machine) [rule member-remove-first]`;
}
