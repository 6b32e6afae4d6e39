// A file's sha256, streamed in 1 MiB reads (kernels, disk images and binaries are too big
// to read whole): the one helper the bundle, the image reader and serve's assets share.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), h);
  return h.digest('hex');
}
