// `slipway bundle create`: fetch everything the contents list names (from upstream or
// the mirrors), check each against its published digest, and write one tar.
//
// Resumable: every verified download lands content-addressed in <output>.parts/
// (files/<algorithm>-<digest>, blobs/sha256/<digest>), so a second run after a failure
// only fetches the checksum files and tag manifests again (they may have moved) and what
// is still missing; a half-finished download is kept in partial/ and resumed with Range.
// Atomic: the tar is written beside the output under a temporary name and renamed at the
// very end, so a failed run leaves no bundle (and never a half-written one).
//
// The OS image is not downloaded: it is a directory `slipway image build` made, given as
// `osImage`; its files go in under os/ with os.json's digests, re-checked while the tar
// is written like every cached download.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, rmSync } from 'node:fs';
import { access, mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { once } from 'node:events';
import tar from 'tar-stream';
import { destinations, type ArchiveItem, type BundleContents, type FileItem, type ImageFileItem, type ImageItem, type OsImageItem } from './contents.ts';
import type { OsImage } from '../image/os-image.ts';
import { sha256File } from '../lib/sha256.ts';
import { pickDigest } from './checksums.ts';
import { download, getText } from './http.ts';
import { upstreamRegistry, type Mirrors } from './mirror.ts';
import type { Progress } from './progress.ts';
import { mapLimit } from './limit.ts';
import { extractFromLayers, extractMembers, compressionOf } from './archive.ts';
import { RegistryClient } from './oci/client.ts';
import { BlobStore, pullImage, type PulledImage } from './oci/pull.ts';
import { layoutIndex, OCI_LAYOUT } from './oci/layout.ts';
import { platformString, type Descriptor, type Platform } from './oci/types.ts';
import { MANIFEST_PATH, OCI_DIR, blobPath, type BundleFile, type BundleImage, type BundleManifest } from './manifest.ts';

export interface CreateOptions {
  contents: BundleContents;
  /** the OS image directory read (image/os-image.ts readOsImage): required when the contents have an os-image item */
  osImage?: OsImage;
  output: string;
  mirrors: Mirrors;
  /** platforms kept from multi-platform images (default linux/amd64), or every one listed */
  platforms: Platform[] | 'all';
  progress: Progress;
  /** downloads at once (default 4) */
  concurrency?: number;
  /** keep <output>.parts/ after success (default: removed) */
  keepParts?: boolean;
}

export interface CreateResult {
  manifest: BundleManifest;
  bytes: number;
  /** downloads reused from the parts cache */
  reused: number;
  fetched: number;
}

export class BundleCreateError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.length === 1 ? problems[0]! : `${problems.length} problems:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

/** A file to put in the tar: where its bytes are now, and what the manifest says about it. */
interface Planned {
  from: string;
  row: BundleFile;
  /** `from` is the user's (the OS image directory), not the parts cache: never removed */
  theirs?: true;
}

const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const exists = (p: string) => access(p).then(() => true, () => false);
const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');

export const partsDirFor = (output: string) => `${output}.parts`;

/** Tars being written, for an interrupted run to remove (the parts cache stays: it is what resumes). */
const temporaries = new Set<string>();
export function removeTemporaries(): void {
  for (const t of temporaries) rmSync(t, { force: true });
  temporaries.clear();
}

export async function createBundle(o: CreateOptions): Promise<CreateResult> {
  const parts = partsDirFor(o.output);
  const dirs = { files: join(parts, 'files'), partial: join(parts, 'partial') };
  await mkdir(dirs.files, { recursive: true });
  await mkdir(dirs.partial, { recursive: true });
  const store = new BlobStore(join(parts, 'blobs'));
  await store.init();
  const client = new RegistryClient(o.mirrors);
  const concurrency = o.concurrency ?? 4;
  const problems: string[] = [];
  let reused = 0;
  let fetched = 0;

  const contents = o.contents;
  checkDestinations(contents);

  // checksum files, each fetched once per run (etcd's SHA256SUMS serves two members)
  const sums = new Map<string, Promise<string>>();
  const checksumText = (url: string) => {
    let p = sums.get(url);
    if (!p) sums.set(url, (p = getText(url)));
    return p;
  };

  /** A download checked against its published digest; returns the verified file in the cache. */
  const fetchVerified = async (item: FileItem | ArchiveItem): Promise<{ file: string; digest: string; sumURL: string; url: string }> => {
    const sumURL = o.mirrors.file(item.checksum.url);
    const label = `${item.name} ${item.version}`;
    let digest: string;
    try {
      digest = pickDigest(await checksumText(sumURL), { ...item.checksum, url: sumURL });
    } catch (e) {
      throw new Error(`${label}: checksum file: ${(e as Error).message}`);
    }
    const file = join(dirs.files, `${item.checksum.algorithm}-${digest}`);
    const url = o.mirrors.file(item.url);
    if (await exists(file)) {
      reused++;
      o.progress.start(label, undefined).done('cached');
      return { file, digest, sumURL, url };
    }
    const bar = o.progress.start(label, undefined);
    try {
      await download(url, file, {
        expect: { algorithm: item.checksum.algorithm, hex: digest },
        // keyed by URL and digest: bytes of a release that has since been re-published are not resumed
        partial: join(dirs.partial, sha256Hex(`${url}\n${digest}`).slice(0, 32)),
        what: label,
        onProgress: (done, total) => bar.update(done, total),
      });
    } catch (e) {
      bar.fail((e as Error).message);
      throw new Error(`${(e as Error).message} (checksum from ${sumURL})`);
    }
    fetched++;
    bar.done();
    return { file, digest, sumURL, url };
  };

  const planned: Planned[] = [];
  const mirrored = (upstream: string, url: string) => (url !== upstream ? { fetchedFrom: url } : {});

  const fileItem = async (item: FileItem) => {
    const v = await fetchVerified(item);
    const sha256 = item.checksum.algorithm === 'sha256' ? v.digest : await sha256File(v.file);
    const size = (await stat(v.file)).size;
    planned.push({
      from: v.file,
      row: {
        path: item.dest, size, sha256, mode: modeFor(item.dest), name: item.name, version: item.version, source: item.url, ...mirrored(item.url, v.url),
        checksum: { algorithm: item.checksum.algorithm, digest: v.digest, from: item.checksum.url },
      },
    });
  };

  const archiveItem = async (item: ArchiveItem) => {
    const v = await fetchVerified(item);
    const got = await extractMembers(v.file, `${item.name} ${item.version} (${item.url})`, 'gzip', item.members.map((m) => m.member), dirs.files);
    for (const m of item.members) {
      const x = got.get(m.member.replace(/^\.\//, ''))!;
      planned.push({
        from: x.path,
        row: {
          path: m.dest, size: x.size, sha256: x.sha256, mode: modeFor(m.dest), name: basename(m.dest), version: item.version, source: item.url, ...mirrored(item.url, v.url),
          member: m.member, checksum: { algorithm: item.checksum.algorithm, digest: v.digest, from: item.checksum.url },
        },
      });
    }
  };

  const pulled = new Map<string, PulledImage>();
  const imageFetchedFrom = (p: PulledImage) => (o.mirrors.registry(p.image.registry).base !== upstreamRegistry(p.image.registry) ? { fetchedFrom: p.source } : {});
  const pull = (ref: string, platforms: Platform[] | 'all') => pullImage(client, ref, store, { platforms, progress: o.progress, concurrency });

  const imageFileItem = async (item: ImageFileItem) => {
    const img = await pull(item.image, [AMD64]);
    const m = img.manifests[0]!;
    const layers = m.layers.map((l) => ({ file: store.path(l.digest), compression: compressionOf(l.mediaType) }));
    const x = await extractFromLayers(layers, item.member, `${item.name} from ${item.image}`, dirs.files);
    planned.push({
      from: x.path,
      row: {
        path: item.dest, size: x.size, sha256: x.sha256, mode: modeFor(item.dest), name: item.name, version: item.version,
        source: `${item.image}@${img.digest}`, ...imageFetchedFrom(img),
        member: `/${item.member}`, checksum: { algorithm: 'oci', digest: m.digest, from: `${item.image} (linux/amd64 manifest)` },
      },
    });
  };

  const imageItem = async (item: ImageItem) => {
    pulled.set(item.ref, await pull(item.ref, o.platforms));
  };

  const osImageItem = (item: OsImageItem) => {
    if (!o.osImage) throw new Error(`${item.name} (${item.os}): no OS image directory given`);
    const { dir, info } = o.osImage;
    for (const want of item.files) {
      const f = o.osImage.files.find((x) => x.role === want.role);
      if (!f) throw new Error(`OS image ${dir}: no ${want.role} file`);
      const fromOsJson = want.role !== 'manifest';
      planned.push({
        from: f.path,
        theirs: true,
        row: {
          path: want.dest, size: f.size, sha256: f.sha256, mode: 0o644, name: `${item.name} ${want.role}`, version: info.version, source: f.path,
          ...(fromOsJson ? { checksum: { algorithm: 'sha256' as const, digest: f.sha256, from: `${dir}/os.json` } } : {}),
        },
      });
    }
  };

  const run = async (item: BundleContents['items'][number]) => {
    try {
      if (item.kind === 'file') await fileItem(item);
      else if (item.kind === 'archive') await archiveItem(item);
      else if (item.kind === 'image-file') await imageFileItem(item);
      else if (item.kind === 'os-image') osImageItem(item);
      else await imageItem(item);
    } catch (e) {
      problems.push((e as Error).message);
    }
  };
  // every item is tried, so one run reports every bad download, not just the first
  await mapLimit(contents.items, concurrency, run);
  if (problems.length) throw new BundleCreateError(problems);

  // the OCI layout: each image's blobs once, and index.json naming the images
  const images: BundleImage[] = [];
  const blobs = new Map<string, Descriptor>();
  for (const item of contents.items) {
    if (item.kind !== 'image') continue;
    const p = pulled.get(item.ref)!;
    for (const b of p.blobs) blobs.set(b.digest, b);
    images.push({
      ref: item.ref, registry: p.image.registry, repository: p.image.repository, tag: p.image.tag ?? '', digest: p.digest, mediaType: p.mediaType, size: p.size,
      manifests: p.manifests.map((m) => ({ digest: m.digest, mediaType: m.mediaType, size: m.size, ...(m.platform ? { platform: m.platform } : {}) })),
      skippedPlatforms: p.skipped, blobs: p.blobs.map((b) => b.digest),
      source: item.ref, ...imageFetchedFrom(p), usedBy: item.usedBy,
    });
  }
  const layoutDir = join(parts, 'layout');
  await mkdir(layoutDir, { recursive: true });
  const layoutFiles: Planned[] = [];
  if (images.length) {
    const index = layoutIndex(images.map((i) => ({ ref: i.ref, digest: i.digest, mediaType: i.mediaType, size: i.size })));
    for (const [name, bytes] of [['oci-layout', OCI_LAYOUT], ['index.json', index]] as const) {
      const from = join(layoutDir, name);
      await writeFile(from, bytes);
      layoutFiles.push({ from, row: { path: `${OCI_DIR}/${name}`, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), mode: 0o644 } });
    }
    for (const b of [...blobs.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1)))
      layoutFiles.push({ from: store.path(b.digest), row: { path: blobPath(b.digest), size: b.size, sha256: b.digest.slice('sha256:'.length), mode: 0o644 } });
  }

  planned.sort((a, b) => (a.row.path < b.row.path ? -1 : 1));
  const all = [...planned, ...layoutFiles];
  const manifest: BundleManifest = {
    schemaVersion: 1,
    kind: 'SlipwayBundle',
    created: new Date().toISOString(),
    cluster: contents.cluster,
    os: { name: contents.os.name, version: o.osImage?.info.version ?? 'none' },
    platforms: o.platforms === 'all' ? 'all' : o.platforms.map(platformString),
    files: all.map((p) => p.row),
    images,
  };
  const bytes = await writeTarAtomic(o.output, manifest, all, o.progress);
  if (!o.keepParts) await rm(parts, { recursive: true, force: true });
  return { manifest, bytes, reused, fetched };
}

const modeFor = (path: string) => (path.startsWith('bin/') ? 0o755 : 0o644);

function checkDestinations(c: BundleContents): void {
  const seen = new Set<string>();
  for (const i of c.items) for (const d of destinations(i)) {
    if (seen.has(d)) throw new BundleCreateError([`two items write ${d}`]);
    seen.add(d);
  }
}

/**
 * Stream every planned file into a tar beside `output`, re-hashing each on the way (the
 * cache is trusted only as far as its digests), then rename it into place.
 */
async function writeTarAtomic(output: string, manifest: BundleManifest, files: Planned[], progress: Progress): Promise<number> {
  const tmp = join(dirname(output), `.${basename(output)}.tmp-${randomBytes(6).toString('hex')}`);
  temporaries.add(tmp);
  const mtime = new Date(manifest.created);
  const pack = tar.pack();
  const out = createWriteStream(tmp, { flush: true });
  const finished = new Promise<void>((resolve, reject) => {
    out.once('close', resolve);
    out.once('error', reject);
    pack.once('error', reject);
  });
  finished.catch(() => {}); // observed below; a rejection before then must not crash the process
  pack.pipe(out);
  const total = files.reduce((n, f) => n + f.row.size, 0);
  const bar = progress.start(`writing ${basename(output)}`, total);
  let written = 0;
  try {
    const entry = (name: string, size: number, mode: number) => {
      let cb!: (err?: Error | null) => void;
      const ended = new Promise<void>((resolve, reject) => (cb = (err) => (err ? reject(err) : resolve())));
      ended.catch(() => {}); // awaited below; an entry destroyed after a failed check must not crash the process
      const w = pack.entry({ name, size, mode, mtime, type: 'file', uid: 0, gid: 0, uname: 'root', gname: 'root' }, cb);
      return { w, ended };
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    const m = entry(MANIFEST_PATH, manifestBytes.length, 0o644);
    m.w.end(manifestBytes);
    await m.ended;
    for (const f of files) {
      const { w, ended } = entry(f.row.path, f.row.size, f.row.mode);
      const h = createHash('sha256');
      let n = 0;
      for await (const chunk of createReadStream(f.from, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        h.update(chunk);
        n += chunk.length;
        if (n > f.row.size) break;
        if (!w.write(chunk)) await once(w, 'drain');
        written += chunk.length;
        bar.update(written);
      }
      const got = h.digest('hex');
      if ((n !== f.row.size || got !== f.row.sha256) && f.theirs) {
        throw new BundleCreateError([`${f.row.path}: ${f.from} no longer matches the ${f.row.size} bytes and sha256 ${f.row.sha256} its os.json names (changed while the bundle was written, or damaged): rebuild the image (slipway image build) or give another --os-image`]);
      }
      if (n !== f.row.size || got !== f.row.sha256) {
        // the cache file changed since it was verified: drop it so the next run fetches it again
        await rm(f.from, { force: true });
        throw new BundleCreateError([`${f.row.path}: the cached copy (${f.from}) no longer matches its verified sha256 ${f.row.sha256}; removed it, run again to fetch it afresh`]);
      }
      (w as unknown as { end(): void }).end(); // streamx's typings demand an argument its end() does not need
      await ended;
    }
    pack.finalize();
    await finished;
    await rename(tmp, output);
    temporaries.delete(tmp);
    const d = await open(dirname(output), 'r');
    await d.sync().finally(() => d.close());
    bar.done();
    return (await stat(output)).size;
  } catch (e) {
    bar.fail((e as Error).message);
    pack.destroy();
    out.destroy();
    await rm(tmp, { force: true });
    temporaries.delete(tmp);
    throw e;
  }
}
