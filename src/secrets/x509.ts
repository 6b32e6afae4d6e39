// Issuing certificates from CertDef rows with @peculiar/x509 on Node's WebCrypto.
// Everything here is in memory; store.ts owns the files. Keys are generated through
// WebCrypto, whose async calls run on libuv's thread pool, so callers may issue many
// certificates concurrently.
import 'reflect-metadata'; // tsyringe (inside @peculiar/x509) needs the Reflect metadata API loaded first
import { webcrypto, randomBytes, KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { KeyAlgorithm } from '../spec/types.ts';
import type { CertDef } from './certlist.ts';

const crypto = webcrypto as unknown as Crypto;

/** Backdate notBefore so a machine whose clock lags a little still accepts fresh certificates (kubeadm uses 5 min too). */
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

function keyParams(alg: KeyAlgorithm): RsaHashedKeyGenParams | EcKeyGenParams {
  return alg === 'rsa-2048'
    ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) }
    : { name: 'ECDSA', namedCurve: 'P-256' };
}

/** ECDSA needs the hash named at signing time; RSASSA carries it in the key. */
function signingAlgorithm(alg: KeyAlgorithm): Algorithm | EcdsaParams {
  return alg === 'rsa-2048' ? { name: 'RSASSA-PKCS1-v1_5' } : { name: 'ECDSA', hash: 'SHA-256' };
}

export async function generateKeyPair(alg: KeyAlgorithm): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(keyParams(alg), true, ['sign', 'verify']);
}

/** Imports a PKCS#8 PEM private key for signing (a CA key loaded from the state directory). */
export async function importSigningKey(pem: string, alg: KeyAlgorithm): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return crypto.subtle.importKey('pkcs8', der, keyParams(alg), false, ['sign']);
}

export function privateKeyPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** SubjectPublicKeyInfo PEM ("PUBLIC KEY"), the format kube-apiserver reads for sa.pub. */
export function publicKeyPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'spki', format: 'pem' }) as string;
}

/** 128 random bits; the library adds a leading zero octet when needed to keep the DER INTEGER positive. */
function serialNumber(): string {
  let b = randomBytes(16);
  // An all-zero serial would make the library pick its own; redraw instead (odds 2^-128).
  while (b.every((x) => x === 0)) b = randomBytes(16);
  return b.toString('hex');
}

/** X.509 times have one-second resolution; truncating keeps what we compute equal to what we parse back. */
const wholeSeconds = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);

function subjectOf(def: CertDef): x509.JsonName {
  // O before CN, as Go and cfssl order them; Kubernetes reads O as groups and CN as user.
  return [...(def.o ?? []).map((o) => ({ O: [o] })), { CN: [def.cn] }];
}

function keyUsageFlags(def: CertDef, alg: KeyAlgorithm): number {
  const F = x509.KeyUsageFlags;
  if (def.isCA) return F.keyCertSign | F.cRLSign | F.digitalSignature;
  // keyEncipherment only means something for RSA key transport; it is wrong on an EC key.
  return alg === 'rsa-2048' ? F.digitalSignature | F.keyEncipherment : F.digitalSignature;
}

function extendedKeyUsages(def: CertDef): string[] {
  return def.usages.map((u) => (u === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth));
}

function sanExtension(def: CertDef): x509.Extension[] {
  if (!def.sans) return [];
  const names: x509.JsonGeneralName[] = [
    ...def.sans.dns.map((value) => ({ type: 'dns' as const, value })),
    ...def.sans.ip.map((value) => ({ type: 'ip' as const, value })),
  ];
  return names.length ? [new x509.SubjectAlternativeNameExtension(names, false)] : [];
}

/** The CA side of issuing: its name (reused byte for byte as the leaf's issuer), key id and signing key. */
export interface Issuer {
  name: x509.Name;
  keyId: string;
  key: CryptoKey;
  alg: KeyAlgorithm;
  /** the CA's own end: no certificate it signs may outlive it */
  notAfter: Date;
}

export function issuerFrom(certPem: string, key: CryptoKey, alg: KeyAlgorithm): Issuer {
  const cert = new x509.X509Certificate(certPem);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`CA certificate "${cert.subject}" has no subject key identifier`);
  return { name: cert.subjectName, keyId: ski.keyId, key, alg, notAfter: cert.notAfter };
}

export interface Issued {
  cert: string;
  key: string;
  /** present for CAs, so leaves can be signed without re-parsing the PEM */
  issuer?: Issuer;
}

/**
 * Issues one certificate. A CA row (isCA, ca === null) is self-signed and needs no
 * issuer; a leaf needs the issuer of the CA named in def.ca.
 */
export async function issue(def: CertDef, alg: KeyAlgorithm, issuer?: Issuer, now = Date.now()): Promise<Issued> {
  if (!def.isCA && !issuer) throw new Error(`certificate ${def.id}: no issuer given for CA ${def.ca}`);
  if (issuer && issuer.alg !== alg) throw new Error(`certificate ${def.id}: CA is ${issuer.alg}, asked for ${alg}`);
  const keys = await generateKeyPair(alg);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(def.isCA, undefined, true),
    new x509.KeyUsagesExtension(keyUsageFlags(def, alg), true),
    ...(def.usages.length ? [new x509.ExtendedKeyUsageExtension(extendedKeyUsages(def), false)] : []),
    ski,
    ...(issuer ? [new x509.AuthorityKeyIdentifierExtension(issuer.keyId, false)] : []),
    ...sanExtension(def),
  ];
  const subject = new x509.Name(subjectOf(def));
  const wanted = wholeSeconds(now + def.validityDays * DAY_MS);
  const notAfter = issuer && issuer.notAfter < wanted ? issuer.notAfter : wanted;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject,
      issuer: issuer ? issuer.name : subject,
      notBefore: wholeSeconds(now - BACKDATE_MS),
      notAfter,
      publicKey: keys.publicKey,
      signingKey: issuer ? issuer.key : keys.privateKey,
      signingAlgorithm: signingAlgorithm(alg),
      extensions,
    },
    crypto,
  );
  const certPem = cert.toString('pem') + '\n';
  const result: Issued = { cert: certPem, key: privateKeyPem(keys.privateKey) };
  if (def.isCA) result.issuer = { name: subject, keyId: ski.keyId, key: keys.privateKey, alg, notAfter };
  return result;
}
