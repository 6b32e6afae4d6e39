// slipway-bundle.json, the bundle's first entry: what is inside, where each thing came
// from, and the digest each was checked against. `inspect` prints it, `verify` re-checks
// every entry against it, `serve --bundle` derives SHA256SUMS and the registry's tags from it.
import type { HashAlgorithm } from './contents.ts';

export const MANIFEST_PATH = 'slipway-bundle.json';
export const OCI_DIR = 'oci';

export interface BundleFile {
  /** path inside the tar */
  path: string;
  size: number;
  sha256: string;
  mode: number;
  name?: string;
  version?: string;
  /** upstream URL (for a member: the archive's), or image reference */
  source?: string;
  /** the mirror URL the bytes really came from, when not upstream */
  fetchedFrom?: string;
  /** for files taken out of an archive or an image */
  member?: string;
  /** the published digest that was checked (for members: the archive's) */
  checksum?: { algorithm: HashAlgorithm | 'oci'; digest: string; from: string };
}

export interface BundleImageManifest {
  digest: string;
  mediaType: string;
  size: number;
  platform?: string;
}

export interface BundleImage {
  /** fully qualified reference as the cluster asks for it */
  ref: string;
  registry: string;
  repository: string;
  tag: string;
  /** the tag's manifest digest: the same as upstream's */
  digest: string;
  mediaType: string;
  size: number;
  /** image manifests stored (for an index: the platforms kept) */
  manifests: BundleImageManifest[];
  /** platforms the index lists that are not in the bundle */
  skippedPlatforms: string[];
  /** every blob of this image (manifests, configs, layers) */
  blobs: string[];
  source: string;
  fetchedFrom?: string;
  usedBy?: string;
}

export interface BundleManifest {
  schemaVersion: 1;
  kind: 'SlipwayBundle';
  created: string;
  cluster: { name: string; kubernetesVersion: string };
  /** the OS the os/ entries hold (name as the cluster file's spec.os, version as the image's os.json); channel: older bundles */
  os: { name: string; version: string; channel?: string };
  platforms: string[] | 'all';
  /** every tar entry except this manifest, in tar order */
  files: BundleFile[];
  images: BundleImage[];
}

export class ManifestError extends Error {}

/** Parse and check the manifest's shape; every problem names the field. */
export function parseBundleManifest(text: string, where: string): BundleManifest {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`${where}: ${MANIFEST_PATH} is not valid JSON (${(e as Error).message})`);
  }
  const m = j as Partial<BundleManifest>;
  const bad = (field: string) => new ManifestError(`${where}: ${MANIFEST_PATH}: ${field}`);
  if (!m || typeof m !== 'object' || m.kind !== 'SlipwayBundle') throw bad('not a Slipway bundle manifest (kind is not SlipwayBundle)');
  if (m.schemaVersion !== 1) throw bad(`unsupported schemaVersion ${JSON.stringify(m.schemaVersion)}`);
  if (!Array.isArray(m.files)) throw bad('files is not a list');
  if (!Array.isArray(m.images)) throw bad('images is not a list');
  const paths = new Set<string>();
  m.files.forEach((f, i) => {
    if (!f || typeof f.path !== 'string' || !f.path || f.path.startsWith('/') || f.path.split('/').includes('..')) throw bad(`files[${i}].path is missing or not a relative path`);
    if (typeof f.size !== 'number' || !Number.isSafeInteger(f.size) || f.size < 0) throw bad(`files[${i}] (${f.path}): size is not a byte count`);
    if (typeof f.sha256 !== 'string' || !/^[a-f0-9]{64}$/.test(f.sha256)) throw bad(`files[${i}] (${f.path}): sha256 is not 64 hex digits`);
    if (paths.has(f.path)) throw bad(`files[${i}]: ${f.path} is listed twice`);
    paths.add(f.path);
  });
  m.images.forEach((im, i) => {
    const digest = (d: unknown) => typeof d === 'string' && /^sha256:[a-f0-9]{64}$/.test(d);
    if (!im || typeof im.registry !== 'string' || typeof im.repository !== 'string' || typeof im.tag !== 'string') throw bad(`images[${i}]: registry, repository and tag are required`);
    if (!digest(im.digest)) throw bad(`images[${i}] (${im.ref}): digest is not sha256:<64 hex>`);
    if (!Array.isArray(im.blobs) || !im.blobs.every(digest)) throw bad(`images[${i}] (${im.ref}): blobs is not a list of digests`);
    if (!Array.isArray(im.manifests) || !im.manifests.every((x) => x && digest(x.digest) && typeof x.mediaType === 'string')) throw bad(`images[${i}] (${im.ref}): manifests is not a list of descriptors`);
    if (!Array.isArray(im.skippedPlatforms)) throw bad(`images[${i}] (${im.ref}): skippedPlatforms is not a list`);
  });
  return m as BundleManifest;
}

export const blobPath = (digest: string) => `${OCI_DIR}/blobs/${digest.replace(':', '/')}`;
