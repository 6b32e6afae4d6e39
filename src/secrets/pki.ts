// The PKI half of the state directory: <state>/pki/<id>.crt|.key for every row of
// certlist.ts, sa.key/sa.pub, and index.json recording the definition each leaf was
// issued from. CAs are only ever created, never replaced; leaves are reissued when
// their definition, their CA or their remaining lifetime says so.
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { KeyAlgorithm } from '../spec/types.ts';
import type { CertKey, Certs } from './types.ts';
import type { CertDef } from './certlist.ts';
import { generateKeyPair, importSigningKey, issue, issuerFrom, privateKeyPem, publicKeyPem, type Issuer } from './x509.ts';
import { PUBLIC_MODE, SECRET_MODE, readIfExists, type Writer } from './fs.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Leaves are reissued this long before they expire (shorter for very short-lived leaves, so they are not reissued on every run). */
const RENEW_BEFORE_DAYS = 30;

export type Log = (msg: string) => void;

export const certPath = (pki: string, id: string): string => join(pki, `${id}.crt`);
export const keyPath = (pki: string, id: string): string => join(pki, `${id}.key`);

const KEY_ALGORITHMS: readonly string[] = ['ecdsa-p256', 'rsa-2048'] satisfies KeyAlgorithm[];

/** Names a key the way the cluster file does, so errors can say "ecdsa-p256" rather than "ec". */
export function keyAlgorithmOf(k: KeyObject): string {
  const d = k.asymmetricKeyDetails;
  if (k.asymmetricKeyType === 'ec') return d?.namedCurve === 'prime256v1' ? 'ecdsa-p256' : `ecdsa (${d?.namedCurve})`;
  if (k.asymmetricKeyType === 'rsa') return `rsa-${d?.modulusLength}`;
  return String(k.asymmetricKeyType);
}

/** "an ecdsa-p256", "an rsa-2048" (said "ar-es-ay"), "a dsa". */
const article = (word: string): string => (/^[aefhilmnorsx]/i.test(word) ? 'an' : 'a');

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Key before certificate: a crash in between leaves a pair that fails the key check and is reissued. */
async function writePair(w: Writer, pki: string, id: string, pair: CertKey): Promise<void> {
  await w.write(keyPath(pki, id), pair.key, SECRET_MODE);
  await w.write(certPath(pki, id), pair.cert, PUBLIC_MODE);
}

/** Keys are 0600 even if someone copied the state directory with a loose umask. */
async function keepPrivate(w: Writer, file: string, log: Log): Promise<void> {
  if (await w.tighten(file)) log(`${file} was readable by others; set it to 0600`);
}

// ---------------------------------------------------------------------------- CAs

export interface LoadedCa extends CertKey {
  x509: X509Certificate;
}

function caProblem(pki: string, what: string, fix: string): Error {
  return new Error(`${what}: ${fix}, or delete ${pki} to start a new PKI (every machine must then be rendered and provisioned again)`);
}

function parseCa(pki: string, id: string, cert: string, key: string): { x509: X509Certificate; key: KeyObject } {
  const cf = certPath(pki, id);
  const kf = keyPath(pki, id);
  let x509: X509Certificate;
  let keyObj: KeyObject;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw caProblem(pki, `CA certificate ${cf} cannot be read (${errText(e)})`, 'restore it from a backup');
  }
  try {
    keyObj = createPrivateKey(key);
  } catch (e) {
    throw caProblem(pki, `CA key ${kf} cannot be read (${errText(e)})`, 'restore it from a backup');
  }
  if (!x509.ca) throw caProblem(pki, `${cf} is not a CA certificate`, 'restore the CA from a backup');
  return { x509, key: keyObj };
}

function checkCa(pki: string, id: string, x509: X509Certificate, key: KeyObject, alg: KeyAlgorithm, now: number, log: Log): void {
  const cf = certPath(pki, id);
  const have = keyAlgorithmOf(x509.publicKey);
  if (have !== alg) {
    const keep = KEY_ALGORITHMS.includes(have) ? `set pki.keyAlgorithm: ${have} to keep this PKI` : 'restore a supported CA';
    throw caProblem(pki, `state dir ${dirname(pki)} has ${article(have)} ${have} CA (${cf}); the cluster file asks for ${alg}`, keep);
  }
  if (!x509.checkPrivateKey(key)) {
    throw caProblem(pki, `CA key ${keyPath(pki, id)} does not belong to ${cf}`, 'restore the matching key from a backup');
  }
  const left = x509.validToDate.getTime() - now;
  if (left <= 0) throw caProblem(pki, `CA ${cf} expired on ${x509.validToDate.toISOString()}`, 'Slipway does not rotate CAs; rotate it by hand');
  if (left < RENEW_BEFORE_DAYS * DAY_MS) log(`warning: CA ${cf} expires on ${x509.validToDate.toISOString()}; Slipway does not rotate CAs`);
}

/**
 * Reads and checks one CA without writing anything. undefined: there is no CA, so one
 * may be created. Anything else that is not a usable CA of the right algorithm throws:
 * replacing a CA silently would orphan every certificate and kubeconfig already out there.
 */
export async function readCa(pki: string, id: string, alg: KeyAlgorithm, now: number, log: Log): Promise<LoadedCa | undefined> {
  const [cert, key] = await Promise.all([readIfExists(certPath(pki, id)), readIfExists(keyPath(pki, id))]);
  if (cert === undefined && key === undefined) return undefined;
  if (key === undefined) {
    throw caProblem(pki, `CA certificate ${certPath(pki, id)} exists but its key ${keyPath(pki, id)} is missing`, 'restore the key from a backup');
  }
  if (cert === undefined) {
    throw caProblem(pki, `CA key ${keyPath(pki, id)} exists but its certificate ${certPath(pki, id)} is missing`, 'restore the certificate from a backup');
  }
  const parsed = parseCa(pki, id, cert, key);
  checkCa(pki, id, parsed.x509, parsed.key, alg, now, log);
  return { cert, key, x509: parsed.x509 };
}

// -------------------------------------------------------------------------- index

interface Index {
  version: 1;
  /** leaf id -> the definition its files were issued from */
  certs: Record<string, { def: CertDef }>;
}

const INDEX = 'index.json';

/** JSON with sorted keys: definitions compare equal however their objects were built. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function changedFields(a: CertDef, b: CertDef): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof CertDef>;
  return [...keys].filter((k) => canonical(a[k]) !== canonical(b[k]));
}

/** A missing or unreadable index only costs a reissue of every leaf, so it is not an error. */
async function readIndex(pki: string, log: Log): Promise<{ index: Index; text: string | undefined }> {
  const text = await readIfExists(join(pki, INDEX));
  const empty: Index = { version: 1, certs: {} };
  if (text === undefined) return { index: empty, text };
  try {
    const index = JSON.parse(text) as Index;
    if (index.version === 1 && index.certs && typeof index.certs === 'object') return { index, text };
  } catch {
    // fall through
  }
  log(`${join(pki, INDEX)} is unreadable; every leaf certificate will be reissued`);
  return { index: empty, text };
}

// ------------------------------------------------------------------------- leaves

/** Why a leaf on disk cannot be reused, or undefined when it can. */
function staleness(def: CertDef, cert: string, key: string, ca: X509Certificate, recorded: CertDef | undefined, alg: KeyAlgorithm, now: number): string | undefined {
  if (!recorded) return 'no record of the definition it was issued from';
  const changed = changedFields(recorded, def);
  if (changed.length) return `definition changed (${changed.join(', ')})`;
  let x509: X509Certificate;
  let keyObj: KeyObject;
  try {
    x509 = new X509Certificate(cert);
    keyObj = createPrivateKey(key);
  } catch (e) {
    return `unreadable (${errText(e)})`;
  }
  if (keyAlgorithmOf(x509.publicKey) !== alg) return `key algorithm is ${keyAlgorithmOf(x509.publicKey)}`;
  if (!x509.checkIssued(ca) || !x509.verify(ca.publicKey)) return `not signed by the current ${def.ca}`;
  const renewWindow = Math.min(RENEW_BEFORE_DAYS * DAY_MS, (def.validityDays * DAY_MS) / 3);
  if (x509.validToDate.getTime() - now < renewWindow) return `expires on ${x509.validToDate.toISOString()}`;
  if (!x509.checkPrivateKey(keyObj)) return 'key does not match the certificate';
  return undefined;
}

interface LeafResult {
  pair: CertKey;
  /** set when the leaf was (re)issued */
  reason?: string;
}

interface LeafContext {
  pki: string;
  alg: KeyAlgorithm;
  now: number;
  index: Index;
  caX509: (id: string) => X509Certificate;
  issuer: (id: string) => Promise<Issuer>;
  log: Log;
  w: Writer;
  /** leaves to reissue whatever their state (`slipway certs renew`) */
  renew: ReadonlySet<string>;
}

async function reconcileLeaf(ctx: LeafContext, def: CertDef): Promise<LeafResult> {
  const caId = def.ca;
  if (caId === null) throw new Error(`certificate ${def.id}: a leaf needs a CA`);
  const [cert, key] = await Promise.all([readIfExists(certPath(ctx.pki, def.id)), readIfExists(keyPath(ctx.pki, def.id))]);
  const reason =
    cert === undefined && key === undefined
      ? 'missing'
      : cert === undefined || key === undefined
        ? `${cert === undefined ? 'certificate' : 'key'} missing`
        : ctx.renew.has(def.id)
          ? 'renewal requested'
          : staleness(def, cert, key, ctx.caX509(caId), ctx.index.certs[def.id]?.def, ctx.alg, ctx.now);
  if (reason === undefined) {
    await keepPrivate(ctx.w, keyPath(ctx.pki, def.id), ctx.log);
    return { pair: { cert: cert!, key: key! } };
  }
  const issued = await issue(def, ctx.alg, await ctx.issuer(caId), ctx.now);
  const pair = { cert: issued.cert, key: issued.key };
  await writePair(ctx.w, ctx.pki, def.id, pair);
  return { pair, reason };
}

/** Deletes the files of leaves the cluster file no longer asks for (e.g. a removed etcd member's). */
async function prune(w: Writer, pki: string, old: Index, current: Set<string>, log: Log): Promise<void> {
  for (const id of Object.keys(old.certs)) {
    if (current.has(id)) continue;
    await w.remove(keyPath(pki, id));
    await w.remove(certPath(pki, id));
    for (let d = dirname(certPath(pki, id)); d.length > pki.length; d = dirname(d)) await w.prune(d);
    log(`removed ${certPath(pki, id)} and its key: no longer in the cluster file`);
  }
}

// --------------------------------------------------------------------------- main

/** Creates the CAs that do not exist yet; `existing` holds those readCa() accepted. */
async function ensureCas(w: Writer, pki: string, cas: CertDef[], existing: Map<string, LoadedCa>, alg: KeyAlgorithm, now: number) {
  const issuers = new Map<string, Promise<Issuer>>();
  const loaded = new Map<string, LoadedCa>();
  const created = cas.filter((d) => !existing.has(d.id)).map((d) => d.id);
  await Promise.all(
    cas.map(async (def) => {
      const have = existing.get(def.id);
      if (have) {
        loaded.set(def.id, have);
        return;
      }
      const issued = await issue(def, alg, undefined, now);
      await writePair(w, pki, def.id, issued);
      loaded.set(def.id, { cert: issued.cert, key: issued.key, x509: new X509Certificate(issued.cert) });
      issuers.set(def.id, Promise.resolve(issued.issuer!));
    }),
  );
  // Existing CA keys are imported only when a leaf of theirs actually needs signing.
  const issuer = (id: string): Promise<Issuer> => {
    let p = issuers.get(id);
    if (!p) {
      const ca = loaded.get(id);
      if (!ca) throw new Error(`certificate list names unknown CA ${id}`);
      p = importSigningKey(ca.key, alg).then((k) => issuerFrom(ca.cert, k, alg));
      issuers.set(id, p);
    }
    return p;
  };
  return { loaded, issuer, created };
}

/**
 * Brings <state>/pki in line with the certificate list. `existingCas` must come from
 * readCa() for every CA row, so all refusals happen before this writes anything.
 * `renew`: leaves reissued even when still good; a CA or an unknown id is refused.
 */
export async function reconcilePki(
  w: Writer,
  pki: string,
  defs: CertDef[],
  existingCas: Map<string, LoadedCa>,
  alg: KeyAlgorithm,
  now: number,
  log: Log,
  renew: ReadonlySet<string> = new Set(),
): Promise<Certs> {
  const caDefs = defs.filter((d) => d.isCA);
  const leafDefs = defs.filter((d) => !d.isCA);
  for (const id of renew) {
    if (caDefs.some((d) => d.id === id)) throw new Error(`${id} is a CA: Slipway renews leaf certificates only (a new CA invalidates every certificate and kubeconfig signed by the old one); rotate a CA by hand`);
    if (!leafDefs.some((d) => d.id === id)) throw new Error(`no certificate ${JSON.stringify(id)} in this cluster; the leaves are: ${leafDefs.map((d) => d.id).join(', ')}`);
  }
  const { index: oldIndex, text: oldIndexText } = await readIndex(pki, log);
  const { loaded, issuer, created } = await ensureCas(w, pki, caDefs, existingCas, alg, now);
  const caX509 = (id: string): X509Certificate => {
    const ca = loaded.get(id);
    if (!ca) throw new Error(`certificate list names unknown CA ${id}`);
    return ca.x509;
  };
  const ctx: LeafContext = { pki, alg, now, index: oldIndex, caX509, issuer, log, w, renew };
  const leaves = await Promise.all(leafDefs.map((def) => reconcileLeaf(ctx, def)));

  if (created.length === caDefs.length) {
    log(`created a new ${alg} PKI in ${pki}: ${created.length} CAs, ${leaves.length} certificates`);
  } else {
    for (const id of created) log(`created CA ${certPath(pki, id)}`);
    leafDefs.forEach((def, i) => {
      const reason = leaves[i]!.reason;
      if (reason === 'missing') log(`issued ${certPath(pki, def.id)}`);
      else if (reason) log(`reissued ${certPath(pki, def.id)}: ${reason}`);
    });
  }
  await prune(w, pki, oldIndex, new Set(leafDefs.map((d) => d.id)), log);

  const index: Index = { version: 1, certs: Object.fromEntries(leafDefs.map((def) => [def.id, { def }])) };
  const indexText = JSON.stringify(index, null, 2) + '\n';
  if (indexText !== oldIndexText) await w.write(join(pki, INDEX), indexText, PUBLIC_MODE);

  const certs: Record<string, CertKey> = {};
  for (const def of caDefs) {
    const ca = loaded.get(def.id)!;
    await keepPrivate(w, keyPath(pki, def.id), log);
    certs[def.id] = { cert: ca.cert, key: ca.key };
  }
  leafDefs.forEach((def, i) => (certs[def.id] = leaves[i]!.pair));
  // Same order as the certificate list, whatever order the work finished in. Every
  // cluster row of certlist.ts is in defs, so this is a whole Certs.
  return Object.fromEntries(defs.map((d) => [d.id, certs[d.id]!])) as Certs;
}

// ---------------------------------------------------------------- service account

const SA_KEY = 'sa.key';
const SA_PUB = 'sa.pub';

/** Reads sa.key without writing. Like a CA it is never replaced: a new key voids every service-account token. */
export async function readServiceAccountKey(pki: string, alg: KeyAlgorithm): Promise<string | undefined> {
  const file = join(pki, SA_KEY);
  const key = await readIfExists(file);
  if (key === undefined) return undefined;
  let keyObj: KeyObject;
  try {
    keyObj = createPrivateKey(key);
  } catch (e) {
    throw caProblem(pki, `service-account key ${file} cannot be read (${errText(e)})`, 'restore it from a backup');
  }
  const have = keyAlgorithmOf(keyObj);
  if (have !== alg) {
    throw caProblem(pki, `service-account key ${file} is ${have}; the cluster file asks for ${alg}`, `set pki.keyAlgorithm: ${have}`);
  }
  return key;
}

/** Creates the pair when there is none; otherwise derives sa.pub from sa.key so the two always match. */
export async function ensureServiceAccount(w: Writer, pki: string, key: string | undefined, alg: KeyAlgorithm, log: Log): Promise<{ key: string; pub: string }> {
  if (key === undefined) {
    const pair = await generateKeyPair(alg);
    const sa = { key: privateKeyPem(pair.privateKey), pub: publicKeyPem(pair.publicKey) };
    await w.write(join(pki, SA_KEY), sa.key, SECRET_MODE);
    await w.write(join(pki, SA_PUB), sa.pub, PUBLIC_MODE);
    log(`created service-account key pair ${join(pki, SA_KEY)}`);
    return sa;
  }
  await keepPrivate(w, join(pki, SA_KEY), log);
  const pub = createPublicKey(key).export({ type: 'spki', format: 'pem' }) as string;
  if ((await readIfExists(join(pki, SA_PUB))) !== pub) {
    await w.write(join(pki, SA_PUB), pub, PUBLIC_MODE);
    log(`rewrote ${join(pki, SA_PUB)} from ${SA_KEY}`);
  }
  return { key, pub };
}
