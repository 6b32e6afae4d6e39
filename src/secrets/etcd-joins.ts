// Which etcd members joined a running cluster (`slipway apply` ran `member add` for them)
// instead of being part of its first bootstrap: <state>/etcd-joins.json, machine name →
// the --initial-cluster it must start with (the members at the time of its add, itself
// last). Render reads it as an input (Secrets.etcdJoins) so such a member gets
// --initial-cluster-state=existing; apply writes it before `member add` and forgets a
// machine when its member is removed. Not secret, but kept like the rest of the state: 0600.
import { join } from 'node:path';
import { readIfExists, writeFileAtomic, SECRET_MODE, removeIfExists } from './fs.ts';

/** machine name → its --initial-cluster (name=peerURL,...) */
export type EtcdJoins = Record<string, string>;

export const etcdJoinsPath = (stateDir: string): string => join(stateDir, 'etcd-joins.json');

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const CLUSTER = /^[a-z0-9-]+=https:\/\/[0-9a-fA-F.:[\]]+:\d+(,[a-z0-9-]+=https:\/\/[0-9a-fA-F.:[\]]+:\d+)*$/;

/** The record, checked; {} when there is none. A damaged file is refused, naming it. */
export async function readEtcdJoins(stateDir: string): Promise<EtcdJoins> {
  const file = etcdJoinsPath(stateDir);
  const text = await readIfExists(file);
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not JSON (${(e as Error).message}): it records which etcd members joined a running cluster; restore it from a backup of the state directory`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: not an object of machine name → initial cluster`);
  const out: EtcdJoins = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!NAME.test(k)) throw new Error(`${file}: ${JSON.stringify(k)} is not a machine name`);
    if (typeof v !== 'string' || !CLUSTER.test(v) || !v.split(',').some((e) => e.startsWith(`${k}=`)))
      throw new Error(`${file}: ${k}: ${JSON.stringify(v)} is not an initial cluster (name=https://ip:port,...) that names ${k}`);
    out[k] = v;
  }
  return out;
}

/** Writes the record atomically (0600); an empty record removes the file. */
export async function writeEtcdJoins(stateDir: string, joins: EtcdJoins): Promise<void> {
  const file = etcdJoinsPath(stateDir);
  const names = Object.keys(joins).sort();
  if (!names.length) return removeIfExists(file);
  await writeFileAtomic(file, JSON.stringify(Object.fromEntries(names.map((n) => [n, joins[n]])), null, 2) + '\n', SECRET_MODE);
}
