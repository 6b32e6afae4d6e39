// The two container images a rehearsal needs and cannot download: the pod sandbox
// ("pause") under the name the rendered containerd config asks for, and a tiny HTTP
// server for guide 02's smoke test. Both are built here from Debian's busybox-static
// (one static binary) as OCI image archives — the format `ctr images import` reads, named
// by the `io.containerd.image.name` annotation. Nothing is fetched.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import tar from 'tar-stream';

export const BUSYBOX = '/bin/busybox';
/** The smoke test's image (the rendered smoke-test.yaml names nginx, which is not here). */
export const SMOKE_IMAGE = 'slipway.local/rehearsal/smoke-http:1';
export const SMOKE_PORT = 80;
export const SMOKE_BODY = 'slipway smoke test: ok\n';

interface Entry {
  name: string;
  content?: Buffer;
  mode?: number;
  type?: 'file' | 'directory' | 'symlink';
  linkname?: string;
}

const MTIME = new Date('2025-01-01T00:00:00Z');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

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

/** One image with one uncompressed layer, as an OCI archive (a tar of an OCI layout). */
export async function ociArchive(ref: string, layer: Entry[], config: { Entrypoint: string[]; ExposedPorts?: Record<string, object> }): Promise<Buffer> {
  const layerTar = await tarOf(layer);
  const json = (o: unknown) => Buffer.from(JSON.stringify(o));
  const cfg = json({ architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layerTar)}`] } });
  const manifest = json({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha256(cfg)}`, size: cfg.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${sha256(layerTar)}`, size: layerTar.length }],
  });
  const index = json({
    schemaVersion: 2,
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${sha256(manifest)}`,
      size: manifest.length,
      annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': ref.slice(ref.lastIndexOf(':') + 1) },
    }],
  });
  return tarOf([
    { name: 'oci-layout', content: json({ imageLayoutVersion: '1.0.0' }) },
    { name: 'index.json', content: index },
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...[layerTar, cfg, manifest].map((b) => ({ name: `blobs/sha256/${sha256(b)}`, content: b })),
  ]);
}

const busyboxLayer = (extra: Entry[]): Entry[] => [
  { name: 'bin/', type: 'directory' },
  { name: 'bin/busybox', content: readFileSync(BUSYBOX), mode: 0o755 },
  { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
  ...extra,
];

export interface RehearsalImages {
  /** archive path → the image reference it holds */
  files: { path: string; ref: string }[];
}

/**
 * Write the pause image (named `pauseRef`) and the smoke test's HTTP server into `dir`.
 * The sandbox only has to hold its namespaces open: busybox sleeping does that.
 */
export async function writeRehearsalImages(dir: string, pauseRef: string): Promise<RehearsalImages> {
  const pause = await ociArchive(pauseRef, busyboxLayer([]), { Entrypoint: ['/bin/busybox', 'sleep', '2147483647'] });
  const smoke = await ociArchive(
    SMOKE_IMAGE,
    busyboxLayer([{ name: 'www/', type: 'directory' }, { name: 'www/index.html', content: Buffer.from(SMOKE_BODY) }]),
    { Entrypoint: ['/bin/busybox', 'httpd', '-f', '-v', '-p', String(SMOKE_PORT), '-h', '/www'], ExposedPorts: { [`${SMOKE_PORT}/tcp`]: {} } },
  );
  const files = [
    { path: `${dir}/pause.oci.tar`, ref: pauseRef, bytes: pause },
    { path: `${dir}/smoke-http.oci.tar`, ref: SMOKE_IMAGE, bytes: smoke },
  ];
  for (const f of files) writeFileSync(f.path, f.bytes);
  return { files: files.map(({ path, ref }) => ({ path, ref })) };
}
