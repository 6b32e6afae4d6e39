// Image references as containerd and Docker read them: "nginx" is
// docker.io/library/nginx:latest; a first component with a dot or a port, or
// "localhost", is a registry host. Images are keyed by registry + repository in the
// bundle, which is what a containerd mirror request names (?ns=<registry>, path <repository>).

export interface ImageRef {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
export const DIGEST = /^sha256:[a-f0-9]{64}$/;

export class RefError extends Error {}

export function parseRef(s: string): ImageRef {
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new RefError(`${s}: bad digest "${digest}" (sha256:<64 hex>)`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new RefError(`${s}: bad tag "${tag}"`);
  }
  const parts = rest.split('/');
  let registry = 'docker.io';
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = 'docker.io';
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  for (const p of parts) if (!COMPONENT.test(p)) throw new RefError(`${s}: bad repository name component "${p}"`);
  if (!tag && !digest) tag = 'latest';
  return { registry, repository: parts.join('/'), tag, digest };
}

export const refString = (r: ImageRef) => `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;

/** A repository name as the Distribution spec allows it in /v2/<name>/... */
export const isRepositoryName = (name: string) => name.length <= 255 && name.split('/').every((p) => COMPONENT.test(p) || /^[a-z0-9.-]+(:\d+)?$/.test(p));
