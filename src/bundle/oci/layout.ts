// The bundle's oci/ directory is an OCI image layout (image-spec v1.0 "layout"): blobs by
// digest, index.json naming each image. Tools read it directly once extracted
// (`skopeo copy oci:dir:registry.k8s.io/pause:3.10 ...`, `ctr images import`), which is
// why each image carries both the OCI ref-name annotation and containerd's image-name
// annotation, each the fully qualified reference.
import { MEDIA, type IndexJSON } from './types.ts';

export const REF_NAME = 'org.opencontainers.image.ref.name';
export const CONTAINERD_NAME = 'io.containerd.image.name';

export const OCI_LAYOUT = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }) + '\n');

export function layoutIndex(images: { ref: string; digest: string; mediaType: string; size: number }[]): Buffer {
  const sorted = [...images].sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  const index: IndexJSON = {
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: sorted.map((i) => ({ mediaType: i.mediaType, digest: i.digest, size: i.size, annotations: { [REF_NAME]: i.ref, [CONTAINERD_NAME]: i.ref } })),
  };
  return Buffer.from(JSON.stringify(index, null, 2) + '\n');
}
