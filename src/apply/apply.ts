// `slipway apply`: every installed machine gets what a fresh render says it should have,
// over SSH (ssh.ts), and nothing else. Per machine: the files that differ from what it was
// last given (<state>/given/<machine>.json, which serve writes when the machine fetches its
// configuration and apply after each delivery), replaced atomically; the units those files
// feed restarted or reloaded (changes.ts); then its health (its etcd member, its
// apiserver's /readyz, its node Ready) before the next machine. Control-plane and etcd
// machines go one at a time, first. The first failure stops the run: the machines after it
// are left as they are, and a second run continues, since every finished machine's record
// already says what it has.
import { createHash } from 'node:crypto';
import type { File } from '../plan/types.ts';
import { KUBELET_CLIENT_CERT, PKI, ETCD_PKI } from '../plan/paths.ts';
import type { Tree } from '../render/tree.ts';
import { type Given, givenOf, loadGiven, machineFiles, saveGiven } from '../render/given.ts';
import { apiServerURL, hasRole, type Spec } from '../spec/types.ts';
import { apiserverPort } from '../plan/phases/control-plane.ts';
import { fileChanges, installTimeNotes, isEmpty, machineActions, rolloutOrder, type FileChanges, type MachineActions } from './changes.ts';
import { SshError, shellQuote, type SshTransport, type SshMachine } from './ssh.ts';
import { BOOTSTRAP_ONLY_FLAGS } from '../plan/phases/etcd.ts';
import { ETCD_UNIT } from './membership.ts';
import type { Target, Targets } from './targets.ts';
import type { ProgressKind } from './progress.ts';

export interface MachinePlan {
  target: Target;
  /** where the comparison started: the record of what it was given, or its own files (no record yet) */
  baseline: 'record' | 'machine';
  changes: FileChanges;
  actions: MachineActions;
  next: Map<string, File>;
  /** why a changed unit is not restarted (etcd.service whose bootstrap-only flags alone changed) */
  notes?: string[];
}

export interface ApplyPlan {
  machines: MachinePlan[];
  /** left to serve: they get the current render when they boot */
  notInstalled: Targets['notInstalled'];
  /** installed without a pinned host key: never reached */
  unpinned: Targets['unpinned'];
}

/** The machine's own files as a Given, read over SSH (only the paths the render names). */
async function givenFromMachine(ssh: SshTransport, m: SshMachine, paths: string[]): Promise<Given> {
  const plain = paths.filter((p) => /^(\/[A-Za-z0-9_@%+=:,.-]+)+$/.test(p));
  const script = [
    'for p in ' + plain.join(' ') + '; do',
    '  if [ -L "$p" ]; then printf "L\\t%s\\t%s\\n" "$p" "$(readlink "$p")";',
    '  elif [ -f "$p" ]; then printf "F\\t%s\\t%s\\t%s\\n" "$p" "$(sha256sum < "$p" | cut -d" " -f1)" "$(stat -c %a:%U:%G "$p")"; fi',
    'done',
    '',
  ].join('\n');
  const r = await ssh.run(m, { script }, { timeoutMs: 60_000 });
  const given: Given = {};
  for (const line of r.stdout.split('\n')) {
    const [kind, path, a, b] = line.split('\t');
    if (!path) continue;
    if (kind === 'L') given[path] = { sha256: givenSha(''), mode: 0o777, link: a! };
    else if (kind === 'F') {
      const [mode, user, group] = b!.split(':');
      const owner = `${user}:${group}`;
      given[path] = { sha256: a!, mode: parseInt(mode!, 8), ...(owner !== 'root:root' ? { owner } : {}) };
    }
  }
  return given;
}

const givenSha = (s: string) => createHash('sha256').update(s).digest('hex');

/** An etcd unit without the flags etcd reads only when its data directory is empty. */
export const withoutBootstrapFlags = (unit: string): string =>
  unit
    .replace(/\\\n/g, ' ')
    .split(/\s+/)
    .filter((w) => !BOOTSTRAP_ONLY_FLAGS.some((f) => w.startsWith(`--${f}=`)))
    .join(' ');

/**
 * A member added or removed changes every other member's --initial-cluster, which a
 * running member ignores; restarting them one by one for it would, with a new member not
 * yet running, leave etcd without quorum while each restarts. So etcd is not restarted
 * when the machine's own etcd.service (`onMachine`, read over SSH: the record holds no
 * contents) differs from the new one only in those flags and nothing else etcd reads
 * changed (pure).
 */
export function etcdRestartAvoidable(onMachine: string | undefined, given: Given, next: Map<string, File>, changes: FileChanges): boolean {
  const unit = next.get(ETCD_UNIT);
  if (onMachine === undefined || !unit || !given[ETCD_UNIT] || !changes.put.some((f) => f.path === ETCD_UNIT)) return false;
  if (withoutBootstrapFlags(onMachine) !== withoutBootstrapFlags(unit.contents)) return false;
  // another reason to restart etcd (a certificate it reads) stands
  const others = machineActions({ put: changes.put.filter((f) => f.path !== ETCD_UNIT), remove: changes.remove }, next, Object.keys(given));
  return !others.units.some((u) => u.unit === 'etcd.service');
}

/** Drops etcd's restart when etcdRestartAvoidable says so; returns the note, if so. */
async function keepEtcdRunning(ssh: SshTransport, m: SshMachine, given: Given, next: Map<string, File>, actions: MachineActions, changes: FileChanges): Promise<string[] | undefined> {
  if (!next.has(ETCD_UNIT) || !given[ETCD_UNIT] || !actions.units.some((u) => u.unit === 'etcd.service' && u.kind === 'restart')) return undefined;
  // not readable (or the machine not reachable, which the run reports at connect): restart, the safe side
  const r = await ssh.run(m, ['cat', ETCD_UNIT], { timeoutMs: 30_000, check: false }).catch(() => undefined);
  if (!r || r.code !== 0 || !etcdRestartAvoidable(r.stdout, given, next, changes)) return undefined;
  actions.units = actions.units.filter((u) => u.unit !== 'etcd.service');
  return ['etcd.service: only its initial cluster changed (read when its data directory is empty): written, etcd not restarted'];
}

/**
 * What apply would do on each reachable machine. Machines without a record are compared
 * with their own files over SSH (read only), so even a dry run may connect.
 */
/**
 * `quiet`: path → the sha256 of the version it replaces, for a change apply carries out
 * itself (the install token's Secret, deleted with kubectl when it is retired): a machine
 * that was given exactly that version gets the new file without its unit being re-run.
 */
export async function planApply(stateDir: string, tree: Tree, targets: Targets, ssh: SshTransport, quiet: Map<string, string> = new Map()): Promise<ApplyPlan> {
  const machines: MachinePlan[] = [];
  for (const target of rolloutOrder(targets.reachable)) {
    const next = machineFiles(tree, target.machine.name);
    // links in the tree carry mode 0o777 and no contents; make the record's view of them match
    let given = await loadGiven(stateDir, target.machine.name);
    let baseline: MachinePlan['baseline'] = 'record';
    if (!given) {
      baseline = 'machine';
      given = await givenFromMachine(ssh, target.ssh, [...next.keys()]);
      for (const [p, f] of next) if (f.link && given[p]?.link === f.link) given[p] = givenOf(new Map([[p, f]]))[p]!;
    }
    const changes = fileChanges(given, next);
    const loud = changes.put.filter((f) => !(quiet.has(f.path) && given[f.path]?.sha256 === quiet.get(f.path)));
    const actions = machineActions({ put: loud, remove: changes.remove }, next, Object.keys(given));
    const notes = [...((await keepEtcdRunning(ssh, target.ssh, given, next, actions, { put: loud, remove: changes.remove })) ?? []), ...installTimeNotes(changes, target.machine.name)];
    machines.push({ target, baseline, changes, actions, next, ...(notes.length ? { notes } : {}) });
  }
  return { machines, notInstalled: targets.notInstalled, unpinned: targets.unpinned };
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** One line per action, as the dry run prints it and the run announces it. */
export function describe(p: MachinePlan, showPaths = true): string[] {
  const name = p.target.machine.name;
  if (isEmpty(p.changes)) return [`${name}: up to date`];
  const a = p.actions;
  const lines = [`${name}: ${plural(p.changes.put.length, 'file')} to write, ${plural(p.changes.remove.length, 'file')} to remove${p.baseline === 'machine' ? " (no record of what it was given: compared with the machine's own files)" : ''}`];
  if (showPaths) {
    for (const f of p.changes.put) lines.push(`${name}:   ~ ${f.path}${f.secret ? ' (secret)' : ''}`);
    for (const r of p.changes.remove) lines.push(`${name}:   - ${r}`);
  }
  if (a.stop.length) lines.push(`${name}: stop ${a.stop.join(', ')}`);
  if (a.daemonReload) lines.push(`${name}: systemctl daemon-reload`);
  for (const c of a.commands) lines.push(`${name}: ${c.argv.join(' ')} (${c.why})`);
  for (const u of a.units) lines.push(`${name}: ${u.kind} ${u.unit}`);
  for (const n of p.notes ?? []) lines.push(`${name}: ${n}`);
  if (!a.units.length && !a.commands.length) lines.push(`${name}: no unit to restart`);
  return lines;
}

/** Which units of a plan are long-running (a oneshot is done, not active, once it ran). */
function longRunning(next: Map<string, File>, unit: string): boolean {
  const f = next.get(`/etc/systemd/system/${unit}`);
  return !f || !/^Type=oneshot$/m.test(f.contents);
}

/** A shell test: the apiserver at `ip` answers /readyz with ok (asked on its machine). */
const apiserverReady = (spec: Spec, ip: string): string => `[ "$(curl -fsS -m 5 --cacert ${PKI}/ca.crt https://${ip}:${apiserverPort(spec)}/readyz 2>/dev/null)" = ok ]`;

/** The health script: loops (bounded) until every check passes; prints the last failure. */
export function healthScript(spec: Spec, p: MachinePlan, seconds: number): { script: string; checks: string[] } {
  const m = p.target.machine;
  const checks: string[] = [];
  const lines = ['why=""'];
  const active = p.actions.units.filter((u) => u.kind !== 'stop' && longRunning(p.next, u.unit)).map((u) => u.unit);
  for (const u of active) {
    checks.push(`${u} active`);
    // active, or skipped by its own Condition...= (timesyncd in a container): not failed
    lines.push(`st=$(systemctl show -p ActiveState -p ConditionResult ${shellQuote(u)} | tr '\\n' ' '); case "$st" in *ActiveState=active*|*ConditionResult=no*) ;; *) why="\${why:+$why; }${u}: $st";; esac`);
  }
  if (hasRole(m, 'etcd')) {
    checks.push('etcd member healthy');
    lines.push(`curl -fsS -m 5 --cacert ${ETCD_PKI}/ca.crt --cert ${ETCD_PKI}/server.crt --key ${ETCD_PKI}/server.key https://${m.ip}:2379/health 2>/dev/null | grep -q '"health":"true"' || why="\${why:+$why; }etcd member not healthy"`);
  }
  if (hasRole(m, 'control-plane')) {
    checks.push('apiserver /readyz');
    lines.push(`${apiserverReady(spec, m.ip)} || why="\${why:+$why; }apiserver /readyz not ok"`);
  }
  if (p.next.has('/etc/systemd/system/kubelet.service')) {
    checks.push('node Ready');
    lines.push(
      `curl -fsS -m 5 --cacert ${PKI}/ca.crt --cert ${KUBELET_CLIENT_CERT} --key ${KUBELET_CLIENT_CERT} ${apiServerURL(spec)}/api/v1/nodes/${m.name} 2>/dev/null | tr -d ' \\n' | grep -q '"type":"Ready","status":"True"' || why="\${why:+$why; }node ${m.name} not Ready"`,
    );
  }
  const script = [
    `deadline=$(( $(date +%s) + ${seconds} ))`,
    'while :; do',
    ...lines.map((l) => `  ${l}`),
    '  [ -z "$why" ] && exit 0',
    '  [ "$(date +%s)" -ge "$deadline" ] && { echo "$why"; exit 1; }',
    '  sleep 2',
    'done',
    '',
  ].join('\n');
  return { script, checks };
}

const DRAIN_COMMENT = 'slipway-apply-drain';

/**
 * Takes an apiserver out of haproxy's rotation before apply restarts it, and puts it back
 * once it is ready. haproxy (on every control-plane machine, no admin socket) only learns
 * of a stopping apiserver by two failed checks; until then it would send it requests that
 * get a 500 or a closed connection (2 of 1,600 probes through the VIP in a live renewal).
 * Instead new connections from other machines to the apiserver are refused with a TCP
 * reset (their haproxy's `redispatch 1` sends them to another apiserver at once, and its
 * checks mark this one down) while requests already in flight finish. Connections from
 * the machine itself are left alone: its own haproxy falls back on redispatch alone. A timer removes the rule after 15 minutes should apply never come
 * back (the connection lost, the provisioner gone). Only the apiserver's own restart is
 * wrapped: apply waits for its /readyz (ready), then takes the rule away before any
 * other unit restarts (the add-ons talk to this apiserver).
 */
export function drainScripts(spec: Spec, ip: string): { on: string; ready: (seconds: number) => string; off: string } {
  // ! -i lo: the machine's own clients stay: the apiserver's loopback client (its
  // post-start hooks, without which /readyz never turns ok), apply's checks, the add-ons
  const rule = `INPUT -p tcp -d ${ip} --dport ${apiserverPort(spec)} --syn ! -i lo -m comment --comment ${DRAIN_COMMENT} -j REJECT --reject-with tcp-reset`;
  const del = `while iptables -w -D ${rule} 2>/dev/null; do :; done`;
  return {
    on: [
      'set -e',
      del, // a rule left by an earlier run that never came back
      `iptables -w -I ${rule}`,
      `systemd-run --quiet --collect --unit=${DRAIN_COMMENT}-undo --on-active=900 sh -c ${shellQuote(del)} 2>/dev/null || true`,
      // requests already sent (a watch is cut by the restart anyway) get a moment
      'sleep 1',
      '',
    ].join('\n'),
    // the restarted apiserver asked from the machine itself (not drained), until it says ok (bounded)
    ready: (seconds: number) =>
      [
        `deadline=$(( $(date +%s) + ${seconds} ))`,
        `until ${apiserverReady(spec, ip)}; do`,
        '  [ "$(date +%s)" -ge "$deadline" ] && { echo "/readyz not ok"; exit 1; }',
        '  sleep 1',
        'done',
        '',
      ].join('\n'),
    off: [del, `systemctl stop ${DRAIN_COMMENT}-undo.timer 2>/dev/null || true`, ''].join('\n'),
  };
}

/** The apiserver is restarted behind a VIP: drain it first (drainScripts). */
const drains = (spec: Spec, p: MachinePlan): boolean =>
  !!spec.controlPlane.vip && hasRole(p.target.machine, 'control-plane') && p.actions.units.some((u) => u.unit === 'kube-apiserver.service' && u.kind === 'restart');

export interface RunOptions {
  spec: Spec;
  stateDir: string;
  ssh: SshTransport;
  /** progress lines */
  out: (line: string) => void;
  /** each line with what it marks (a machine started, its health wait, done, failed), for serve's activity (progress.ts); default: out */
  say?: (kind: ProgressKind, line: string, machine?: string) => void;
  /** seconds a machine may take to be healthy after its changes; default 300 */
  healthSeconds?: number;
}

export interface RunResult {
  done: string[];
  /** the machine that failed, and why */
  failed?: { machine: string; error: string; kind?: string; stage: string };
  /** machines with changes not (yet) delivered */
  notDone: string[];
}

/** Delivers each machine's changes in order, stopping at the first failure. */
export async function runApply(plan: ApplyPlan, o: RunOptions): Promise<RunResult> {
  const done: string[] = [];
  const todo = plan.machines.filter((p) => !isEmpty(p.changes));
  for (const p of plan.machines.filter((x) => isEmpty(x.changes))) {
    // nothing to deliver, but a machine compared with its own files gets its record now
    if (p.baseline === 'machine') await saveGiven(o.stateDir, p.target.machine.name, givenOf(p.next));
  }
  const say = o.say ?? ((_kind: ProgressKind, line: string) => o.out(line));
  for (let i = 0; i < todo.length; i++) {
    const p = todo[i]!;
    const name = p.target.machine.name;
    const t0 = performance.now();
    let stage = 'connect';
    // what took its time (a unit's restart and readiness, the health wait), for the done line
    const took: string[] = [];
    const timed = async <T>(label: string, f: () => Promise<T>): Promise<T> => {
      const ts = performance.now();
      try {
        return await f();
      } finally {
        const secs = (performance.now() - ts) / 1000;
        if (secs >= 1) took.push(`${label} ${secs.toFixed(1)} s`);
      }
    };
    say('machine', `${name}: started (${i + 1} of ${todo.length})`, name);
    try {
      const m = p.target.ssh;
      await o.ssh.run(m, ['true'], { timeoutMs: 30_000 }); // reachable, and the machine it was pinned as
      if (p.actions.stop.length) {
        stage = 'stop';
        say('line', `${name}: systemctl stop ${p.actions.stop.join(' ')}`, name);
        await o.ssh.run(m, ['systemctl', 'stop', ...p.actions.stop]);
      }
      stage = 'files';
      say('line', `${name}: writing ${plural(p.changes.put.length, 'file')}${p.changes.remove.length ? `, removing ${p.changes.remove.length}` : ''}`, name);
      await o.ssh.putFiles(m, p.changes.put.map((f) => ({ path: f.path, mode: f.mode, contents: f.contents, ...(f.owner ? { owner: f.owner } : {}), ...(f.link ? { link: f.link } : {}) })));
      if (p.changes.remove.length) await o.ssh.run(m, ['rm', '-f', '--', ...p.changes.remove]);
      if (p.actions.daemonReload) {
        stage = 'daemon-reload';
        await o.ssh.run(m, ['systemctl', 'daemon-reload']);
      }
      for (const c of p.actions.commands) {
        stage = c.argv.join(' ');
        say('line', `${name}: ${c.argv.join(' ')}`, name);
        await o.ssh.run(m, c.argv);
      }
      const drain = drains(o.spec, p) ? drainScripts(o.spec, p.target.machine.ip) : undefined;
      const seconds = o.healthSeconds ?? 300;
      for (const u of p.actions.units) {
        stage = `${u.kind} ${u.unit}`;
        // only around the apiserver's own restart: units after it (the add-ons) talk to it
        const drained = drain && u.unit === 'kube-apiserver.service' && u.kind === 'restart' ? drain : undefined;
        try {
          if (drained) {
            say('line', `${name}: new connections to its apiserver refused (haproxy sends them to the others) until it is ready again`, name);
            await o.ssh.run(m, { script: drained.on }, { timeoutMs: 30_000 });
          }
          say('line', `${name}: ${u.kind} ${u.unit}`, name);
          // reload: only a running unit; a stopped one is left to its own start
          const verb = u.kind === 'reload' ? 'try-reload-or-restart' : u.kind;
          await timed(`${u.kind} ${u.unit.replace(/\.service$/, '')}`, async () => {
            await o.ssh.run(m, ['systemctl', verb, u.unit], { timeoutMs: 180_000 });
            if (drained) {
              const r = await o.ssh.run(m, { script: drained.ready(seconds) }, { timeoutMs: (seconds + 60) * 1000, check: false });
              if (r.code !== 0) throw new Error(`its apiserver is not ready ${seconds} s after its restart: ${r.stdout.trim() || r.stderr.trim()}`);
            }
          });
        } finally {
          // ready, or failed: either way haproxy's own checks decide again
          if (drained) await o.ssh.run(m, { script: drained.off }, { timeoutMs: 30_000, check: false }).catch(() => {});
        }
      }
      stage = 'health';
      const h = healthScript(o.spec, p, seconds);
      if (h.checks.length) {
        say('health', `${name}: waiting for ${h.checks.join(', ')} (at most ${seconds} s)`, name);
        const r = await timed('health', () => o.ssh.run(m, { script: h.script }, { timeoutMs: (seconds + 60) * 1000, check: false }));
        if (r.code !== 0) throw new Error(`not healthy after ${seconds} s: ${r.stdout.trim() || r.stderr.trim()}`);
      }
      await saveGiven(o.stateDir, name, givenOf(p.next));
      done.push(name);
      say('done', `${name}: done (${((performance.now() - t0) / 1000).toFixed(1)} s${took.length ? `: ${took.join(', ')}` : ''})`, name);
    } catch (e) {
      const kind = e instanceof SshError ? e.kind : undefined;
      const error = e instanceof SshError ? e.message.replace(`${name}: `, '') : (e as Error).message;
      say('failed', `${name}: FAILED at ${stage}: ${error}`, name);
      return { done, failed: { machine: name, error, kind, stage }, notDone: todo.slice(i).map((x) => x.target.machine.name) };
    }
  }
  return { done, notDone: [] };
}
