// A provisioning window for one machine that is being (re)provisioned while the cluster
// runs: the bootstrap token it joined with was used and deleted (or the install token
// retired), so it gets a fresh one of its own, with an expiry (spec.pki.
// bootstrapTokenValidityHours, kubeadm's 24 h by default), created in the cluster as
// kube-system/bootstrap-token-<id> before it is recorded in <state>/bootstrap-tokens.json
// (render puts it in that machine's bootstrap kubeconfig only); an unused token the
// machine had is deleted after. serve's reprovision (the console, the API, `slipway
// provision`, `slipway remove`) opens one through the API client here; apply's own token
// plan (apply/tokens.ts) shares the plan's shape and the Secret. Only ids are logged.
import type { Spec } from '../spec/types.ts';
import { newWindowToken, readBootstrapTokens, writeBootstrapTokens, type BootstrapTokens, type WindowToken } from '../secrets/bootstrap-tokens.ts';
import { bootstrapTokenSecret } from '../plan/phases/addons.ts';
import type { KubeClient } from './client.ts';

export interface TokenPlan {
  create: { machine: string; token: WindowToken }[];
  /** Secrets to delete, by token id, and why */
  remove: { id: string; why: string }[];
  /** the install token's id when this run retires it */
  retire?: string;
  /** the record after this run */
  next: BootstrapTokens;
}

/** The Secret a window token is in the cluster (what kubectl applies for apply, what serve POSTs). */
export const tokenSecret = (c: TokenPlan['create'][number], spec: Spec) =>
  bootstrapTokenSecret(c.token.id, c.token.secret, `Slipway kubelet TLS bootstrap for ${c.machine} (${spec.name})`, c.token.expires);

/**
 * The window a reprovisioned machine installs in: the token it joined with was used and
 * deleted, so it gets a fresh one, created in the cluster before it is recorded. Pure plan.
 */
export function windowFor(record: BootstrapTokens, name: string, token: WindowToken): TokenPlan {
  const old = record.machines[name];
  return {
    create: [{ machine: name, token }],
    remove: old && !old.used ? [{ id: old.id, why: `${name} reprovisioned: a window of its own again` }] : [],
    next: { machines: { ...record.machines, [name]: token }, retired: record.retired },
  };
}

const SECRETS = '/api/v1/namespaces/kube-system/secrets';

export interface OpenedWindow {
  token: Pick<WindowToken, 'id' | 'expires'>;
  /** ids of the machine's earlier unused tokens, deleted */
  removed: string[];
  /** a deletion that failed (the token expires by itself): said, not fatal */
  warnings: string[];
}

/**
 * Opens `name`'s window through the cluster's API: its Secret created (a failure throws,
 * and nothing is recorded), then the record written, then the old unused token deleted.
 */
export async function openWindow(o: { stateDir: string; spec: Spec; name: string; api: KubeClient; now?: number; newToken?: (now: number, ttlSeconds: number) => WindowToken }): Promise<OpenedWindow> {
  const now = o.now ?? Date.now();
  const token = (o.newToken ?? newWindowToken)(now, o.spec.pki.bootstrapTokenValidityHours * 3600);
  const plan = windowFor(await readBootstrapTokens(o.stateDir), o.name, token);
  for (const c of plan.create) await o.api.create(SECRETS, tokenSecret(c, o.spec));
  await writeBootstrapTokens(o.stateDir, plan.next);
  const removed: string[] = [];
  const warnings: string[] = [];
  for (const r of plan.remove) {
    try {
      await o.api.delete(`${SECRETS}/bootstrap-token-${r.id}`);
      removed.push(r.id);
    } catch (e) {
      warnings.push(`bootstrap token ${r.id} could not be deleted (${(e as Error).message}); it expires by itself`);
    }
  }
  return { token: { id: token.id, expires: token.expires }, removed, warnings };
}
