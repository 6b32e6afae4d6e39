// Text for people: the --dry-run list (exactly what `create` will fetch, from where,
// checked against what, so an operator can have it approved first) and `inspect`'s listing.
import type { BundleContents, Item } from './contents.ts';
import type { Mirrors } from './mirror.ts';
import type { OsImage } from '../image/os-image.ts';
import type { BundleManifest } from './manifest.ts';
import { parseRef } from './oci/ref.ts';

export interface PlannedFetch {
  kind: Item['kind'];
  name: string;
  version: string;
  /** what is fetched (after --mirror) */
  url: string;
  /** upstream, when a mirror rewrote it */
  upstream?: string;
  /** bundle paths it produces (images: oci/) */
  destinations: string[];
  /** how it is checked */
  checksum: string;
  platforms?: string;
}

/**
 * Where the OS image comes from, as the dry run says it: the directory that will be read,
 * or what `create` will do to get one.
 */
export type OsImageSource = { image: OsImage; how: string } | { image?: undefined; how: string };

export function plannedFetches(c: BundleContents, mirrors: Mirrors, platforms: string, os: OsImageSource): PlannedFetch[] {
  const via = (upstream: string) => {
    const url = mirrors.file(upstream);
    return url === upstream ? { url } : { url, upstream };
  };
  const image = (ref: string) => {
    const r = parseRef(ref);
    const ep = mirrors.registry(r.registry);
    const url = `${ep.base}/v2/${r.repository}/manifests/${r.tag ?? r.digest}${ep.ns ? `?ns=${ep.ns}` : ''}`;
    return { url };
  };
  const out: PlannedFetch[] = [];
  for (const i of c.items) {
    switch (i.kind) {
      case 'file':
        out.push({ kind: i.kind, name: i.name, version: i.version, ...via(i.url), destinations: [i.dest], checksum: `${i.checksum.algorithm} from ${mirrors.file(i.checksum.url)}${i.checksum.entry ? ` (${i.checksum.entry})` : ''}` });
        break;
      case 'archive':
        out.push({
          kind: i.kind, name: i.name, version: i.version, ...via(i.url),
          destinations: i.members.map((m) => `${m.dest} (${m.member})`),
          checksum: `${i.checksum.algorithm} from ${mirrors.file(i.checksum.url)}${i.checksum.entry ? ` (${i.checksum.entry})` : ''}`,
        });
        break;
      case 'image-file':
        out.push({ kind: i.kind, name: i.name, version: i.version, ...image(i.image), destinations: [`${i.dest} (/${i.member} of ${i.image}, linux/amd64)`], checksum: `image digest chain (${i.why})` });
        break;
      case 'image':
        out.push({ kind: i.kind, name: i.name, version: i.version, ...image(i.ref), destinations: [`oci/ (${i.ref})`], checksum: 'manifest and blob digests', platforms });
        break;
      case 'os-image': {
        const files = os.image?.files;
        out.push({
          kind: i.kind, name: `${i.name} (${i.os})`, version: os.image?.info.version ?? 'not built yet',
          url: os.image ? `${os.image.dir}/ (${os.how})` : os.how,
          destinations: i.files.map((f) => {
            const x = files?.find((y) => y.role === f.role);
            return x ? `${f.dest} (${x.path.slice(x.path.lastIndexOf('/') + 1)}, ${x.size} bytes)` : f.dest;
          }),
          checksum: 'sha256 from the image\'s os.json (os.json itself: by its bytes), re-hashed while the tar is written',
        });
        break;
      }
    }
  }
  return out;
}

export function dryRunText(c: BundleContents, fetches: PlannedFetch[], mirrors: Mirrors): string {
  const lines = [
    `# slipway bundle for cluster "${c.cluster.name}": Kubernetes ${c.cluster.kubernetesVersion}, OS ${c.os.name}`,
    mirrors.rules.length ? `# mirrors: ${mirrors.rules.join(' ')}` : '# no mirrors: everything from upstream',
    '# nothing has been fetched or written',
  ];
  for (const f of fetches) {
    lines.push('', `${f.kind.toUpperCase()}  ${f.name} ${f.version}`, `  ${f.kind === 'os-image' ? 'from ' : 'fetch'}     ${f.url}`);
    if (f.upstream) lines.push(`  upstream  ${f.upstream}`);
    for (const d of f.destinations) lines.push(`  to        ${d}`);
    lines.push(`  checked   ${f.checksum}`);
    if (f.platforms) lines.push(`  platforms ${f.platforms}`);
  }
  return lines.join('\n') + '\n';
}

const human = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

export function inspectText(path: string, size: number, m: BundleManifest): string {
  const files = m.files.filter((f) => !f.path.startsWith('oci/'));
  const blobs = m.files.filter((f) => f.path.startsWith('oci/blobs/'));
  const lines = [
    `${path}: Slipway bundle for cluster "${m.cluster.name}", Kubernetes ${m.cluster.kubernetesVersion}, OS ${m.os.name} ${m.os.version}`,
    `created ${m.created}; ${human(size)}; ${files.length} files, ${m.images.length} images (${blobs.length} blobs); platforms ${m.platforms === 'all' ? 'all' : m.platforms.join(', ')}`,
    '',
    'FILES',
  ];
  const w = Math.max(...files.map((f) => f.path.length), 4);
  for (const f of files) {
    lines.push(`  ${f.path.padEnd(w)}  ${(f.version ?? '').padEnd(14)} ${human(f.size).padStart(10)}  sha256:${f.sha256}`);
    lines.push(`  ${''.padEnd(w)}  from ${f.source ?? 'generated'}${f.member ? ` (${f.member})` : ''}${f.fetchedFrom ? ` via ${f.fetchedFrom}` : ''}`);
  }
  lines.push('', 'IMAGES');
  for (const im of m.images) {
    const bytes = im.blobs.reduce((n, d) => n + (m.files.find((f) => f.path === `oci/blobs/${d.replace(':', '/')}`)?.size ?? 0), 0);
    lines.push(`  ${im.ref}  ${im.digest}  ${human(bytes)}`);
    const plats = im.manifests.map((x) => x.platform ?? 'single-platform').join(', ');
    lines.push(`    platforms: ${plats}${im.skippedPlatforms.length ? `; not bundled: ${im.skippedPlatforms.join(', ')}` : ''}${im.usedBy ? `; used by ${im.usedBy}` : ''}`);
  }
  return lines.join('\n') + '\n';
}
