// etcd membership and the rules that keep its quorum (etcd's runtime-reconfiguration
// guide: one change at a time, never below a majority of healthy members). The rules are
// pure (membershipChange, membershipStep); planMembership asks the running cluster who is
// a member and how healthy each is (etcd-members.ts), and addEtcdMember/removeEtcdMember
// do the change: a new member is recorded in the state (so its render starts it with
// --initial-cluster-state=existing) and `member add`ed; a leaving one is drained, its Node
// deleted, `member remove`d and its units stopped, before the others get their new lists.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { forgetGiven } from './nodes.ts';
import { loadGiven } from '../render/given.ts';
import { readEtcdJoins, writeEtcdJoins } from '../secrets/etcd-joins.ts';
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT } from '../plan/phases/etcd.ts';
import { etcdMembers, type Spec } from '../spec/types.ts';
import { addMember, listMembers, memberHealthy, removeMember, type EtcdClientTls, type EtcdMember } from './etcd-members.ts';
import type { SshMachine, SshTransport } from './ssh.ts';
import type { Target, Targets } from './targets.ts';

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

export type MembershipStep =
  | { kind: 'none'; forget: string[] }
  | { kind: 'add'; name: string; peerURL: string; initialCluster: string; members: string[] }
  | { kind: 'remove'; name: string; id: string; ip: string; members: string[] }
  | { kind: 'refused'; rule: string; message: string };

export const peerURL = (ip: string): string => `https://${ip}:${ETCD_PEER_PORT}`;
export const clientURL = (ip: string): string => `https://${ip}:${ETCD_CLIENT_PORT}`;
const hostOf = (url: string): string => new URL(url).hostname.replace(/^\[|\]$/g, '');

/** A member as the file knows it: its own name once started, else the machine with its peer URL. */
function memberName(m: EtcdMember, spec: Spec): string {
  if (m.name) return m.name;
  const ip = m.peerURLs[0] ? hostOf(m.peerURLs[0]) : '';
  return spec.machines.find((x) => x.ip === ip)?.name ?? m.peerURLs[0] ?? `member ${m.id}`;
}

/**
 * The step that turns the running cluster's `members` (with each one's health) into the
 * file's etcd members, or why not (pure). `installed`: machines already installed, which
 * cannot join (their etcd bootstrapped a cluster of its own: reprovision it after the add).
 */
export function membershipStep(spec: Spec, members: (EtcdMember & { healthy: boolean })[], installed: Set<string>): MembershipStep {
  // in the file's order (etcd lists them by id): the recorded initial cluster reads as the file does
  const rank = (n: string) => (spec.machines.findIndex((x) => x.name === n) + spec.machines.length + 1) % (spec.machines.length + 1);
  const named = members.map((m) => ({ ...m, name: memberName(m, spec) })).sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : 1));
  const desired = etcdMembers(spec);
  const change = membershipChange(named, desired.map((m) => m.name));
  const names = named.map((m) => m.name);
  if (change.kind === 'refused') return change;
  if (change.kind === 'none') return { kind: 'none', forget: [] };
  if (change.kind === 'add') {
    const machine = desired.find((m) => m.name === change.name)!;
    if (installed.has(machine.name))
      return { kind: 'refused', rule: 'join-before-install', message: `${machine.name} is already installed, so its etcd started a cluster of its own: apply adds a member before its machine is provisioned; reprovision ${machine.name} (\`slipway provision ${machine.name}\`) and run apply before it boots again` };
    const url = peerURL(machine.ip);
    const taken = named.find((m) => m.peerURLs.includes(url));
    if (taken) return { kind: 'refused', rule: 'one-member-per-address', message: `${url} is already the peer URL of etcd member ${taken.name} (${taken.id})` };
    const initialCluster = [...named.map((m) => `${m.name}=${m.peerURLs[0]}`), `${machine.name}=${url}`].join(',');
    return { kind: 'add', name: machine.name, peerURL: url, initialCluster, members: names };
  }
  const gone = named.find((m) => m.name === change.name)!;
  return { kind: 'remove', name: gone.name, id: gone.id, ip: gone.peerURLs[0] ? hostOf(gone.peerURLs[0]) : '', members: names };
}

export interface MembershipInputs {
  stateDir: string;
  spec: Spec;
  targets: Targets;
  tls: () => Promise<EtcdClientTls>;
  /** a member's health (its /health over TLS); tests may pass their own probe of the real member */
  healthy?: (clientURL: string, tls: EtcdClientTls) => Promise<boolean>;
}

/**
 * What apply must do to etcd's members for this file. Nothing to ask when the machines
 * given an etcd member are the file's etcd members; otherwise the running cluster is asked
 * (member list and each member's /health, over TLS from the provisioner).
 */
export async function planMembership(i: MembershipInputs): Promise<MembershipStep> {
  const recorded = await recordedMembers(i.stateDir);
  if (!recorded.length) return { kind: 'none', forget: [] }; // nothing installed yet: the first install makes the cluster
  const wanted = etcdMembers(i.spec).map((m) => m.name);
  if (recorded.length === wanted.length && recorded.every((n) => wanted.includes(n))) return { kind: 'none', forget: [] };
  // two edits at once are refused before anything is asked
  const joins = await readEtcdJoins(i.stateDir);
  const known = [...new Set([...recorded, ...Object.keys(joins).filter((n) => wanted.includes(n))])];
  const early = membershipChange(known.map((name) => ({ name, healthy: true })), wanted);
  if (early.kind === 'refused' && early.rule === 'one-change-at-a-time') return early;
  const tls = await i.tls();
  const urls = etcdMembers(i.spec).filter((m) => recorded.includes(m.name)).map((m) => clientURL(m.ip));
  let members: EtcdMember[];
  try {
    members = await listMembers(urls, tls);
  } catch (e) {
    return { kind: 'refused', rule: 'members-known', message: `the file changes etcd's members, but the running cluster's member list could not be read (${(e as Error).message}): apply changes members only when it knows them` };
  }
  const probe = i.healthy ?? ((u, t) => memberHealthy(u, t));
  const withHealth = await Promise.all(members.map(async (m) => ({ ...m, healthy: m.clientURLs[0] ? await probe(m.clientURLs[0], tls) : false })));
  const installed = new Set([...i.targets.reachable, ...i.targets.unpinned].map((t) => t.machine.name));
  const step = membershipStep(i.spec, withHealth, installed);
  if (step.kind !== 'none') return step;
  // a removal that stopped after `member remove`: its record goes now
  const names = new Set(withHealth.map((m) => memberName(m, i.spec)));
  return { kind: 'none', forget: recorded.filter((n) => !names.has(n) && !wanted.includes(n)) };
}

/** The lines a dry run (and the run) prints for the etcd step. */
export function describeMembership(step: MembershipStep, via?: string): string[] {
  if (step.kind === 'add')
    return [
      `etcd: add member ${step.name} (${step.peerURL}) to ${step.members.join(', ')}, after the others are delivered (before ${step.name} is provisioned)`,
      `etcd: ${step.name} is recorded as joining: it starts with --initial-cluster-state=existing --initial-cluster=${step.initialCluster}`,
    ];
  if (step.kind === 'remove')
    return [
      `etcd: remove member ${step.name} first: drain it and delete its Node (kubectl on ${via ?? 'a control-plane machine'}), \`member remove\` ${step.id}, stop its units; then the others get their new lists`,
    ];
  if (step.kind === 'none' && step.forget.length) return [`etcd: ${step.forget.join(', ')} no longer a member: its record is forgotten`];
  return [];
}

/** Records the join (so serve renders the machine with existing state), unless the run is only shown. */
export async function recordJoin(stateDir: string, step: Extract<MembershipStep, { kind: 'add' }>): Promise<void> {
  const joins = await readEtcdJoins(stateDir);
  await writeEtcdJoins(stateDir, { ...joins, [step.name]: step.initialCluster });
}

/** `member add` (once: a member with its peer URL already there is kept). */
export async function addEtcdMember(urls: string[], tls: EtcdClientTls, step: Extract<MembershipStep, { kind: 'add' }>, out: (l: string) => void): Promise<void> {
  const now = await listMembers(urls, tls);
  const there = now.find((m) => m.peerURLs.includes(step.peerURL));
  if (there) {
    out(`etcd: ${step.name} is already a member (${there.id})`);
    return;
  }
  const m = await addMember(urls, tls, step.peerURL);
  out(`etcd: member ${step.name} added (${m.id}); until it runs etcd has ${now.length + 1} members with ${now.length} running and tolerates ${Math.max(0, now.length - quorum(now.length + 1))} failure(s): provision ${step.name} now`);
}

const KUBECTL = ['/opt/bin/kubectl', '--kubeconfig', '/etc/kubernetes/admin.conf'];
/** The units a control-plane/etcd machine runs, stopped once its member is gone (the VIP moves off it with keepalived). */
export const LEAVING_UNITS = ['keepalived.service', 'haproxy.service', 'kubelet.service', 'kube-proxy.service', 'kube-scheduler.service', 'kube-controller-manager.service', 'kube-apiserver.service', 'etcd.service'];

export interface RemoveIo {
  stateDir: string;
  /** how via and leaving are reached; none: only etcd (over TLS) and the state are changed */
  ssh?: SshTransport;
  /** a control-plane machine that stays, for kubectl */
  via: Target | undefined;
  /** the leaving machine over SSH (its pinned key), if it was pinned */
  leaving: SshMachine | undefined;
  urls: string[];
  tls: EtcdClientTls;
  out: (l: string) => void;
  /** drain timeout, seconds */
  drainSeconds?: number;
}

/** Drain, delete the Node, `member remove`, stop its units, forget its records. Each step is skipped when already done (a second run). */
export async function removeEtcdMember(step: Extract<MembershipStep, { kind: 'remove' }>, io: RemoveIo): Promise<void> {
  const { drainNode, deleteNode } = await import('./nodes.ts');
  const name = step.name;
  if (io.via && io.ssh) {
    const has = await io.ssh.run(io.via.ssh, [...KUBECTL, 'get', 'node', name, '--ignore-not-found', '-o', 'name'], { timeoutMs: 60_000 });
    if (has.stdout.trim()) {
      await drainNode(io.ssh, io.via, name, io.drainSeconds ?? 300, io.out);
      await deleteNode(io.ssh, io.via, name, io.out);
    } else io.out(`${name}: no Node ${name} (already deleted)`);
  } else io.out(`${name}: no reachable control-plane machine to drain it from: its Node is left (delete it with kubectl)`);
  const now = await listMembers(io.urls, io.tls);
  if (now.some((m) => m.id === step.id)) {
    await removeMember(io.urls, io.tls, step.id);
    io.out(`etcd: member ${name} (${step.id}) removed; ${now.length - 1} members`);
  } else io.out(`etcd: ${name} is no longer a member`);
  if (io.leaving && io.ssh) {
    const script = `for u in ${LEAVING_UNITS.join(' ')}; do systemctl disable --now "$u" >/dev/null 2>&1 || true; done\n`;
    try {
      await io.ssh.run(io.leaving, { script }, { timeoutMs: 120_000 });
      io.out(`${name}: stopped and disabled ${LEAVING_UNITS.join(', ')}`);
    } catch (e) {
      io.out(`${name}: its units could not be stopped (${(e as Error).message}): power it off or reprovision it before it comes back`);
    }
  } else io.out(`${name}: no pinned SSH host key: its units are not stopped here; power it off or reprovision it`);
  await forgetMember(io.stateDir, name);
}

/** Forgets what the state says of a machine that is no longer a member (its given record, its join). */
export async function forgetMember(stateDir: string, name: string): Promise<void> {
  await forgetGiven(stateDir, name);
  const joins = await readEtcdJoins(stateDir);
  if (name in joins) {
    delete joins[name];
    await writeEtcdJoins(stateDir, joins);
  }
}
