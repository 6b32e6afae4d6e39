// `slipway etcd ...` and `slipway certs ...`: day-2 operations on a running cluster from
// the provisioner, with the credentials of the state directory. Thin: flags, the core
// in src/day2/, printing, exit codes (0 ok, 1 failure or something due, 2 usage).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Spec } from '../spec/types.ts';

export class Day2Usage extends Error {}

export interface Day2Io {
  out: (s: string) => void;
  err: (s: string) => void;
  /** reads and checks a cluster file, printing its problems; undefined when invalid */
  load: (file: string) => Promise<Spec | undefined>;
  stateDirFor: (file: string, state: unknown) => string;
  /** `slipway apply` with these arguments (main.ts's), for certs renew --yes */
  apply?: (argv: string[]) => Promise<number>;
}

function flags<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, positionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: positionals, strict: true as const });
  } catch (e) {
    throw new Day2Usage((e as Error).message);
  }
}

function need(v: unknown, flag: string): string {
  if (typeof v !== 'string' || v === '') throw new Day2Usage(`missing ${flag}`);
  return v;
}

const hex = (n: number) => n.toString(16).padStart(8, '0');

export async function etcdCommand(argv: string[], io: Day2Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'snapshot') {
    const { values: a } = flags(rest, { file: { type: 'string', short: 'f' }, out: { type: 'string', short: 'o' }, state: { type: 'string' } });
    const file = need(a.file, '-f FILE');
    const out = resolve(need(a.out, '-o FILE.db'));
    const spec = await io.load(file);
    if (!spec) return 1;
    const { etcdClientTls, memberEndpoints, takeSnapshot } = await import('../day2/etcd.ts');
    const tls = await etcdClientTls(io.stateDirFor(file, a.state));
    const t0 = Date.now();
    const r = await takeSnapshot(memberEndpoints(spec), tls, out, io.err);
    io.out(`snapshot ${r.file} from ${r.member} (${r.url}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    io.out(`  revision ${r.revision}, ${r.totalKey} keys, hash ${hex(r.hash)} (etcdctl snapshot status), ${r.bytes} bytes`);
    io.out(`  sha256 ${r.sha256}`);
    return 0;
  }
  if (sub === 'restore') {
    const { values: a } = flags(rest, { file: { type: 'string', short: 'f' }, from: { type: 'string' }, state: { type: 'string' }, yes: { type: 'boolean' } });
    const file = need(a.file, '-f FILE');
    const from = need(a.from, '--from FILE.db');
    let data: Buffer;
    try {
      data = await readFile(from);
    } catch (e) {
      throw new Day2Usage(`cannot read ${from}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const spec = await io.load(file);
    if (!spec) return 1;
    const { snapshotStatus } = await import('../day2/snapshot-file.ts');
    const status = snapshotStatus(data, from); // refuses a file that is not a snapshot before anything else
    const stateDir = io.stateDirFor(file, a.state);
    const { etcdMembers, controlPlanes } = await import('../spec/types.ts');
    const members = etcdMembers(spec).map((m) => m.name);
    io.out(`${from}: revision ${status.revision}, ${status.totalKey} keys, hash ${hex(status.hash)}`);
    if (!a.yes) {
      io.out(`restore would replace the etcd data of ${members.join(', ')} with this snapshot (every change after it is lost; each member's current data is kept beside it) and restart the control plane of ${controlPlanes(spec).map((m) => m.name).join(', ')}: pass --yes to do it`);
      return 1;
    }
    const { machineTargets, transportFor } = await import('../apply/targets.ts');
    const { restoreEtcd } = await import('../day2/restore.ts');
    const { etcdClientTls, apiClientTls } = await import('../day2/etcd.ts');
    const targets = machineTargets(stateDir, spec);
    const remote = transportFor(stateDir);
    try {
      const t0 = Date.now();
      const r = await restoreEtcd({ spec, snapshot: data, from, remote, machines: new Map(targets.reachable.map((t) => [t.machine.name, t.ssh])), etcdTls: await etcdClientTls(stateDir), apiTls: await apiClientTls(stateDir), log: io.out });
      io.out(`restored ${from} on ${members.join(', ')} in ${((Date.now() - t0) / 1000).toFixed(1)} s: etcd at revision ${r.revision}; previous data kept in ${[...new Set(Object.values(r.kept))].join(', ')} on each member (remove it once the cluster is as it should be)`);
      return 0;
    } finally {
      remote.close();
    }
  }
  if (sub === 'status') {
    const { positionals } = flags(rest, {}, true);
    if (positionals.length !== 1) throw new Day2Usage('etcd status takes one FILE.db');
    const f = positionals[0]!;
    let data: Buffer;
    try {
      data = await readFile(f);
    } catch (e) {
      throw new Day2Usage(`cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const { snapshotStatus } = await import('../day2/snapshot-file.ts');
    const s = snapshotStatus(data, f);
    const { createHash } = await import('node:crypto');
    io.out(`${f}: revision ${s.revision}, ${s.totalKey} keys, hash ${hex(s.hash)}, ${s.totalSize} bytes${s.checksummed ? ', sha256 trailer ok' : ' (no sha256 trailer: a copy of a data directory\'s db, not a snapshot stream)'}`);
    io.out(`  sha256 ${createHash('sha256').update(data).digest('hex')}`);
    return 0;
  }
  throw new Day2Usage(sub ? `unknown etcd command "${sub}" (snapshot, restore, status)` : 'etcd needs a command: snapshot, restore, status');
}

/** What each installed machine holds, over apply's SSH transport; none (with a note) when the state has no provisioner key. */
async function heldRows(stateDir: string, spec: Spec, cas: import('../day2/certs.ts').Cas, now: number, io: Day2Io) {
  const { existsSync } = await import('node:fs');
  const { provisionerKeyPath } = await import('../secrets/store.ts');
  if (!existsSync(provisionerKeyPath(stateDir))) {
    io.err(`note: ${provisionerKeyPath(stateDir)} does not exist: the certificates the machines hold are not read (only those they serve)`);
    return [];
  }
  const { machineTargets, transportFor } = await import('../apply/targets.ts');
  const { checkHeld } = await import('../day2/certs.ts');
  const t = machineTargets(stateDir, spec);
  const machines = [
    ...t.reachable.map((r) => ({ name: r.machine.name, ssh: r.ssh })),
    ...t.unpinned.map((u) => ({ name: u.machine.name, why: `no SSH host key pinned (${u.state})` })),
    ...t.notInstalled.map((n) => ({ name: n.machine.name, why: `not installed (${n.state})` })),
  ].sort((a, b) => spec.machines.findIndex((m) => m.name === a.name) - spec.machines.findIndex((m) => m.name === b.name));
  const remote = transportFor(stateDir, { connectTimeoutS: 5 });
  try {
    return await checkHeld(machines, async (m, script) => (await remote.run(m, { script }, { timeoutMs: 30_000 })).stdout, cas, now);
  } finally {
    remote.close();
  }
}

export async function certsCommand(argv: string[], io: Day2Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'check') {
    const { values: a } = flags(rest, { file: { type: 'string', short: 'f' }, state: { type: 'string' }, window: { type: 'string' } });
    const file = need(a.file, '-f FILE');
    const window = a.window === undefined ? 30 : Number(a.window);
    if (!Number.isInteger(window) || window < 0) throw new Day2Usage('--window must be a whole number of days');
    const spec = await io.load(file);
    if (!spec) return 1;
    const stateDir = io.stateDirFor(file, a.state);
    const { checkServed, checkState, dueReason, endpoints, formatTable, readCas } = await import('../day2/certs.ts');
    const { etcdClientTls } = await import('../day2/etcd.ts');
    const cas = await readCas(stateDir);
    const tls = await etcdClientTls(stateDir);
    const now = Date.now();
    const rows = [...(await checkServed(endpoints(spec), cas, tls, now)), ...(await heldRows(stateDir, spec, cas, now, io)), ...(await checkState(stateDir, spec, cas, now))];
    io.out(formatTable(rows, window));
    const bad = rows.filter((r) => dueReason(r, window));
    if (bad.length) {
      io.out(`${bad.length} of ${rows.length} certificates need attention (renewal window ${window} days): slipway certs renew -f ${file} --all, then deliver them`);
      return 1;
    }
    io.out(`all ${rows.length} certificates have more than ${window} days left`);
    return 0;
  }
  if (sub === 'renew') {
    const { values: a, positionals: ids } = flags(rest, { file: { type: 'string', short: 'f' }, state: { type: 'string' }, all: { type: 'boolean' }, yes: { type: 'boolean' }, assets: { type: 'string' } }, true);
    const file = need(a.file, '-f FILE');
    if (!a.all && !ids.length) throw new Day2Usage('certs renew needs certificate ids or --all');
    if (a.all && ids.length) throw new Day2Usage('certs renew takes ids or --all, not both');
    if (a.assets && !a.yes) throw new Day2Usage('--assets is for the delivery: it goes with --yes');
    const spec = await io.load(file);
    if (!spec) return 1;
    const stateDir = io.stateDirFor(file, a.state);
    const { renewCertificates } = await import('../day2/renew.ts');
    const r = await renewCertificates(stateDir, spec, a.all ? 'all' : ids, io.err);
    for (const c of r.renewed) io.out(`renewed ${c.id}: not after ${c.notAfter.toISOString()} (was ${c.before.toISOString()})`);
    io.out(`${r.renewed.length} leaf certificates re-issued in ${r.pki}; the CAs are unchanged.`);
    const deliver = ['apply', '-f', file, '--state', stateDir, ...(a.assets ? ['--assets', a.assets] : [])];
    if (!a.yes || !io.apply) {
      io.out(`Not delivered yet: the machines keep the old certificates until they get the new files: slipway ${deliver.join(' ')} --yes`);
      return 0;
    }
    // apply's own rolling order: control-plane/etcd machines one at a time, each healthy before the next
    io.out('delivering with apply:');
    return io.apply([...deliver.slice(1), '--yes']);
  }
  throw new Day2Usage(sub ? `unknown certs command "${sub}" (check, renew)` : 'certs needs a command: check, renew');
}
