// Container images built by hand for the bundle tests: layer tars written with
// tar-stream (busybox-static as the payload), config and manifest JSON written here,
// stored as an OCI image layout that skopeo can push to a real registry. Nothing is
// fetched from outside; every digest is computed here, so tests can compare what comes
// back through Slipway byte for byte.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export interface LayerFile {
  path: string;
  content: Buffer;
  mode?: number;
}

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export interface BuiltPlatform {
  platform: { os: string; architecture: string };
  manifest: Blob;
  config: Blob;
  layers: Blob[];
}

export interface BuiltImage {
  /** OCI layout directory holding the image under `tag` */
  dir: string;
  tag: string;
  /** what the tag names: the index for a multi-platform image, else the one manifest */
  top: Blob;
  platforms: BuiltPlatform[];
  /** every blob, by digest */
  blobs: Map<string, Blob>;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const blob = (mediaType: string, bytes: Buffer): Blob => ({ mediaType, digest: `sha256:${sha256(bytes)}`, size: bytes.length, bytes });

/** An uncompressed tar of `files` (parent directories added, sorted, fixed mtime). */
export async function tarOf(files: LayerFile[], extra: { name: string; type: 'symlink' | 'file'; linkname?: string; content?: Buffer }[] = []): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  const mtime = new Date('2025-01-01T00:00:00Z');
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const d of [...dirs].sort()) pack.entry({ name: `${d}/`, type: 'directory', mode: 0o755, mtime });
  for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) pack.entry({ name: f.path, mode: f.mode ?? 0o755, mtime, size: f.content.length }, f.content);
  for (const e of extra) pack.entry({ name: e.name, type: e.type, linkname: e.linkname, mode: 0o755, mtime, size: e.content?.length ?? 0 }, e.content ?? Buffer.alloc(0));
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export async function tarGz(files: LayerFile[], extra?: Parameters<typeof tarOf>[1]): Promise<Buffer> {
  return gzipSync(await tarOf(files, extra));
}

async function platformImage(arch: string, files: LayerFile[]): Promise<BuiltPlatform> {
  const raw = await tarOf(files);
  const layer = blob('application/vnd.oci.image.layer.v1.tar+gzip', gzipSync(raw));
  const config = blob(
    'application/vnd.oci.image.config.v1+json',
    Buffer.from(JSON.stringify({
      architecture: arch,
      os: 'linux',
      config: { Entrypoint: ['/bin/busybox'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(raw)}`] },
      history: [{ created: '2025-01-01T00:00:00Z', created_by: 'slipway test fixture' }],
    })),
  );
  const manifest = blob(
    'application/vnd.oci.image.manifest.v1+json',
    Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
      layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    })),
  );
  return { platform: { os: 'linux', architecture: arch }, manifest, config, layers: [layer] };
}

/**
 * An image in an OCI layout under `dir`: one platform per entry of `platforms` (arch →
 * files in its single layer). More than one platform makes the tag name an index.
 */
export async function buildImage(dir: string, tag: string, platforms: Record<string, LayerFile[]>): Promise<BuiltImage> {
  const built: BuiltPlatform[] = [];
  for (const [arch, files] of Object.entries(platforms)) built.push(await platformImage(arch, files));
  const blobs = new Map<string, Blob>();
  for (const p of built) for (const b of [p.manifest, p.config, ...p.layers]) blobs.set(b.digest, b);
  let top: Blob;
  if (built.length === 1) top = built[0]!.manifest;
  else {
    top = blob(
      'application/vnd.oci.image.index.v1+json',
      Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: built.map((p) => ({ mediaType: p.manifest.mediaType, digest: p.manifest.digest, size: p.manifest.size, platform: p.platform })),
      })),
    );
    blobs.set(top.digest, top);
  }
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const b of blobs.values()) writeFileSync(join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.bytes);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: top.mediaType, digest: top.digest, size: top.size, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
  return { dir, tag, top, platforms: built, blobs };
}

/** busybox-static, the payload of every test image (a real static binary that runs anywhere). */
export const BUSYBOX = () => readFileSync('/usr/bin/busybox');
