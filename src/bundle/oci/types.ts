// OCI image-spec and Docker schema 2 shapes, just as far as pulling and serving need them.

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  ociLayout: 'application/vnd.oci.image.layout.v1+json',
} as const;

/** What a registry is asked to send (schema 1 is not asked for: it has no content-addressed config). */
export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(', ');

export const isIndex = (mt: string | undefined) => mt === MEDIA.ociIndex || mt === MEDIA.dockerList;
export const isImageManifest = (mt: string | undefined) => mt === MEDIA.ociManifest || mt === MEDIA.dockerManifest;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface IndexJSON {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ManifestJSON {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export const platformString = (p: Platform) => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;

export function parsePlatform(s: string): Platform {
  const [os, architecture, variant, extra] = s.split('/');
  if (!os || !architecture || extra !== undefined) throw new Error(`bad platform "${s}" (os/arch[/variant], e.g. linux/amd64)`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/** Does the descriptor's platform satisfy `want`? A wanted variant must match; an unwanted one is ignored (linux/arm64 takes linux/arm64/v8). */
export const platformMatches = (have: Platform | undefined, want: Platform) =>
  !!have && have.os === want.os && have.architecture === want.architecture && (!want.variant || have.variant === want.variant);

/** Parse a manifest's bytes, checking the shape the rest of the code relies on; `what` names it in errors. */
export function parseManifestBytes(bytes: Buffer, what: string, mediaTypeHint?: string): { mediaType: string; index?: IndexJSON; manifest?: ManifestJSON } {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Error(`${what}: manifest is not JSON`);
  }
  const o = j as Record<string, unknown>;
  if (o.schemaVersion === 1) throw new Error(`${what}: Docker schema 1 manifests are not supported (ask the registry for schema 2 or OCI)`);
  if (o.schemaVersion !== 2) throw new Error(`${what}: unknown manifest schemaVersion ${JSON.stringify(o.schemaVersion)}`);
  const mediaType = typeof o.mediaType === 'string' ? o.mediaType : (Array.isArray(o.manifests) ? MEDIA.ociIndex : mediaTypeHint ?? MEDIA.ociManifest);
  const desc = (d: unknown, where: string): Descriptor => {
    const x = d as Record<string, unknown>;
    if (!x || typeof x.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(x.digest) || typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0 || typeof x.mediaType !== 'string')
      throw new Error(`${what}: ${where} is not a valid sha256 descriptor`);
    return x as unknown as Descriptor;
  };
  if (isIndex(mediaType)) {
    if (!Array.isArray(o.manifests)) throw new Error(`${what}: index has no manifests list`);
    o.manifests.forEach((m, i) => desc(m, `manifests[${i}]`));
    return { mediaType, index: o as unknown as IndexJSON };
  }
  if (isImageManifest(mediaType)) {
    desc(o.config, 'config');
    if (!Array.isArray(o.layers)) throw new Error(`${what}: manifest has no layers list`);
    o.layers.forEach((l, i) => desc(l, `layers[${i}]`));
    return { mediaType, manifest: o as unknown as ManifestJSON };
  }
  throw new Error(`${what}: unsupported manifest media type ${mediaType}`);
}
