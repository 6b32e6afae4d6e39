// Bootstrap tokens per provisioning window. Once the cluster runs, apply opens a window
// for each machine of the file that is not installed (added to the file, or marked for
// reprovision): a fresh token of its own, with an expiry (kubeadm's 24 h by default,
// `--token-ttl`), created in the cluster as kube-system/bootstrap-token-<id> (with
// `expiration`, so the tokencleaner controller deletes it then and the apiserver refuses
// it after) before it is recorded in the state, where render puts it in that machine's
// bootstrap kubeconfig only. A token whose machine joined is deleted from the cluster
// (kept in the record as used, so the machine's files stay what it was given); an expired
// one is deleted and replaced while its machine is still not installed. The install token
// (tokens.json, in every machine's first render) is retired, deleted from the cluster and
// dropped from the add-ons, once no machine is installing with it. kubectl runs on a
// control-plane machine over SSH with its admin.conf (as drain does); a token reaches it
// on stdin, never on a command line, and only ids are printed.
import { hasRole, type Spec } from '../spec/types.ts';
import { newWindowToken, writeBootstrapTokens, type BootstrapTokens, type WindowToken } from '../secrets/bootstrap-tokens.ts';
import { yamlDocs } from '../plan/phases/addons.ts';
import { tokenSecret, windowFor, type TokenPlan } from '../kube/windows.ts';

// the window of one reprovisioned machine and the plan's shape live with the API client serve uses (kube/)
export { windowFor, type TokenPlan };
import type { SshTransport } from './ssh.ts';
import type { Target } from './targets.ts';

export interface TokenInputs {
  spec: Spec;
  /** the state's record (bootstrap-tokens.json) */
  record: BootstrapTokens;
  /** tokens.json's install token id */
  installTokenId: string;
  /** when the install token was made (the state's CA notBefore): it is retired once its own TTL is over, or a window opens */
  installSince: number;
  /** machines installed (or further) */
  installed: Set<string>;
  /** machines that fetched their configuration (a record in <state>/given/) */
  fetched: Set<string>;
  /** a control-plane machine is installed and reachable: the cluster runs, its API takes tokens */
  clusterRuns: boolean;
  now: number;
  ttlSeconds: number;
  /** token maker (tests pass a fixed one) */
  newToken?: (now: number, ttlSeconds: number) => WindowToken;
}

/** What apply does with bootstrap tokens this run (pure). */
export function planTokens(i: TokenInputs): TokenPlan {
  const make = i.newToken ?? newWindowToken;
  const inFile = new Set(i.spec.machines.map((m) => m.name));
  const machines: Record<string, WindowToken> = {};
  const create: TokenPlan['create'] = [];
  const remove: TokenPlan['remove'] = [];
  for (const [name, t] of Object.entries(i.record.machines)) {
    if (!inFile.has(name)) {
      if (!t.used) remove.push({ id: t.id, why: `${name} is no longer in the file` });
      continue;
    }
    if (i.installed.has(name)) {
      if (!t.used) remove.push({ id: t.id, why: `used: ${name} joined` });
      machines[name] = { ...t, used: true };
      continue;
    }
    if (!t.used && Date.parse(t.expires) > i.now) {
      machines[name] = t; // its window is still open
      continue;
    }
    if (!t.used) remove.push({ id: t.id, why: `expired ${t.expires}` });
    if (!i.clusterRuns) machines[name] = t; // nothing to replace it with yet
  }
  if (i.clusterRuns)
    for (const m of i.spec.machines) {
      if (i.installed.has(m.name) || machines[m.name]) continue;
      const token = make(i.now, i.ttlSeconds);
      create.push({ machine: m.name, token });
      machines[m.name] = token;
    }
  // the install token goes once nobody installs with it (every machine of the file is installed,
  // or has not fetched its configuration yet: it is rendered with a token of its own), when
  // its own TTL is over or the first window opened
  let retire: string | undefined;
  const retired = [...i.record.retired];
  const due = i.now - i.installSince >= i.ttlSeconds * 1000 || Object.keys(machines).length > 0;
  if (i.clusterRuns && due && !retired.includes(i.installTokenId)) {
    const installing = i.spec.machines.filter((m) => !i.installed.has(m.name) && i.fetched.has(m.name) && !i.record.machines[m.name]);
    if (!installing.length) {
      retire = i.installTokenId;
      retired.push(retire);
      remove.push({ id: retire, why: 'the install token: no machine installs with it any more' });
    }
  }
  return { create, remove, ...(retire ? { retire } : {}), next: { machines, retired } };
}

/** The lines a dry run (and the run) prints: ids and expiries, never a secret. */
export function describeTokens(p: TokenPlan): string[] {
  return [
    ...p.create.map((c) => `${c.machine}: a bootstrap token of its own for its provisioning window: ${c.token.id}, expires ${c.token.expires} (Secret kube-system/bootstrap-token-${c.token.id})`),
    ...p.remove.map((r) => `bootstrap token ${r.id}: delete from the cluster (${r.why})`),
  ];
}

export const isTokenChange = (p: TokenPlan): boolean => p.create.length > 0 || p.remove.length > 0;

const KUBECTL = ['/opt/bin/kubectl', '--kubeconfig', '/etc/kubernetes/admin.conf'];

/** The Secrets of new tokens, as kubectl applies them (a secret: 0600 wherever it is written). */
export const tokenManifest = (create: TokenPlan['create'], spec: Spec): string => yamlDocs(create.map((c) => tokenSecret(c, spec)));

/** Creates the new tokens' Secrets (one kubectl apply, manifest on stdin). */
export async function createTokens(ssh: SshTransport, via: Target, p: TokenPlan, spec: Spec, out: (l: string) => void): Promise<void> {
  if (!p.create.length) return;
  await ssh.run(via.ssh, [...KUBECTL, 'apply', '-f', '-'], { input: tokenManifest(p.create, spec), timeoutMs: 60_000 });
  for (const c of p.create) out(`${c.machine}: bootstrap token ${c.token.id} created (expires ${c.token.expires})`);
}

/** Deletes the Secrets of used, expired and retired tokens (gone already: fine). */
export async function removeTokens(ssh: SshTransport, via: Target, p: TokenPlan, out: (l: string) => void): Promise<void> {
  if (!p.remove.length) return;
  await ssh.run(via.ssh, [...KUBECTL, '-n', 'kube-system', 'delete', 'secret', '--ignore-not-found', ...p.remove.map((r) => `bootstrap-token-${r.id}`)], { timeoutMs: 60_000 });
  for (const r of p.remove) out(`bootstrap token ${r.id}: deleted (${r.why})`);
}

/**
 * A token plan carried out in the order that keeps the record true: new Secrets created,
 * then the record written (render reads it), then the old Secrets deleted.
 */
export async function deliverTokens(ssh: SshTransport, via: Target, p: TokenPlan, spec: Spec, stateDir: string, out: (l: string) => void): Promise<void> {
  await createTokens(ssh, via, p, spec, out);
  await writeBootstrapTokens(stateDir, p.next);
  await removeTokens(ssh, via, p, out);
}

/** The control-plane machine kubectl runs on (first reachable in file order). */
export const tokenHost = (reachable: Target[]): Target | undefined => reachable.find((t) => hasRole(t.machine, 'control-plane'));
