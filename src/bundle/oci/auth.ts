// Registry token auth (the Docker token spec every public registry uses for anonymous
// pulls): a 401 names a token realm in `WWW-Authenticate: Bearer realm=...,service=...,
// scope=...`; the client asks the realm for a token for that scope and retries with it.
import { getSmall, HttpError } from '../http.ts';

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** RFC 7235 challenges; values may be quoted strings with commas inside (scope="repository:x:pull,push"). */
export function parseChallenges(h: string): Challenge[] {
  const out: Challenge[] = [];
  let cur: Challenge | undefined;
  let i = 0;
  const blank = (c: string | undefined) => c === ' ' || c === '\t';
  for (;;) {
    while (i < h.length && (blank(h[i]) || h[i] === ',')) i++;
    const tok = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(h.slice(i));
    if (!tok) break;
    i += tok[0].length;
    let j = i;
    while (blank(h[j])) j++;
    if (h[j] !== '=' || !cur) {
      // an auth scheme starts a new challenge
      cur = { scheme: tok[0], params: {} };
      out.push(cur);
      continue;
    }
    i = j + 1;
    while (blank(h[i])) i++;
    let value = '';
    if (h[i] === '"') {
      for (i++; i < h.length && h[i] !== '"'; i++) value += h[i] === '\\' ? (h[++i] ?? '') : h[i];
      i++;
    } else {
      value = /^[^,\s]*/.exec(h.slice(i))![0];
      i += value.length;
    }
    cur.params[tok[0].toLowerCase()] = value;
  }
  return out;
}

export class AuthError extends Error {}

/**
 * A token for `scope` from the challenge's realm. Anonymous: Slipway bundles public
 * images; a registry that wants credentials (Basic, or a realm refusing anonymous
 * tokens) is reported as such.
 */
export async function fetchToken(challengeHeader: string, scope: string, what: string): Promise<string> {
  const bearer = parseChallenges(challengeHeader).find((c) => c.scheme.toLowerCase() === 'bearer');
  if (!bearer) throw new AuthError(`${what}: the registry asks for ${challengeHeader.split(/\s/)[0]} authentication; Slipway pulls anonymously (use a mirror that serves the image without credentials)`);
  const realm = bearer.params.realm;
  if (!realm) throw new AuthError(`${what}: Bearer challenge without a realm: ${challengeHeader}`);
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new AuthError(`${what}: token realm "${realm}" is not a URL`);
  }
  if (bearer.params.service) url.searchParams.set('service', bearer.params.service);
  url.searchParams.set('scope', bearer.params.scope ?? scope);
  const r = await getSmall(url.toString(), { maxBytes: 1 << 20 });
  if (r.status !== 200) throw new HttpError(url.toString(), r.status, `${what}: token server ${url.origin}${url.pathname} answered HTTP ${r.status}`);
  let j: { token?: unknown; access_token?: unknown };
  try {
    j = JSON.parse(r.body.toString('utf8')) as typeof j;
  } catch {
    throw new AuthError(`${what}: token server ${url.origin}${url.pathname} did not answer JSON`);
  }
  const token = typeof j.token === 'string' && j.token ? j.token : typeof j.access_token === 'string' ? j.access_token : '';
  if (!token) throw new AuthError(`${what}: token server ${url.origin}${url.pathname} returned no token`);
  return token;
}
