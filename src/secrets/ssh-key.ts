// The provisioner's own SSH key (`slipway apply` delivers changes with it): ed25519 in
// OpenSSH's private-key format, which ssh(1) reads directly. Node's crypto makes the key;
// the format is a few length-prefixed strings (PROTOCOL.key in OpenSSH's source), written
// here so no ssh-keygen is needed to render. Unencrypted, like every key in the state
// directory: the file is 0600 and the directory 0700.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';
export const PROVISIONER_KEY_COMMENT = 'slipway-provisioner';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const str = (b: Buffer | string): Buffer => {
  const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  return Buffer.concat([u32(buf.length), buf]);
};

/** The wire form of an ed25519 public key (RFC 8709): string "ssh-ed25519", string key. */
const publicBlob = (pub: Buffer): Buffer => Buffer.concat([str('ssh-ed25519'), str(pub)]);

export interface SshKeyPair {
  /** the OpenSSH private key file's text */
  privateKey: string;
  /** one authorized_keys line: "ssh-ed25519 AAAA... slipway-provisioner" */
  publicKey: string;
}

function encode(seed: Buffer, pub: Buffer, comment: string): SshKeyPair {
  const check = randomBytes(4);
  let priv = Buffer.concat([check, check, str('ssh-ed25519'), str(pub), str(Buffer.concat([seed, pub])), str(comment)]);
  // padded with 1, 2, 3, ... to the cipher's block size (8 for "none")
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([MAGIC, str('none'), str('none'), str(''), u32(1), str(publicBlob(pub)), str(priv)]).toString('base64');
  const lines = body.match(/.{1,70}/g)!;
  return { privateKey: `${BEGIN}\n${lines.join('\n')}\n${END}\n`, publicKey: `ssh-ed25519 ${publicBlob(pub).toString('base64')} ${comment}` };
}

export function newSshKey(comment = PROVISIONER_KEY_COMMENT): SshKeyPair {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return encode(Buffer.from(jwk.d!, 'base64url'), Buffer.from(jwk.x!, 'base64url'), comment);
}

/**
 * Reads an unencrypted ed25519 OpenSSH private key (ours, or ssh-keygen's) and returns it
 * with its public line; throws naming `file` and what is wrong. The private half is
 * checked against the public one, so a damaged file is refused rather than trusted.
 */
export function parseSshKey(text: string, file: string): SshKeyPair {
  const fail = (why: string) => new Error(`${file}: ${why}. It is the provisioner's SSH key, trusted by every installed machine: restore it from a backup (a new key must first reach every machine's authorized_keys some other way)`);
  const m = text.match(/-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/);
  if (!m) throw fail('not an OpenSSH private key');
  const buf = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  let at = 0;
  const take = (n: number): Buffer => {
    if (at + n > buf.length) throw fail('the key is cut short');
    const out = buf.subarray(at, at + n);
    at += n;
    return out;
  };
  const readU32 = () => take(4).readUInt32BE();
  const readStr = () => take(readU32());
  if (!take(MAGIC.length).equals(MAGIC)) throw fail('not an OpenSSH private key');
  if (readStr().toString() !== 'none' || readStr().toString() !== 'none') throw fail('the key is encrypted (Slipway needs it without a passphrase)');
  readStr();
  if (readU32() !== 1) throw fail('it must hold exactly one key');
  const pubBlob = readStr();
  const priv = readStr();
  // the private section, parsed on its own
  const p = { buf: priv, at: 0 };
  const ptake = (n: number): Buffer => {
    if (p.at + n > priv.length) throw fail('the key is cut short');
    const out = priv.subarray(p.at, p.at + n);
    p.at += n;
    return out;
  };
  const pstr = () => ptake(ptake(4).readUInt32BE());
  const c1 = ptake(4);
  const c2 = ptake(4);
  if (!c1.equals(c2)) throw fail('the key is damaged (check numbers differ)');
  if (pstr().toString() !== 'ssh-ed25519') throw fail('not an ed25519 key');
  const pub = pstr();
  const both = pstr();
  const comment = pstr().toString('utf8');
  if (pub.length !== 32 || both.length !== 64 || !both.subarray(32).equals(pub) || !publicBlob(pub).equals(pubBlob)) throw fail('the key is damaged (its halves do not match)');
  // The seed must really give this public key.
  const derived = createPublicKey(createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: both.subarray(0, 32).toString('base64url'), x: pub.toString('base64url') }, format: 'jwk' })).export({ format: 'jwk' });
  if (Buffer.from(derived.x!, 'base64url').compare(pub) !== 0) throw fail('the key is damaged (its private half does not give its public half)');
  return { privateKey: text, publicKey: `ssh-ed25519 ${pubBlob.toString('base64')} ${comment || PROVISIONER_KEY_COMMENT}` };
}

/** OpenSSH's fingerprint of a public key line ("SHA256:..." as ssh-keygen -l prints it). */
export function sshFingerprint(publicLine: string): string {
  const b64 = publicLine.trim().split(/\s+/)[1] ?? '';
  return 'SHA256:' + createHash('sha256').update(Buffer.from(b64, 'base64')).digest('base64').replace(/=+$/, '');
}
