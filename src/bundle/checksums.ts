// Reading the checksum files upstream projects publish, in the three shapes they come in:
//   - one bare digest (dl.k8s.io's <bin>.sha256, crictl's .sha256)
//   - sha256sum/sha512sum lines, "<hex>  <name>" or "<hex> *<name>" (etcd's SHA256SUMS,
//     containerd's .sha256sum, runc.sha256sum, CNI plugins' .sha256)
//   - Flatcar's DIGESTS: sections headed "# MD5 HASH", "# SHA1 HASH", "# SHA512 HASH"
//     (and newer files "# BLAKE2B HASH", whose digests are as long as SHA-512's, so the
//     section, not the length, decides which line is which)
import type { ChecksumSource, HashAlgorithm } from './contents.ts';

const HEX_LENGTH: Record<HashAlgorithm, number> = { sha256: 64, sha512: 128 };

export class ChecksumFileError extends Error {}

/** The digest (lower-case hex) `src` names, read from the checksum file's text. */
export function pickDigest(text: string, src: ChecksumSource): string {
  const len = HEX_LENGTH[src.algorithm];
  const hex = new RegExp(`^[0-9a-fA-F]{${len}}$`);
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const sectioned = lines.some((l) => /^#\s*\S+\s+HASH\s*$/i.test(l));
  let section: string | undefined;
  const found: string[] = [];
  for (const line of lines) {
    const head = /^#\s*(\S+)\s+HASH\s*$/i.exec(line);
    if (head) {
      section = head[1]!.toLowerCase();
      continue;
    }
    if (line.startsWith('#')) continue;
    if (sectioned && section !== src.algorithm) continue;
    const [digest, ...rest] = line.split(/\s+/);
    if (!digest || !hex.test(digest)) continue;
    const name = rest.join(' ').replace(/^\*/, '');
    if (src.entry === undefined) {
      // a one-digest file: a name after it is tolerated, several digests are not
      found.push(digest.toLowerCase());
    } else if (name === src.entry || name.endsWith(`/${src.entry}`)) {
      found.push(digest.toLowerCase());
    }
  }
  const what = src.entry === undefined ? `${src.algorithm} digest` : `${src.algorithm} digest for ${src.entry}`;
  if (found.length === 0) throw new ChecksumFileError(`${src.url}: no ${what} in the checksum file`);
  if (new Set(found).size > 1) throw new ChecksumFileError(`${src.url}: more than one ${what} in the checksum file`);
  return found[0]!;
}
