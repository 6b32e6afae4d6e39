// --mirror: where to fetch instead of upstream. Three forms, tried most specific first:
//
//   --mirror https://dl.k8s.io=http://files.corp/k8s    an upstream URL prefix → another prefix
//   --mirror docker.io=http://registry.corp:5000         a registry → a registry serving the
//                                                        same repository names (a pull-through cache)
//   --mirror http://files.corp/                          everything else: files at
//                                                        <URL>/<host>/<path> (the layout offline
//                                                        file repositories such as kubespray's
//                                                        files_repo use), and every registry as
//                                                        containerd mirrors are asked:
//                                                        <URL>/v2/<repo>/...?ns=<registry>
//
// A mirrored download is never retried upstream: an operator who names a mirror wants to
// know when it lacks something, and a connected machine's bundle must not depend on luck.
// The manifest records both the upstream URL and where the bytes really came from.

export interface RegistryEndpoint {
  /** base URL; requests go to <base>/v2/... */
  base: string;
  /** containerd-style mirrors are told which registry the repository belongs to */
  ns?: string;
}

export interface Mirrors {
  file(url: string): string;
  registry(host: string): RegistryEndpoint;
  /** the rules as given, for dry-run output */
  readonly rules: string[];
}

export class MirrorError extends Error {}

const trimSlash = (s: string) => s.replace(/\/+$/, '');

function checkURL(s: string, arg: string): string {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new MirrorError(`--mirror ${arg}: "${s}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new MirrorError(`--mirror ${arg}: only http and https mirrors`);
  if (u.search || u.hash) throw new MirrorError(`--mirror ${arg}: no query or fragment in a mirror URL`);
  return trimSlash(s);
}

/** Where images of a registry come from when no mirror is named (Docker Hub's API host differs from its name). */
export function upstreamRegistry(host: string): string {
  return host === 'docker.io' ? 'https://registry-1.docker.io' : `https://${host}`;
}

export function parseMirrors(args: string[]): Mirrors {
  const prefixes: [string, string][] = [];
  const registries = new Map<string, string>();
  let catchAll: string | undefined;
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq < 0) {
      if (catchAll !== undefined) throw new MirrorError(`--mirror ${arg}: only one mirror without "FROM=" may be given (already ${catchAll})`);
      catchAll = checkURL(arg, arg);
      continue;
    }
    const from = arg.slice(0, eq);
    const to = checkURL(arg.slice(eq + 1), arg);
    if (from.includes('://')) {
      prefixes.push([trimSlash(checkURL(from, arg)), to]);
    } else {
      if (!/^[a-z0-9.-]+(:\d+)?$/i.test(from)) throw new MirrorError(`--mirror ${arg}: "${from}" is neither a URL nor a registry host name`);
      registries.set(from.toLowerCase(), to);
    }
  }
  // longest prefix wins, so https://github.com/etcd-io can override https://github.com
  prefixes.sort((a, b) => b[0].length - a[0].length);
  return {
    rules: [...args],
    file(url) {
      for (const [from, to] of prefixes) {
        if (url === from || url.startsWith(from + '/')) return to + url.slice(from.length);
      }
      if (catchAll !== undefined) {
        const u = new URL(url);
        return `${catchAll}/${u.host}${u.pathname}${u.search}`;
      }
      return url;
    },
    registry(host) {
      const named = registries.get(host.toLowerCase());
      if (named !== undefined) return { base: named };
      if (catchAll !== undefined) return { base: catchAll, ns: host };
      return { base: upstreamRegistry(host) };
    },
  };
}
