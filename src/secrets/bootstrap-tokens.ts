// Bootstrap tokens per provisioning window (`slipway apply`, apply/tokens.ts):
// <state>/bootstrap-tokens.json, 0600. Once the cluster runs, a machine of the file that
// is not installed gets a token of its own, with an expiry, created in the cluster as
// Secret bootstrap-token-<id> before it is recorded here; render (Secrets.windowTokens)
// puts it in that machine's bootstrap kubeconfig only. `retired`: the install token of
// tokens.json, deleted from the cluster once no machine is installing with it, so the
// add-ons stop re-creating it. Never logged: only token ids are printed.
import { join } from 'node:path';
import { readIfExists, writeFileAtomic, SECRET_MODE, removeIfExists } from './fs.ts';
import { randomString } from './tokens.ts';

export interface WindowToken {
  id: string;
  secret: string;
  /** RFC 3339, what the cluster's Secret says (its `expiration`) */
  expires: string;
  /** the machine joined with it and its Secret was deleted; kept so the machine's render stays what it was given */
  used?: true;
}

export interface BootstrapTokens {
  /** machine name → its token for the current provisioning window */
  machines: Record<string, WindowToken>;
  /** ids of tokens.json's install token once it was deleted from the cluster */
  retired: string[];
}

export const bootstrapTokensPath = (stateDir: string): string => join(stateDir, 'bootstrap-tokens.json');

const ID = /^[a-z0-9]{6}$/;
const SECRET = /^[a-z0-9]{16}$/;
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const newWindowToken = (now: number, ttlSeconds: number): WindowToken => ({
  id: randomString(6),
  secret: randomString(16),
  expires: new Date(now + ttlSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
});

/** The record, checked; empty when there is none. A damaged one is refused naming the file (and never quoting a secret). */
export async function readBootstrapTokens(stateDir: string): Promise<BootstrapTokens> {
  const file = bootstrapTokensPath(stateDir);
  const text = await readIfExists(file);
  if (text === undefined) return { machines: {}, retired: [] };
  const bad = (what: string) => new Error(`${file}: ${what}; remove the file to have apply make new tokens (the old ones expire in the cluster by themselves)`);
  let raw: { machines?: unknown; retired?: unknown };
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw bad('not an object');
  const machines: Record<string, WindowToken> = {};
  const m = raw.machines ?? {};
  if (typeof m !== 'object' || Array.isArray(m) || m === null) throw bad('machines is not an object');
  for (const [name, t] of Object.entries(m as Record<string, Partial<WindowToken>>)) {
    if (!NAME.test(name)) throw bad(`${JSON.stringify(name)} is not a machine name`);
    if (typeof t?.id !== 'string' || !ID.test(t.id)) throw bad(`machines.${name}.id is not 6 characters [a-z0-9]`);
    if (typeof t.secret !== 'string' || !SECRET.test(t.secret)) throw bad(`machines.${name}.secret is not 16 characters [a-z0-9]`);
    if (typeof t.expires !== 'string' || Number.isNaN(Date.parse(t.expires))) throw bad(`machines.${name}.expires is not a time`);
    if (t.used !== undefined && t.used !== true) throw bad(`machines.${name}.used is not true`);
    machines[name] = { id: t.id, secret: t.secret, expires: t.expires, ...(t.used ? { used: true as const } : {}) };
  }
  const retired = raw.retired ?? [];
  if (!Array.isArray(retired) || !retired.every((r) => typeof r === 'string' && ID.test(r))) throw bad('retired is not a list of token ids');
  return { machines, retired: retired as string[] };
}

/** Writes the record atomically, 0600; an empty one removes the file. */
export async function writeBootstrapTokens(stateDir: string, t: BootstrapTokens): Promise<void> {
  const file = bootstrapTokensPath(stateDir);
  const names = Object.keys(t.machines).sort();
  if (!names.length && !t.retired.length) return removeIfExists(file);
  const out = { machines: Object.fromEntries(names.map((n) => [n, t.machines[n]])), retired: [...new Set(t.retired)].sort() };
  await writeFileAtomic(file, JSON.stringify(out, null, 2) + '\n', SECRET_MODE);
}
