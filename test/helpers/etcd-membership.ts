// Runs apply's etcd membership code (src/apply/membership.ts) as the provisioner would,
// from inside a test's network namespace where the etcd members' addresses are reachable:
//   node etcd-membership.ts '{"op":"plan"|"add"|"remove","file":F,"state":D,"installed":[names]}'
// prints one JSON line: the step planned (and, for add/remove, done).
import { readFileSync } from 'node:fs';
import { parseClusterFile } from '../../src/spec/parse.ts';
import { addEtcdMember, clientURL, planMembership, recordJoin, removeEtcdMember } from '../../src/apply/membership.ts';
import { etcdClientTls } from '../../src/apply/etcd-members.ts';
import { hasRole } from '../../src/spec/types.ts';
import type { Targets } from '../../src/apply/targets.ts';

const req = JSON.parse(process.argv[2]!) as { op: 'plan' | 'add' | 'remove'; file: string; state: string; installed: string[] };
const { spec, problems } = parseClusterFile(readFileSync(req.file, 'utf8'), req.file);
if (!spec) throw new Error(JSON.stringify(problems));
// serve's view: which machines are installed (no SSH here: nothing is reached over it)
const targets: Targets = { reachable: [], notInstalled: [], unpinned: [] };
for (const machine of spec.machines)
  if (req.installed.includes(machine.name)) targets.reachable.push({ machine, state: 'ready', ssh: { name: machine.name, address: machine.ip, hostKey: 'ssh-ed25519 AAAA' } });
  else targets.notInstalled.push({ machine, state: 'unknown' });
const tls = () => etcdClientTls(req.state);
const step = await planMembership({ stateDir: req.state, spec, targets, tls });
const lines: string[] = [];
const urls = targets.reachable.filter((t) => hasRole(t.machine, 'etcd')).map((t) => clientURL(t.machine.ip));
if (req.op === 'add' && step.kind === 'add') {
  await recordJoin(req.state, step);
  await addEtcdMember(urls, await tls(), step, (l) => lines.push(l));
}
if (req.op === 'remove' && step.kind === 'remove') {
  // no kubectl host and no SSH to the leaving machine: the etcd part and the state's records
  await removeEtcdMember(step, { stateDir: req.state, via: undefined, leaving: undefined, urls, tls: await tls(), out: (l) => lines.push(l) });
}
process.stdout.write(JSON.stringify({ step, lines }) + '\n');
