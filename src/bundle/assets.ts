// `serve --bundle`: the bundle's bin/ and os/ entries at /assets/bin/... and
// /assets/os/..., read straight from the tar, with the headers the assets directory
// gives (Range, ETag, X-Checksum-Sha256, Digest), and /assets/<dir>/SHA256SUMS written
// from the manifest's digests, so a machine's fetch script checks each binary against
// the digest recorded when the bundle was made, without the provisioner hashing anything.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BAD_ENCODING, decodePath, send, type Handler } from '../serve/http/server.ts';
import { sendRanged } from '../serve/http/assets.ts';
import type { Bundle } from './reader.ts';
import type { TarEntry } from './tarindex.ts';

/** Directories of the bundle served under /assets/. */
const SERVED = ['bin/', 'os/'];

/**
 * Answer GET/HEAD for one entry (or a byte range of it) with the given headers set.
 * `etag` must identify the content (it decides If-None-Match and If-Range).
 */
export async function sendEntry(bundle: Bundle, e: TarEntry, req: IncomingMessage, res: ServerResponse, etag: string, headers: Record<string, string>): Promise<true> {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  return sendRanged(req, res, e.size, etag, (start, end) => bundle.stream(e, start, end));
}

/** `sha256  name` lines (sha256sum's format) for every file under `dir`, names relative to it. */
export function sha256sums(bundle: Bundle, dir: string): string | undefined {
  const lines = bundle.manifest.files
    .filter((f) => f.path.startsWith(dir))
    .map((f) => `${f.sha256}  ${f.path.slice(dir.length)}`)
    .sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1));
  return lines.length ? lines.join('\n') + '\n' : undefined;
}

export function bundleAssetRoutes(bundle: Bundle): Handler {
  const lastModified = new Date(bundle.manifest.created).toUTCString();
  return async (req, res, url) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !url.pathname.startsWith('/assets/')) return false;
    const rel = decodePath(url.pathname.slice('/assets/'.length));
    if (rel === undefined) return send(res, 400, BAD_ENCODING);
    const dir = SERVED.find((d) => rel.startsWith(d));
    if (!dir) return false;
    if (rel === `${dir}SHA256SUMS`) {
      const body = sha256sums(bundle, dir);
      return body === undefined ? false : send(res, 200, body);
    }
    const f = bundle.files.get(rel);
    const e = f && bundle.entries.get(rel);
    // not in the bundle: the assets directory (if any) may have it
    if (!f || !e) return false;
    return sendEntry(bundle, e, req, res, `"${f.sha256.slice(0, 32)}"`, {
      'Content-Type': 'application/octet-stream',
      'Last-Modified': lastModified,
      'X-Checksum-Sha256': f.sha256,
      Digest: `sha-256=${Buffer.from(f.sha256, 'hex').toString('base64')}`,
    });
  };
}
