// The rehearsal's bundle, written in the format `bundle create` writes (manifest + OCI
// layout) and offered by `slipway serve --bundle` as any bundle is. It carries what a
// rehearsal needs and cannot download: the pod sandbox ("pause") under the name the
// rendered containerd config asks for and a tiny HTTP server for guide 02's smoke test,
// both built here from Debian's busybox-static (the machines' containerd pulls them
// through its rendered mirror config), and optionally an OS's files as os/ entries, as
// `slipway bundle create` writes the node OS image's. Nothing is fetched.
import { createHash } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { once } from 'node:events';
import tar from 'tar-stream';
import { MANIFEST_PATH, OCI_DIR, blobPath, type BundleFile, type BundleImage, type BundleManifest } from '../bundle/manifest.ts';
import { layoutIndex, OCI_LAYOUT } from '../bundle/oci/layout.ts';

export const BUSYBOX = '/bin/busybox';
/** The smoke test's image (the rendered smoke-test.yaml names nginx, which is not here). */
export const SMOKE_IMAGE = 'docker.io/slipway/smoke-http:1';
export const SMOKE_PORT = 80;
export const SMOKE_BODY = 'slipway smoke test: ok\n';

interface Entry {
  name: string;
  content?: Buffer;
  mode?: number;
  type?: 'file' | 'directory' | 'symlink';
  linkname?: string;
}

interface Blob {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

const MTIME = new Date('2025-01-01T00:00:00Z');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const blob = (mediaType: string, bytes: Buffer): Blob => ({ mediaType, digest: `sha256:${sha256(bytes)}`, bytes });

function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (c) => chunks.push(c as Buffer));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    pack.entry({ name: e.name, type, linkname: e.linkname, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), mtime: MTIME, uid: 0, gid: 0, size: type === 'file' ? (e.content?.length ?? 0) : 0 }, type === 'file' ? (e.content ?? Buffer.alloc(0)) : Buffer.alloc(0));
  }
  pack.finalize();
  return done;
}

interface Built {
  ref: string;
  manifest: Blob;
  blobs: Blob[];
}

/** One linux/amd64 image with one uncompressed layer. */
async function image(ref: string, layer: Entry[], config: { Entrypoint: string[]; ExposedPorts?: Record<string, object> }): Promise<Built> {
  const layerTar = await tarOf(layer);
  const layerBlob = blob('application/vnd.oci.image.layer.v1.tar', layerTar);
  const cfg = blob('application/vnd.oci.image.config.v1+json', Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: [layerBlob.digest] } })));
  const manifest = blob('application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: cfg.mediaType, digest: cfg.digest, size: cfg.bytes.length },
    layers: [{ mediaType: layerBlob.mediaType, digest: layerBlob.digest, size: layerTar.length }],
  })));
  return { ref, manifest, blobs: [manifest, cfg, layerBlob] };
}

const busyboxLayer = (extra: Entry[]): Entry[] => [
  { name: 'bin/', type: 'directory' },
  { name: 'bin/busybox', content: readFileSync(BUSYBOX), mode: 0o755 },
  { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
  ...extra,
];

/** "registry.k8s.io/pause:3.2" → its parts (Docker Hub short names are not used here). */
function parts(ref: string): { registry: string; repository: string; tag: string } {
  const slash = ref.indexOf('/');
  const colon = ref.lastIndexOf(':');
  return { registry: ref.slice(0, slash), repository: ref.slice(slash + 1, colon), tag: ref.slice(colon + 1) };
}

/** An OS for the bundle's os/ entries: files read from disk. */
export interface BundleOs {
  name: string;
  channel: string;
  version: string;
  files: { path: `os/${string}`; source: string; name: string }[];
}

/**
 * Write the rehearsal's images as a bundle at `path`: the pause image (named `pauseRef`;
 * the sandbox only has to hold its namespaces open: busybox sleeping does that) and the
 * smoke test's HTTP server; with `os`, its files under os/ as a real bundle carries the
 * node OS image's.
 */
export async function writeRehearsalBundle(path: string, cluster: { name: string; kubernetesVersion: string }, pauseRef: string, os?: BundleOs): Promise<string[]> {
  const images = [
    await image(pauseRef, busyboxLayer([]), { Entrypoint: ['/bin/busybox', 'sleep', '2147483647'] }),
    await image(
      SMOKE_IMAGE,
      busyboxLayer([{ name: 'www/', type: 'directory' }, { name: 'www/index.html', content: Buffer.from(SMOKE_BODY) }]),
      { Entrypoint: ['/bin/busybox', 'httpd', '-f', '-v', '-p', String(SMOKE_PORT), '-h', '/www'], ExposedPorts: { [`${SMOKE_PORT}/tcp`]: {} } },
    ),
  ];
  const blobs = new Map<string, Blob>();
  for (const im of images) for (const b of im.blobs) blobs.set(b.digest, b);
  const bundleImages: BundleImage[] = images.map((im) => ({
    ref: im.ref,
    ...parts(im.ref),
    digest: im.manifest.digest,
    mediaType: im.manifest.mediaType,
    size: im.manifest.bytes.length,
    manifests: [{ digest: im.manifest.digest, mediaType: im.manifest.mediaType, size: im.manifest.bytes.length, platform: 'linux/amd64' }],
    skippedPlatforms: [],
    blobs: im.blobs.map((b) => b.digest),
    source: `built by slipway rehearse from ${BUSYBOX}`,
    usedBy: im.ref === pauseRef ? 'containerd (pod sandbox)' : 'the rehearsal smoke test',
  }));
  const index = layoutIndex(bundleImages.map((i) => ({ ref: i.ref, digest: i.digest, mediaType: i.mediaType, size: i.size })));
  const contents: [string, Buffer][] = [
    [`${OCI_DIR}/oci-layout`, OCI_LAYOUT],
    [`${OCI_DIR}/index.json`, index],
    ...[...blobs.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1)).map((b) => [blobPath(b.digest), b.bytes] as [string, Buffer]),
  ];
  const files: BundleFile[] = contents.map(([p, bytes]) => ({ path: p, size: bytes.length, sha256: sha256(bytes), mode: 0o644 }));
  for (const f of os?.files ?? []) {
    const bytes = readFileSync(f.source); // a kernel and an initramfs: megabytes
    contents.push([f.path, bytes]);
    files.push({ path: f.path, size: bytes.length, sha256: sha256(bytes), mode: 0o644, name: f.name, version: os!.version, source: f.source });
  }
  const manifest: BundleManifest = {
    schemaVersion: 1,
    kind: 'SlipwayBundle',
    created: new Date().toISOString(),
    cluster,
    os: os ? { name: os.name, channel: os.channel, version: os.version } : { name: 'none', channel: 'rehearsal', version: 'none' },
    platforms: ['linux/amd64'],
    files,
    images: bundleImages,
  };
  const pack = tar.pack();
  const out = createWriteStream(path, { mode: 0o644 });
  const finished = once(out, 'finish');
  pack.pipe(out);
  // The manifest first: `serve --bundle` reads it before anything else.
  for (const [name, bytes] of [[MANIFEST_PATH, Buffer.from(JSON.stringify(manifest, null, 2) + '\n')] as [string, Buffer], ...contents]) {
    pack.entry({ name, size: bytes.length, mode: 0o644, mtime: MTIME, uid: 0, gid: 0 }, bytes);
  }
  pack.finalize();
  await finished;
  return images.map((i) => i.ref);
}
