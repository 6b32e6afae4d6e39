// The pull side of the OCI Distribution spec: manifests by tag or digest, blobs by digest,
// token auth on 401, mirrors from --mirror. Everything that comes back is checked against
// its digest before it is used: a tag's manifest against the registry's
// Docker-Content-Digest, a manifest by digest and every blob against the digest that named it.
import { createHash } from 'node:crypto';
import type { Mirrors, RegistryEndpoint } from '../mirror.ts';
import { download, getSmall, HttpError, request } from '../http.ts';
import { fetchToken } from './auth.ts';
import { type ImageRef, refString } from './ref.ts';
import { MANIFEST_ACCEPT, type Descriptor, parseManifestBytes } from './types.ts';

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
  /** where it was fetched from */
  url: string;
}

const MAX_MANIFEST = 4 << 20; // the Distribution reference implementation's own limit

export class RegistryClient {
  private readonly mirrors: Mirrors;
  /** bearer tokens by endpoint + repository (scopes are per repository) */
  private readonly tokens = new Map<string, string>();

  constructor(mirrors: Mirrors) {
    this.mirrors = mirrors;
  }

  endpoint(ref: ImageRef): RegistryEndpoint {
    return this.mirrors.registry(ref.registry);
  }

  url(ref: ImageRef, kind: 'manifests' | 'blobs', reference: string): string {
    const ep = this.endpoint(ref);
    return `${ep.base}/v2/${ref.repository}/${kind}/${reference}${ep.ns ? `?ns=${encodeURIComponent(ep.ns)}` : ''}`;
  }

  private key(ref: ImageRef): string {
    return `${this.endpoint(ref).base} ${ref.registry}/${ref.repository}`;
  }

  private authHeaders(ref: ImageRef): Record<string, string> {
    const t = this.tokens.get(this.key(ref));
    return t ? { authorization: `Bearer ${t}` } : {};
  }

  /** Answer a 401's challenge: get a pull token for this repository and remember it. */
  private async authenticate(ref: ImageRef, challenge: string | null, url: string): Promise<void> {
    if (!challenge) throw new HttpError(url, 401, `${refString(ref)}: ${url}: HTTP 401 without a WWW-Authenticate challenge`);
    const token = await fetchToken(challenge, `repository:${ref.repository}:pull`, refString(ref));
    this.tokens.set(this.key(ref), token);
  }

  /** GET a manifest (tag or digest), authenticating once if asked to, and check its digest. */
  async manifest(ref: ImageRef, reference: string): Promise<FetchedManifest> {
    const url = this.url(ref, 'manifests', reference);
    const what = `${ref.registry}/${ref.repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const get = () => getSmall(url, { headers: { accept: MANIFEST_ACCEPT, ...this.authHeaders(ref) }, maxBytes: MAX_MANIFEST });
    let r = await get();
    if (r.status === 401) {
      await this.authenticate(ref, r.headers.get('www-authenticate'), url);
      r = await get();
    }
    if (r.status === 404) throw new HttpError(url, 404, `${what}: not found (${url})`);
    if (r.status !== 200) throw new HttpError(url, r.status, `${what}: ${url}: HTTP ${r.status}${errorDetail(r.body)}`);
    const digest = `sha256:${createHash('sha256').update(r.body).digest('hex')}`;
    if (reference.startsWith('sha256:') && digest !== reference) throw new Error(`${what}: registry sent a manifest whose digest is ${digest}`);
    const claimed = r.headers.get('docker-content-digest');
    if (claimed && claimed.startsWith('sha256:') && claimed !== digest) throw new Error(`${what}: manifest digest ${digest} differs from the registry's Docker-Content-Digest ${claimed}`);
    const { mediaType } = parseManifestBytes(r.body, what, r.headers.get('content-type')?.split(';')[0]?.trim());
    return { bytes: r.body, mediaType, digest, url };
  }

  /** Download a blob to `dest` (through `partial`), checked against its descriptor's digest and size. */
  async blob(ref: ImageRef, desc: Descriptor, dest: string, partial: string, onProgress?: (done: number, total: number | undefined) => void): Promise<void> {
    const url = this.url(ref, 'blobs', desc.digest);
    const opts = () => ({
      expect: { algorithm: 'sha256' as const, hex: desc.digest.slice('sha256:'.length) },
      size: desc.size,
      partial,
      headers: this.authHeaders(ref),
      onProgress,
      what: `${refString(ref)} blob ${desc.digest}`,
    });
    try {
      await download(url, dest, opts());
    } catch (e) {
      if (!(e instanceof HttpError) || e.status !== 401) throw e;
      // a token that expired during a long pull: ask for the challenge again, once
      const probe = await request(url, { method: 'HEAD', headers: this.authHeaders(ref) });
      probe.cancel();
      await this.authenticate(ref, probe.res.headers.get('www-authenticate'), url);
      await download(url, dest, opts());
    }
  }
}

/** The first error message of a Distribution error body, for the operator. */
function errorDetail(body: Buffer): string {
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const e = j.errors?.[0];
    return e ? ` (${e.code ?? ''}${e.message ? `: ${e.message}` : ''})` : '';
  } catch {
    return '';
  }
}
