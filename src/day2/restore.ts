// `slipway etcd restore`: disaster recovery of the whole etcd cluster from one snapshot,
// over the provisioner's SSH transport (apply/ssh.ts), in the order etcd's and
// Kubernetes' recovery guides give:
//   1. check the file is an etcd snapshot, and every member answers over SSH and has
//      etcdctl and etcd.service (nothing changed if not);
//   2. copy the snapshot to every member and `etcdctl snapshot restore` it into a fresh
//      directory with that member's name, peer URL and the file's initial cluster (the
//      running etcd is untouched; a failure here removes what it made and stops);
//   3. stop the apiservers, controller-managers and schedulers, then etcd, everywhere;
//   4. swap the data directories by rename (the old one is kept beside it);
//   5. start every etcd together (a new cluster needs its quorum to come up), wait until
//      every member is healthy over TLS, at the snapshot's revision;
//   6. start the control plane again and wait for every apiserver's /readyz.
// Each step is a line on the log with its seconds; a failure says what was done and what
// was not, and how to go back.
import { mtlsRequest } from '../lib/mtls.ts';
import { etcdMembers, controlPlanes, type Machine, type Spec } from '../spec/types.ts';
import { etcdFlags, ETCD_CLIENT_PORT } from '../plan/phases/etcd.ts';
import { BIN } from '../plan/paths.ts';
import { apiserverPort } from '../plan/phases/control-plane.ts';
import type { SshMachine, SshTransport } from '../apply/ssh.ts';
import { snapshotStatus, type SnapshotStatus } from './snapshot-file.ts';
import type { EtcdClientTls } from './etcd.ts';

export type Remote = Pick<SshTransport, 'run' | 'putFiles'>;

export interface RestoreOptions {
  spec: Spec;
  snapshot: Buffer;
  /** the file's name, for messages */
  from: string;
  remote: Remote;
  /** where to reach each machine over SSH, by name (its pinned host key) */
  machines: Map<string, SshMachine>;
  etcdTls: EtcdClientTls;
  /** CA and client pair the apiservers accept (the state's admin) */
  apiTls: EtcdClientTls;
  log: (s: string) => void;
  /** how long etcd and the apiservers may take to come back; default 180 s */
  waitMs?: number;
  /** a name for this restore's directories; default the time */
  stamp?: string;
}

export interface RestoreResult {
  status: SnapshotStatus;
  /** per member: where its previous data directory was kept */
  kept: Record<string, string>;
  revision: number;
  steps: { step: string; seconds: number }[];
}

const CONTROL_PLANE_UNITS = ['kube-apiserver.service', 'kube-controller-manager.service', 'kube-scheduler.service'];
const STAGE = '/var/lib/slipway-restore';
/**
 * An apiserver whose etcd is gone waits out its requests before it exits (~60 s
 * measured); its state is about to be replaced anyway, so after this grace it is killed.
 */
const STOP_GRACE_S = 15;

/** Stops units, killing what has not stopped after `grace` seconds. */
export function stopScript(units: string[], grace: number): string {
  const u = units.join(' ');
  return [
    'set -e',
    `systemctl stop --no-block ${u}`,
    // "deactivating" is not "active" to is-active, so ask for each unit's state
    `left() { for x in ${u}; do case "$(systemctl show -p ActiveState --value $x)" in inactive|failed) ;; *) echo $x ;; esac; done; }`,
    `i=0; while [ $i -lt ${grace * 2} ] && [ -n "$(left)" ]; do sleep 0.5; i=$((i+1)); done`,
    `for x in $(left); do systemctl kill --signal=SIGKILL $x || true; echo "killed $x after ${grace} s" >&2; done`,
    `systemctl stop ${u}`,
  ].join('\n') + '\n';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GET (or POST) over TLS with a client certificate; the status and body (its first 4,000 bytes). */
const httpsCall = (url: string, tls: EtcdClientTls, method = 'GET', body?: string, timeoutMs = 5000) => mtlsRequest(url, tls, { method, body, timeoutMs, maxBytes: 4000 });

/** A member's /health and its current revision (maintenance status), or why not. */
async function memberState(m: Machine, tls: EtcdClientTls): Promise<{ ok: true; revision: number } | { ok: false; why: string }> {
  const base = `https://${m.ip}:${ETCD_CLIENT_PORT}`;
  try {
    const h = await httpsCall(`${base}/health`, tls);
    if (h.status !== 200 || !/"health":\s*"true"/.test(h.body)) return { ok: false, why: `health ${h.status} ${h.body.trim().slice(0, 120)}` };
    const s = await httpsCall(`${base}/v3/maintenance/status`, tls, 'POST', '{}');
    const rev = Number((JSON.parse(s.body) as { header?: { revision?: string } }).header?.revision);
    return Number.isFinite(rev) ? { ok: true, revision: rev } : { ok: false, why: `status: ${s.body.slice(0, 120)}` };
  } catch (e) {
    return { ok: false, why: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
  }
}

async function waitFor<T>(what: string, ms: number, probe: () => Promise<{ done: true; value: T } | { done: false; why: string }>): Promise<T> {
  const deadline = Date.now() + ms;
  let why = '';
  for (let i = 0; Date.now() < deadline && i < 10_000; i++) {
    const r = await probe();
    if (r.done) return r.value;
    why = r.why;
    await sleep(1000);
  }
  throw new Error(`${what}: not within ${Math.round(ms / 1000)} s (${why})`);
}

export async function restoreEtcd(o: RestoreOptions): Promise<RestoreResult> {
  const { spec, remote, log } = o;
  const waitMs = o.waitMs ?? 180_000;
  const stamp = o.stamp ?? new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  const members = etcdMembers(spec);
  const cps = controlPlanes(spec);
  if (!members.length) throw new Error('the cluster file has no machine with the etcd role');
  const steps: RestoreResult['steps'] = [];
  const done: string[] = [];
  let t = Date.now();
  const step = (name: string) => {
    const seconds = Math.round((Date.now() - t) / 100) / 10;
    steps.push({ step: name, seconds });
    done.push(name);
    log(`restore: ${name} (${seconds} s)`);
    t = Date.now();
  };
  const dataDir = etcdFlags(spec, members[0]!)['data-dir']!;
  const fresh = `${dataDir}.restore-${stamp}`;
  const kept = `${dataDir}.before-restore-${stamp}`;
  const snapFile = `${STAGE}/snapshot-${stamp}.db`;
  const at = (name: string): SshMachine => {
    const m = o.machines.get(name);
    if (!m) throw new Error(`${name}: no SSH address and pinned host key (was it installed by this provisioner?): nothing was changed`);
    return m;
  };
  const onAll = <T>(ms: Machine[], fn: (m: Machine) => Promise<T>) => Promise.all(ms.map(fn));

  // 1. the file, then every member, before anything changes
  const status = snapshotStatus(o.snapshot, o.from);
  const sshOf = new Map([...members, ...cps].map((m) => [m.name, at(m.name)]));
  const pre = await Promise.allSettled(
    [...new Set([...members, ...cps])].map((m) =>
      remote.run(sshOf.get(m.name)!, { script: `set -e\n${members.includes(m) ? `test -x ${BIN}/etcdctl || { echo "no ${BIN}/etcdctl" >&2; exit 1; }\nsystemctl cat etcd.service >/dev/null\ntest ! -e ${fresh}\n` : ''}echo ok\n` }, { timeoutMs: 30_000 }),
    ),
  );
  const unready = pre.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
  if (unready.length) throw new Error(`not every machine is ready for a restore, nothing was changed:\n  ${unready.join('\n  ')}`);
  step(`checked ${o.from} (revision ${status.revision}, ${status.totalKey} keys) and ${sshOf.size} machines over SSH`);

  // 2. restore beside the running data
  const cleanup = () =>
    onAll(members, (m) => remote.run(at(m.name), ['rm', '-rf', fresh, snapFile], { check: false, timeoutMs: 60_000 }).catch(() => undefined));
  try {
    await onAll(members, (m) => remote.putFiles(at(m.name), [{ path: snapFile, mode: 0o600, contents: o.snapshot }], { timeoutMs: 300_000 }));
    await onAll(members, (m) => {
      const f = etcdFlags(spec, m);
      return remote.run(at(m.name), ['env', 'ETCDCTL_API=3', `${BIN}/etcdctl`, 'snapshot', 'restore', snapFile, `--name=${f.name}`, `--initial-cluster=${f['initial-cluster']}`, `--initial-cluster-token=${f['initial-cluster-token']}`, `--initial-advertise-peer-urls=${f['initial-advertise-peer-urls']}`, `--data-dir=${fresh}`], { timeoutMs: 300_000 });
    });
  } catch (e) {
    await cleanup();
    throw new Error(`restoring the snapshot beside the running data failed, nothing was changed (its copies were removed): ${(e as Error).message}`);
  }
  step(`restored the snapshot into ${fresh} on ${members.map((m) => m.name).join(', ')}`);

  const fail = (e: Error): Error =>
    new Error(
      `${e.message}\ndone: ${done.join('; ')}\nnot done: the rest.\n` +
        `To go back on each member: systemctl stop etcd; if ${kept} exists, rm -rf ${dataDir} && mv ${kept} ${dataDir}; systemctl start etcd; then systemctl start ${CONTROL_PLANE_UNITS.join(' ')} on the control-plane machines.`,
    );
  try {
    // 3. nothing may write to etcd while its data is swapped
    await onAll(cps, (m) => remote.run(at(m.name), { script: stopScript(CONTROL_PLANE_UNITS, STOP_GRACE_S) }, { timeoutMs: 120_000 }));
    await onAll(members, (m) => remote.run(at(m.name), ['systemctl', 'stop', 'etcd.service'], { timeoutMs: 120_000 }));
    step(`stopped the control plane (${cps.map((m) => m.name).join(', ')}) and etcd (${members.map((m) => m.name).join(', ')})`);

    // 4. swap by rename; the previous data stays beside it
    await onAll(members, (m) => remote.run(at(m.name), { script: `set -e\nif [ -e ${dataDir} ]; then mv ${dataDir} ${kept}; fi\nmv ${fresh} ${dataDir}\nrm -f ${snapFile}\nsync\n` }, { timeoutMs: 60_000 }));
    step(`swapped the data directories (previous data kept in ${kept})`);

    // 5. all members at once, then health at the snapshot's revision
    await onAll(members, (m) => remote.run(at(m.name), ['systemctl', 'start', '--no-block', 'etcd.service'], { timeoutMs: 60_000 }));
    const revs = await waitFor('every etcd member healthy', waitMs, async () => {
      const s = await onAll(members, (m) => memberState(m, o.etcdTls));
      const bad = s.flatMap((r, i) => (r.ok ? [] : [`${members[i]!.name}: ${r.why}`]));
      return bad.length ? { done: false, why: bad.join('; ') } : { done: true, value: s.map((r) => (r.ok ? r.revision : 0)) };
    });
    const revision = Math.max(...revs);
    if (revision < status.revision) throw new Error(`etcd came back at revision ${revision}, below the snapshot's ${status.revision}`);
    step(`etcd healthy on ${members.map((m) => m.name).join(', ')} at revision ${revision} (snapshot ${status.revision})`);

    // 6. the control plane again
    await onAll(cps, (m) => remote.run(at(m.name), ['systemctl', 'start', ...CONTROL_PLANE_UNITS], { timeoutMs: 120_000 }));
    await waitFor('every apiserver ready', waitMs, async () => {
      const r = await onAll(cps, async (m) => {
        try {
          const x = await httpsCall(`https://${m.ip}:${apiserverPort(spec)}/readyz`, o.apiTls);
          return x.status === 200 ? '' : `${m.name}: /readyz ${x.status}`;
        } catch (e) {
          return `${m.name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
        }
      });
      const bad = r.filter(Boolean);
      return bad.length ? { done: false, why: bad.join('; ') } : { done: true, value: true };
    });
    step(`control plane started; /readyz ok on ${cps.map((m) => m.name).join(', ')}`);
    return { status, kept: Object.fromEntries(members.map((m) => [m.name, kept])), revision, steps };
  } catch (e) {
    throw fail(e as Error);
  }
}
