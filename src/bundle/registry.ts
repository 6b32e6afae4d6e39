// A read-only OCI Distribution registry over a bundle (the spec's pull side): /v2/,
// manifests and blobs by tag or digest, GET and HEAD, Range on blobs, tags/list and
// _catalog (with n/last pagination), Docker-Content-Digest and the manifest's own
// media type. Bytes come straight out of the tar.
//
// Repository names: images are keyed by upstream registry + repository, so both ways a
// client can ask find them:
//   - as a containerd mirror (hosts.toml points registry.k8s.io, docker.io, ... here):
//     GET /v2/pause/manifests/3.10?ns=registry.k8s.io, /v2/library/nginx/...?ns=docker.io
//   - directly, naming the registry in the path (skopeo, crane, curl):
//     GET /v2/registry.k8s.io/pause/manifests/3.10
//   - directly, without it: /v2/pause/... finds the one registry that has "pause"
//     (tried in MIRRORED_REGISTRIES order), /v2/nginx/... Docker Hub's library/nginx.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodePath, type Handler } from '../serve/http/server.ts';
import { MIRRORED_REGISTRIES } from '../catalog/cluster.ts';
import { sendEntry } from './assets.ts';
import { blobPath } from './manifest.ts';
import type { Bundle } from './reader.ts';
import { DIGEST } from './oci/ref.ts';
import { parseManifestBytes, platformString } from './oci/types.ts';

interface Repo {
  registry: string;
  repository: string;
  tags: Map<string, string>;
  /** manifest digest → media type */
  manifests: Map<string, string>;
  blobs: Set<string>;
  /** children of a stored index that were not bundled → their platform, for a helpful 404 */
  absent: Map<string, string>;
}

export interface RegistryIndex {
  repos: Map<string, Repo>;
}

const DOCKER_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const normalizeRegistry = (r: string) => (DOCKER_ALIASES.has(r.toLowerCase()) ? 'docker.io' : r.toLowerCase());

/** Repositories, tags and digests from the manifest; absent children from the stored indexes. */
export async function registryIndex(bundle: Bundle): Promise<RegistryIndex> {
  const repos = new Map<string, Repo>();
  for (const im of bundle.manifest.images) {
    const key = `${im.registry}/${im.repository}`;
    let r = repos.get(key);
    if (!r) repos.set(key, (r = { registry: im.registry, repository: im.repository, tags: new Map(), manifests: new Map(), blobs: new Set(), absent: new Map() }));
    if (im.tag) r.tags.set(im.tag, im.digest);
    r.manifests.set(im.digest, im.mediaType);
    for (const m of im.manifests) r.manifests.set(m.digest, m.mediaType);
    for (const b of im.blobs) r.blobs.add(b);
    const top = bundle.entries.get(blobPath(im.digest));
    if (top && im.skippedPlatforms.length) {
      const p = parseManifestBytes(await bundle.read(top), im.ref);
      for (const d of p.index?.manifests ?? []) if (!r.manifests.has(d.digest)) r.absent.set(d.digest, d.platform ? platformString(d.platform) : 'unknown platform');
    }
  }
  return { repos };
}

const API_HEADER = { 'Docker-Distribution-API-Version': 'registry/2.0' };

function sendJSON(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): true {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...API_HEADER, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...extra });
  res.end(req.method === 'HEAD' ? undefined : text);
  return true;
}

const error = (req: IncomingMessage, res: ServerResponse, status: number, code: string, message: string, detail?: unknown) =>
  sendJSON(req, res, status, { errors: [{ code, message, ...(detail === undefined ? {} : { detail }) }] });

/** The n/last window of a sorted list, and the Link header to the next page (Distribution spec pagination). */
function page(list: string[], url: URL): { items: string[]; link?: string } {
  const nParam = url.searchParams.get('n');
  const last = url.searchParams.get('last');
  let items = last ? list.filter((x) => x > last) : list;
  if (nParam === null) return { items };
  const n = Math.max(0, Number.parseInt(nParam, 10) || 0);
  const more = items.length > n;
  items = items.slice(0, n);
  if (!more || items.length === 0) return { items };
  const next = new URL(url.pathname, 'http://x');
  for (const [k, v] of url.searchParams) if (k !== 'last') next.searchParams.set(k, v);
  next.searchParams.set('last', items[items.length - 1]!);
  return { items, link: `<${next.pathname}${next.search}>; rel="next"` };
}

export function registryRoutes(bundle: Bundle, index: RegistryIndex): Handler {
  const registries = [...new Set([...MIRRORED_REGISTRIES, ...[...index.repos.values()].map((r) => r.registry).sort()])];

  const resolve = (name: string, ns: string | null): Repo | undefined => {
    if (ns) {
      const reg = normalizeRegistry(ns);
      return index.repos.get(`${reg}/${name}`) ?? (reg === 'docker.io' && !name.includes('/') ? index.repos.get(`docker.io/library/${name}`) : undefined);
    }
    const direct = index.repos.get(name);
    if (direct) return direct;
    const slash = name.indexOf('/');
    if (slash > 0 && DOCKER_ALIASES.has(name.slice(0, slash))) return resolve(name.slice(slash + 1), 'docker.io');
    for (const reg of registries) {
      const r = index.repos.get(`${reg}/${name}`) ?? (reg === 'docker.io' && !name.includes('/') ? index.repos.get(`docker.io/library/${name}`) : undefined);
      if (r) return r;
    }
    return undefined;
  };

  const manifest = (req: IncomingMessage, res: ServerResponse, repo: Repo, reference: string) => {
    const digest = DIGEST.test(reference) ? reference : repo.tags.get(reference);
    const mediaType = digest && repo.manifests.get(digest);
    const entry = digest && bundle.entries.get(blobPath(digest));
    if (!digest || !mediaType || !entry) {
      const platform = digest && repo.absent.get(digest);
      const message = platform ? `manifest unknown: ${platform} was not included in this bundle` : 'manifest unknown';
      return error(req, res, 404, 'MANIFEST_UNKNOWN', message, { name: `${repo.registry}/${repo.repository}`, reference });
    }
    return sendEntry(bundle, entry, req, res, `"${digest}"`, { ...API_HEADER, 'Content-Type': mediaType, 'Docker-Content-Digest': digest });
  };

  const blob = (req: IncomingMessage, res: ServerResponse, repo: Repo, digest: string) => {
    if (!DIGEST.test(digest)) return error(req, res, 400, 'DIGEST_INVALID', 'provided digest did not match uploaded content', { digest });
    const entry = repo.blobs.has(digest) ? bundle.entries.get(blobPath(digest)) : undefined;
    if (!entry) return error(req, res, 404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest });
    return sendEntry(bundle, entry, req, res, `"${digest}"`, {
      ...API_HEADER,
      'Content-Type': 'application/octet-stream',
      'Docker-Content-Digest': digest,
      // content-addressed: a digest's bytes never change
      'Cache-Control': 'max-age=31536000, immutable',
    });
  };

  return async (req, res, url) => {
    const path = url.pathname;
    if (path !== '/v2' && !path.startsWith('/v2/')) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return error(req, res, 405, 'UNSUPPORTED', 'this registry is read-only (it serves a Slipway bundle)');
    }
    if (path === '/v2' || path === '/v2/') return sendJSON(req, res, 200, {});
    const ns = url.searchParams.get('ns');
    if (path === '/v2/_catalog') {
      const reg = ns && normalizeRegistry(ns);
      const names = [...index.repos.values()].filter((r) => !reg || r.registry === reg).map((r) => (reg ? r.repository : `${r.registry}/${r.repository}`)).sort();
      const p = page(names, url);
      return sendJSON(req, res, 200, { repositories: p.items }, p.link ? { Link: p.link } : {});
    }
    let m = /^\/v2\/(.+)\/tags\/list$/.exec(path);
    if (m) {
      const repo = resolve(m[1]!, ns);
      if (!repo) return error(req, res, 404, 'NAME_UNKNOWN', 'repository name not known to registry', { name: m[1] });
      const p = page([...repo.tags.keys()].sort(), url);
      return sendJSON(req, res, 200, { name: m[1], tags: p.items }, p.link ? { Link: p.link } : {});
    }
    m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
    if (!m) return error(req, res, 404, 'UNSUPPORTED', 'not a registry API path');
    const reference = decodePath(m[3]!);
    if (reference === undefined) return error(req, res, 400, 'DIGEST_INVALID', 'malformed percent-encoding in the reference', { reference: m[3] });
    const repo = resolve(m[1]!, ns);
    if (!repo) return error(req, res, 404, 'NAME_UNKNOWN', 'repository name not known to registry', { name: m[1], ...(ns ? { ns } : {}) });
    return m[2] === 'manifests' ? manifest(req, res, repo, reference) : blob(req, res, repo, reference);
  };
}
