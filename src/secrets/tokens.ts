// The non-PKI secrets kept in <state>/tokens.json: the kubelet bootstrap token, the
// encryption-at-rest key and one progress-report token per machine. Pure apart from
// randomness: store.ts reads and writes the file.
import { randomBytes } from 'node:crypto';

export interface Tokens {
  bootstrapToken: { id: string; secret: string };
  encryptionKey: string;
  machineTokens: Record<string, string>;
}

const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const BOOTSTRAP_ID = /^[a-z0-9]{6}$/;
const BOOTSTRAP_SECRET = /^[a-z0-9]{16}$/;
const MACHINE_TOKEN = /^[A-Za-z0-9_-]{32,}$/;

/** Uniform random string: bytes at or above the largest multiple of the alphabet size are dropped, so no letter is favoured. */
export function randomString(length: number, alphabet = LOWER_ALNUM): string {
  const limit = 256 - (256 % alphabet.length);
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < limit) out += alphabet[b % alphabet.length];
      if (out.length === length) break;
    }
  }
  return out;
}

export const newBootstrapToken = (): Tokens['bootstrapToken'] => ({ id: randomString(6), secret: randomString(16) });
/** aescbc wants exactly 32 bytes, base64 encoded. */
export const newEncryptionKey = (): string => randomBytes(32).toString('base64');
/** 256 bits, url-safe so it can sit in a URL path or header without escaping. */
export const newMachineToken = (): string => randomBytes(32).toString('base64url');


type Raw = Partial<Record<keyof Tokens, unknown>>;

function bad(file: string, field: string, want: string): Error {
  return new Error(
    `${file}: ${field} is not ${want}. Fix it by hand, or remove just that field to have a new one generated ` +
      `(a new encryptionKey makes Secrets already encrypted with the old one unreadable).`,
  );
}

function checkBootstrap(raw: unknown, file: string): Tokens['bootstrapToken'] | undefined {
  if (raw === undefined) return undefined;
  const t = raw as { id?: unknown; secret?: unknown } | null;
  if (typeof t?.id !== 'string' || !BOOTSTRAP_ID.test(t.id)) throw bad(file, 'bootstrapToken.id', '6 characters [a-z0-9]');
  if (typeof t.secret !== 'string' || !BOOTSTRAP_SECRET.test(t.secret)) throw bad(file, 'bootstrapToken.secret', '16 characters [a-z0-9]');
  return { id: t.id, secret: t.secret };
}

function checkEncryptionKey(raw: unknown, file: string): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(raw)) throw bad(file, 'encryptionKey', 'base64 of 32 bytes');
  return raw;
}

function checkMachineTokens(raw: unknown, file: string): Record<string, string> {
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(file, 'machineTokens', 'an object');
  for (const [name, tok] of Object.entries(raw)) {
    if (typeof tok !== 'string' || !MACHINE_TOKEN.test(tok)) throw bad(file, `machineTokens.${name}`, '32+ url-safe characters');
  }
  return raw as Record<string, string>;
}

/** Throws on the first field reconcileTokens() would refuse; used before anything is written. */
export function checkTokens(raw: Raw, file: string): void {
  checkBootstrap(raw.bootstrapToken, file);
  checkEncryptionKey(raw.encryptionKey, file);
  checkMachineTokens(raw.machineTokens, file);
}

/** Parses tokens.json text (undefined: no file yet). Throws on anything it would otherwise have to throw away. */
export function parseTokens(text: string | undefined, file: string): Raw {
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}); restore it from a backup, or fix it by hand`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file} must hold a JSON object`);
  return raw as Raw;
}

/**
 * Keeps every valid token, creates the missing ones, and drops tokens of machines no
 * longer in the cluster file (a stale token would still be accepted by the provisioner).
 * `changes` says what happened, for the log. Machine tokens follow the cluster file's
 * order, so the file (and everything rendered from it) is stable.
 */
export function reconcileTokens(raw: Raw, machines: string[], file: string): { tokens: Tokens; changes: string[] } {
  const changes: string[] = [];
  let bootstrapToken = checkBootstrap(raw.bootstrapToken, file);
  if (!bootstrapToken) {
    bootstrapToken = newBootstrapToken();
    changes.push('created bootstrap token');
  }
  let encryptionKey = checkEncryptionKey(raw.encryptionKey, file);
  if (!encryptionKey) {
    encryptionKey = newEncryptionKey();
    changes.push('created encryption key');
  }
  const old = checkMachineTokens(raw.machineTokens, file);
  const machineTokens: Record<string, string> = {};
  const added: string[] = [];
  for (const name of machines) {
    const tok = Object.hasOwn(old, name) ? old[name] : undefined;
    if (tok === undefined) added.push(name);
    machineTokens[name] = tok ?? newMachineToken();
  }
  const current = new Set(machines);
  const removed = Object.keys(old).filter((name) => !current.has(name));
  if (added.length) changes.push(`created machine tokens for ${added.join(', ')}`);
  if (removed.length) changes.push(`removed machine tokens of ${removed.join(', ')}`);
  return { tokens: { bootstrapToken, encryptionKey, machineTokens }, changes };
}

export const formatTokens = (t: Tokens): string => JSON.stringify(t, null, 2) + '\n';
