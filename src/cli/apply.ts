// `slipway apply`, `slipway drain`, `slipway remove`: the cluster file's changes delivered
// to installed machines (src/apply/). Thin: flags, the core, printing, exit codes
// (0 done or nothing to do, 1 failed or not done, 2 usage, 3 a dry run with changes).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createInterface } from 'node:readline/promises';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { givenFile, givenPath } from '../render/given.ts';
import { ADDONS } from '../plan/paths.ts';
import type { Spec } from '../spec/types.ts';
import type { AssetPins, Plan } from '../plan/types.ts';
import { buildPlan } from '../plan/plan.ts';
import { planTree } from '../render/tree.ts';
import { stageSecrets } from '../secrets/store.ts';
import { MAX_TOKEN_HOURS } from '../spec/schema.ts';
import { provisionerURL } from '../spec/types.ts';
import { serveProgress, type ProgressKind } from '../apply/progress.ts';

export class ApplyUsage extends Error {}

export interface ApplyIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** reads and checks a cluster file, printing its problems; undefined when invalid */
  load: (file: string) => Promise<Spec | undefined>;
  stateDirFor: (file: string, state: unknown) => string;
  /** the pins of --assets DIR, as render and serve take them */
  pins: (dir: string | undefined) => Promise<AssetPins | undefined>;
  /** builds the plan, turning a clash with a rendered file into the file's FILE:LINE:COL (main.ts's) */
  plan: (file: string, build: () => Plan) => Promise<Plan>;
  /** for tests: the ssh client (e.g. ['ip', 'netns', 'exec', NS, 'ssh']) */
  sshCommand?: string[];
}

function flags<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true as const });
  } catch (e) {
    throw new ApplyUsage((e as Error).message);
  }
}

function need(v: unknown, flag: string): string {
  if (typeof v !== 'string' || v === '') throw new ApplyUsage(`missing ${flag}`);
  return v;
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export async function applyCommand(argv: string[], io: ApplyIo): Promise<number> {
  const { values: a } = flags(argv, {
    file: { type: 'string', short: 'f' },
    state: { type: 'string' },
    assets: { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean' },
    'health-timeout': { type: 'string' },
    'token-ttl': { type: 'string' },
    server: { type: 'string' },
  });
  const file = need(a.file, '-f FILE');
  const ttlFlag = a['token-ttl'] === undefined ? undefined : Number(a['token-ttl']);
  if (ttlFlag !== undefined && (!Number.isInteger(ttlFlag) || ttlFlag < 1 || ttlFlag > MAX_TOKEN_HOURS))
    throw new ApplyUsage(`--token-ttl must be a whole number of hours, 1..${MAX_TOKEN_HOURS} (default: the file's spec.pki.bootstrapTokenValidityHours, else kubeadm's 24)`);
  const healthSeconds = a['health-timeout'] === undefined ? 300 : Number(a['health-timeout']);
  if (!Number.isInteger(healthSeconds) || healthSeconds < 1) throw new ApplyUsage('--health-timeout must be a whole number of seconds');
  const spec = await io.load(file);
  if (!spec) return 1;
  const stateDir = io.stateDirFor(file, a.state);
  // the flag wins over the file (a one-off longer window, say, for a machine delivered late)
  const ttlHours = ttlFlag ?? spec.pki.bootstrapTokenValidityHours;
  const { machineTargets, transportFor, formerTarget } = await import('../apply/targets.ts');
  const { planApply, describe, runApply } = await import('../apply/apply.ts');
  const { isEmpty } = await import('../apply/changes.ts');
  const m = await import('../apply/membership.ts');
  const { etcdClientTls } = await import('../apply/etcd-members.ts');

  const pins = await io.pins(a.assets);
  const targets = machineTargets(stateDir, spec);
  // etcd's members first: a change is refused (naming the rule) before anything is rendered or reached
  const step = await m.planMembership({ stateDir, spec, targets, tls: () => etcdClientTls(stateDir) });
  if (step.kind === 'refused') {
    io.err(`apply: refused, nothing done: ${step.message} [rule ${step.rule}]`);
    return 1;
  }
  const staged = await stageSecrets(stateDir, spec, { log: io.err });
  // a member being added renders (for serve, later) with the join this run records
  if (step.kind === 'add') staged.secrets.etcdJoins = { ...staged.secrets.etcdJoins, [step.name]: step.initialCluster };
  // bootstrap tokens per provisioning window: machines left to serve get their own (apply/tokens.ts)
  const tk = await import('../apply/tokens.ts');
  const { readBootstrapTokens, writeBootstrapTokens } = await import('../secrets/bootstrap-tokens.ts');
  const tokenRecord = await readBootstrapTokens(stateDir);
  const tokenVia = tk.tokenHost(targets.reachable);
  const tokens = tk.planTokens({
    spec,
    record: tokenRecord,
    installTokenId: staged.secrets.bootstrapToken.id,
    installSince: new X509Certificate(staged.secrets.certs.ca.cert).validFromDate.getTime(), // the state's birth
    installed: new Set([...targets.reachable, ...targets.unpinned].map((t) => t.machine.name)),
    fetched: new Set(spec.machines.filter((x) => existsSync(givenPath(stateDir, x.name))).map((x) => x.name)),
    clusterRuns: !!tokenVia,
    now: Date.now(),
    ttlSeconds: ttlHours * 3600,
  });
  staged.secrets.windowTokens = tokens.next;
  const tree = planTree(await io.plan(file, () => buildPlan(spec, staged.secrets, { pins })));
  // the install token retired: apply deletes its Secret itself, the add-ons need not run again for it
  const quiet = new Map<string, string>();
  if (tokens.retire) {
    const before = planTree(buildPlan(spec, { ...staged.secrets, windowTokens: { ...tokens.next, retired: tokenRecord.retired } }, { pins }));
    for (const [rel, f] of before) if (rel.endsWith(`/root${ADDONS}/10-bootstrap.yaml`)) quiet.set(`${ADDONS}/10-bootstrap.yaml`, givenFile(f).sha256);
  }
  const { kubectlHost } = await import('../apply/nodes.ts');
  const via = kubectlHost(targets);
  const etcdLines = [...m.describeMembership(step, via?.machine.name), ...tk.describeTokens(tokens)];
  if (!targets.reachable.length) {
    // nothing to reach: no SSH (and, on a state never rendered, no key yet)
    for (const n of targets.notInstalled) io.out(`${n.machine.name}: not installed (${n.state}): left to serve, which gives it this render when it boots`);
    for (const n of targets.unpinned) io.out(`${n.machine.name}: ${n.state}, but no SSH host key was pinned when it was installed: not reached (reprovision it, or install it with this Slipway)`);
    io.out(`apply${a['dry-run'] ? ' --dry-run' : ''}: 0 of 0 installed machines would change; nothing done`);
    return targets.unpinned.length ? (a['dry-run'] ? 3 : 1) : 0;
  }
  const ssh = transportFor(stateDir, { ssh: io.sshCommand });
  try {
    let plan;
    try {
      plan = await planApply(stateDir, tree, targets, ssh, quiet);
    } catch (e) {
      io.err(`apply: nothing done: ${(e as Error).message}`);
      return 1;
    }
    for (const n of targets.notInstalled) io.out(`${n.machine.name}: not installed (${n.state}): left to serve, which gives it this render when it boots`);
    for (const n of targets.unpinned) io.out(`${n.machine.name}: ${n.state}, but no SSH host key was pinned when it was installed: not reached (reprovision it, or install it with this Slipway)`);
    if (!pins && plan.machines.some((p) => p.changes.put.some((f) => f.path === '/etc/slipway/binaries.list')))
      throw new ApplyUsage('the machines were given binaries pinned by sha256: pass --assets DIR (what serve serves) so this render pins them too');
    for (const l of etcdLines) io.out(l);
    for (const p of plan.machines) for (const l of describe(p, true)) io.out(l);
    const changed = plan.machines.filter((p) => !isEmpty(p.changes));
    const etcdChange = step.kind === 'add' || step.kind === 'remove';
    const tokenChange = tk.isTokenChange(tokens);
    if (a['dry-run']) {
      io.out(`apply --dry-run: ${changed.length} of ${plan.machines.length} installed machines would change${etcdChange ? `, and etcd's members (${step.kind} ${step.name})` : ''}${tokenChange ? ', and bootstrap tokens' : ''}; nothing done`);
      return changed.length || etcdChange || tokenChange || targets.unpinned.length ? 3 : 0;
    }
    if (step.kind === 'none') for (const n of step.forget) await m.forgetMember(stateDir, n);
    if (!changed.length && !etcdChange && !tokenChange) {
      await staged.commit();
      await runApply(plan, { spec, stateDir, ssh, out: io.out, healthSeconds }); // records machines compared with their own files
      io.out(`apply: nothing to change on ${plan.machines.length} installed machines`);
      return targets.unpinned.length ? 1 : 0;
    }
    if (!a.yes) {
      if (!process.stdin.isTTY) throw new ApplyUsage('apply changes running machines: pass --yes to go ahead without a question, or --dry-run to see the plan');
      if (!(await confirm(`apply these changes to ${[...(etcdChange ? [`etcd (${step.kind} ${step.name})`] : []), ...changed.map((p) => p.target.machine.name)].join(', ')}? [y/N] `))) {
        io.err('apply: nothing done');
        return 1;
      }
    }
    // from here on each step is also told to the serve running with this state (status --watch, the console)
    const progress = serveProgress({ stateDir, server: a.server ?? provisionerURL(spec), print: io.out, warn: io.err });
    const say = (kind: ProgressKind, l: string, machine?: string) => progress.say(kind, l, machine);
    const line = (l: string) => say('line', l);
    progress.tell('start', `apply: started: ${[...(etcdChange ? [`etcd (${step.kind} ${step.name})`] : []), ...(tokenChange ? ['bootstrap tokens'] : []), ...changed.map((p) => p.target.machine.name)].join(', ')}`);
    for (const l of etcdLines) progress.tell('plan', l);
    for (const p of plan.machines) for (const l of describe(p, true)) progress.tell('plan', l, p.target.machine.name);
    // new secrets (a new machine's certificates and token) are saved before they are delivered
    await staged.commit();
    if (tokenChange && tokenVia) {
      // created in the cluster before recorded (a recorded token always exists), deleted after
      try {
        await tk.deliverTokens(ssh, tokenVia, tokens, spec, stateDir, line);
      } catch (e) {
        say('failed', `bootstrap tokens: FAILED on ${tokenVia.machine.name}: ${(e as Error).message}`);
        await progress.end(false, `apply: not done: bootstrap tokens, ${[...(etcdChange ? [`etcd (${step.kind} ${step.name})`] : []), ...changed.map((p) => p.target.machine.name)].join(', ')}; run apply again to continue`);
        return 1;
      }
    } else if (JSON.stringify(tokens.next) !== JSON.stringify(tokenRecord)) await writeBootstrapTokens(stateDir, tokens.next);
    const etcdUrls = targets.reachable.filter((t) => t.machine.roles.includes('etcd')).map((t) => m.clientURL(t.machine.ip));
    if (step.kind === 'remove') {
      // the member leaves before the others are given lists without it
      try {
        await m.removeEtcdMember(step, { stateDir, ssh, via, leaving: step.ip ? formerTarget(stateDir, step.name, step.ip) : undefined, urls: etcdUrls, tls: await etcdClientTls(stateDir), out: line });
      } catch (e) {
        say('failed', `etcd: FAILED removing ${step.name}: ${(e as Error).message}`);
        await progress.end(false, `apply: not done: etcd (remove ${step.name}), ${changed.map((p) => p.target.machine.name).join(', ') || 'none'}; run apply again to continue`);
        return 1;
      }
    }
    // recorded before anything else changes: serve renders the new machine with it
    if (step.kind === 'add') await m.recordJoin(stateDir, step);
    const r = await runApply(plan, { spec, stateDir, ssh, out: line, say, healthSeconds });
    const doneLine = `apply: done: ${[...(step.kind === 'remove' ? [`etcd (remove ${step.name})`] : []), ...r.done].join(', ') || 'none'}`;
    if (r.failed) {
      say('line', doneLine);
      await progress.end(false, `apply: not done: ${[...r.notDone, ...(step.kind === 'add' ? [`etcd (add ${step.name})`] : [])].join(', ')} (stopped at ${r.failed.machine}: ${r.failed.error}); run apply again to continue`);
      return 1;
    }
    if (step.kind !== 'add') await progress.end(true, doneLine);
    else {
      say('line', doneLine);
      // last: the cluster runs with a member not yet started for as short a time as can be
      try {
        await m.addEtcdMember(etcdUrls, await etcdClientTls(stateDir), step, line);
      } catch (e) {
        say('failed', `etcd: FAILED adding ${step.name}: ${(e as Error).message}`);
        await progress.end(false, `apply: not done: etcd (add ${step.name}); run apply again to continue (${step.name} must not be provisioned until it is done)`);
        return 1;
      }
      await progress.end(true, `${step.name}: left to serve (reload it: SIGHUP), which renders it with --initial-cluster-state=existing; its network boot installs it and it joins`);
    }
    return targets.unpinned.length ? 1 : 0;
  } finally {
    ssh.close();
  }
}

/** `slipway drain NAME -f FILE` and `slipway remove NAME -f FILE`: a worker out of the cluster. */
export async function nodeCommand(verb: 'drain' | 'remove', argv: string[], io: ApplyIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { file: { type: 'string', short: 'f' }, state: { type: 'string' }, server: { type: 'string' }, timeout: { type: 'string' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ApplyUsage((e as Error).message);
  }
  const { values: a, positionals } = parsed;
  if (positionals.length !== 1) throw new ApplyUsage(`${verb} takes one machine name`);
  const name = positionals[0]!;
  const file = need(a.file, '-f FILE');
  const timeoutS = a.timeout === undefined ? 300 : Number(a.timeout);
  if (!Number.isInteger(timeoutS) || timeoutS < 1) throw new ApplyUsage('--timeout must be a whole number of seconds');
  const spec = await io.load(file);
  if (!spec) return 1;
  const stateDir = io.stateDirFor(file, a.state);
  const { machineTargets, transportFor } = await import('../apply/targets.ts');
  const { workerRefusal, kubectlHost, drainNode, deleteNode, reprovision, forgetGiven } = await import('../apply/nodes.ts');
  const refusal = workerRefusal(spec.machines, name);
  if (refusal) {
    io.err(`${verb}: refused, nothing done: ${refusal}`);
    return 1;
  }
  const targets = machineTargets(stateDir, spec);
  const via = kubectlHost(targets);
  if (!via) {
    io.err(`${verb}: nothing done: no installed control-plane machine with a pinned host key to run kubectl on`);
    return 1;
  }
  const ssh = transportFor(stateDir, { ssh: io.sshCommand });
  try {
    await drainNode(ssh, via, name, timeoutS, io.out);
    if (verb === 'drain') {
      io.out(`${name}: drained (cordoned: \`kubectl uncordon ${name}\` takes it back)`);
      return 0;
    }
    await deleteNode(ssh, via, name, io.out);
    await forgetGiven(stateDir, name);
    const { provisionerURL } = await import('../spec/types.ts');
    const { defaultTokenFile } = await import('./status.ts');
    const server = a.server ?? provisionerURL(spec);
    try {
      const token = (await readFile(defaultTokenFile(stateDir), 'utf8')).trim();
      // serve's reprovision opens its window: a bootstrap token of its own (the one it had was used and deleted)
      const r = await reprovision(server, token, name);
      if (r.window) io.out(`${name}: bootstrap token ${r.window.id} for its next install (expires ${r.window.expires})`);
      io.out(`${name}: marked for reprovision at ${server} (its next network boot installs it again)`);
    } catch (e) {
      io.out(`${name}: Node deleted, but serve at ${server} could not mark it for reprovision (${(e as Error).message}): reprovision it from the console or the API`);
      return 1;
    }
    io.out(`${name}: removed; take it out of the cluster file and run \`slipway apply\` so the others forget it (routes, hosts)`);
    return 0;
  } catch (e) {
    io.err(`${verb} ${name}: stopped: ${(e as Error).message}`);
    return 1;
  } finally {
    ssh.close();
  }
}
