// Pulling one image into a content-addressed blob store (the bundle's parts cache): the
// tag's manifest, and for a manifest list the linux/amd64 entry (or every platform
// asked for), then each manifest's config and layers. The top-level manifest is kept
// byte for byte, so the bundle's registry answers the tag with the upstream digest, and
// a machine pulling by digest (or a signature check) sees the same image. Children left
// out of a multi-platform index are recorded, so `verify` and the registry know their
// absence is deliberate.
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { RegistryClient } from './client.ts';
import { parseRef, refString, type ImageRef } from './ref.ts';
import { type Descriptor, type Platform, isIndex, parseManifestBytes, platformMatches, platformString } from './types.ts';
import { mapLimit } from '../limit.ts';
import type { Progress } from '../progress.ts';

/** Verified blobs by digest: <dir>/sha256/<hex>; downloads in progress under <dir>/partial/. */
export class BlobStore {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }
  path(digest: string): string {
    return join(this.dir, 'sha256', digest.slice('sha256:'.length));
  }
  partial(digest: string): string {
    return join(this.dir, 'partial', digest.slice('sha256:'.length));
  }
  async init(): Promise<void> {
    await mkdir(join(this.dir, 'sha256'), { recursive: true });
    await mkdir(join(this.dir, 'partial'), { recursive: true });
  }
  /** Blobs only ever land here after their digest was checked, so presence means verified. */
  async has(digest: string): Promise<boolean> {
    return access(this.path(digest)).then(() => true, () => false);
  }
  async put(digest: string, bytes: Buffer): Promise<void> {
    const tmp = join(this.dir, 'partial', `.m-${randomBytes(6).toString('hex')}`);
    await writeFile(tmp, bytes);
    await rename(tmp, this.path(digest));
  }
  read(digest: string): Promise<Buffer> {
    return readFile(this.path(digest));
  }
}

export interface PulledManifest {
  digest: string;
  mediaType: string;
  size: number;
  platform?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface PulledImage {
  ref: string;
  image: ImageRef;
  /** the tag's manifest (an index or an image manifest), as upstream serves it */
  digest: string;
  mediaType: string;
  size: number;
  /** image manifests stored (one per platform kept) */
  manifests: PulledManifest[];
  /** platforms an index lists that were left out */
  skipped: string[];
  /** URL the tag was resolved at */
  source: string;
  /** every blob the image stores, manifests included */
  blobs: Descriptor[];
}

export interface PullOptions {
  /** platforms to keep from a manifest list; 'all' keeps every entry */
  platforms: Platform[] | 'all';
  progress?: Progress;
  concurrency?: number;
}

export async function pullImage(client: RegistryClient, ref: string, store: BlobStore, opts: PullOptions): Promise<PulledImage> {
  const image = parseRef(ref);
  const name = refString(image);
  const top = await client.manifest(image, image.digest ?? image.tag!);
  if (!(await store.has(top.digest))) await store.put(top.digest, top.bytes);
  const parsed = parseManifestBytes(top.bytes, name);
  const manifests: PulledManifest[] = [];
  const skipped: string[] = [];
  const blobs: Descriptor[] = [{ mediaType: top.mediaType, digest: top.digest, size: top.bytes.length }];

  const child = async (d: Descriptor): Promise<PulledManifest> => {
    const what = `${name} (${d.platform ? platformString(d.platform) : d.digest})`;
    let bytes: Buffer;
    if (await store.has(d.digest)) bytes = await store.read(d.digest);
    else {
      const m = await client.manifest(image, d.digest);
      bytes = m.bytes;
      await store.put(d.digest, bytes);
    }
    if (bytes.length !== d.size) throw new Error(`${what}: manifest is ${bytes.length} bytes, the index says ${d.size}`);
    const p = parseManifestBytes(bytes, what, d.mediaType);
    if (!p.manifest) throw new Error(`${what}: nested manifest lists are not supported`);
    return { digest: d.digest, mediaType: p.mediaType, size: d.size, platform: d.platform && platformString(d.platform), config: p.manifest.config, layers: p.manifest.layers };
  };

  if (isIndex(parsed.mediaType)) {
    const list = parsed.index!.manifests;
    const keep = opts.platforms === 'all' ? list : list.filter((d) => (opts.platforms as Platform[]).some((p) => platformMatches(d.platform, p)));
    if (keep.length === 0) {
      const have = list.map((d) => (d.platform ? platformString(d.platform) : '?')).join(', ');
      throw new Error(`${name}: no ${(opts.platforms as Platform[]).map(platformString).join(' or ')} image in its manifest list (it has: ${have})`);
    }
    for (const d of list) if (!keep.includes(d)) skipped.push(d.platform ? platformString(d.platform) : d.digest);
    for (const d of keep) {
      manifests.push(await child(d));
      blobs.push({ mediaType: d.mediaType, digest: d.digest, size: d.size });
    }
  } else {
    const m = parsed.manifest!;
    manifests.push({ digest: top.digest, mediaType: parsed.mediaType, size: top.bytes.length, config: m.config, layers: m.layers });
  }

  // config and layers, each once even when platforms share them
  const seen = new Set(blobs.map((b) => b.digest));
  const wanted: Descriptor[] = [];
  for (const m of manifests) {
    for (const d of [m.config, ...m.layers]) {
      if (d.urls?.length) throw new Error(`${name}: layer ${d.digest} is non-distributable (fetched from ${d.urls[0]}); Slipway bundles Linux images only`);
      if (seen.has(d.digest)) continue;
      seen.add(d.digest);
      wanted.push(d);
      blobs.push(d);
    }
  }
  const missing: Descriptor[] = [];
  for (const d of wanted) if (!(await store.has(d.digest))) missing.push(d);
  const total = missing.reduce((n, d) => n + d.size, 0);
  const bar = opts.progress?.start(name, total, missing.length === 0 ? 'cached' : undefined);
  const done = new Map<string, number>();
  const report = () => bar?.update([...done.values()].reduce((a, b) => a + b, 0));
  try {
    await mapLimit(missing, opts.concurrency ?? 4, async (d) => {
      await client.blob(image, d, store.path(d.digest), store.partial(d.digest), (n) => {
        done.set(d.digest, n);
        report();
      });
    });
  } catch (e) {
    bar?.fail((e as Error).message);
    throw e;
  }
  bar?.done(missing.length ? undefined : 'cached');
  return { ref, image, digest: top.digest, mediaType: top.mediaType, size: top.bytes.length, manifests, skipped, source: top.url, blobs };
}
