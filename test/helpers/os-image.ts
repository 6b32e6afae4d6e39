// A small OS image directory in the shape scripts/build-os-image.sh leaves (vmlinuz,
// initrd.img, disk.img.zst, os.json, MANIFEST, root/), for tests of what packages it:
// the bundle only carries files, so small ones with a real os.json (true sizes and
// sha256, a real zstd frame when zstd is installed) prove the same. No image is built.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OsJson } from '../../src/catalog/os.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export interface FakeOsImage {
  dir: string;
  /** the bytes of each file, by name */
  bytes: Map<string, Buffer>;
  json: OsJson;
}

export function fakeOsImage(dir: string, opts: { version?: string; kernelBytes?: number } = {}): FakeOsImage {
  mkdirSync(join(dir, 'root', 'etc'), { recursive: true });
  writeFileSync(join(dir, 'root', 'etc', 'os-release'), 'ID=debian\nVERSION_ID="12"\n');
  const kernel = Buffer.concat([Buffer.from('a test kernel\n'), randomBytes(opts.kernelBytes ?? 40_000)]);
  const initrd = Buffer.concat([Buffer.from('a test installer initramfs\n'), randomBytes(60_000)]);
  const raw = Buffer.concat([Buffer.from('a test disk image\n'), randomBytes(100_000)]);
  const z = spawnSync('zstd', ['-q', '-c'], { input: raw, maxBuffer: 1 << 24 });
  const disk = z.status === 0 ? z.stdout : Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), raw]);
  const info = (file: string, b: Buffer) => ({ file, sha256: sha256(b), size: b.length });
  const json: OsJson = {
    name: 'debian-12',
    version: opts.version ?? '12.12-test1',
    kernel: info('vmlinuz', kernel),
    initrd: info('initrd.img', initrd),
    disk: { ...info('disk.img.zst', disk), rawSize: raw.length, rawSha256: sha256(raw) },
    packages: [{ name: 'containerd', version: '1.6.20~ds1-1+b1' }, { name: 'haproxy', version: '2.6.12-1+deb12u2' }, { name: 'keepalived', version: '1:2.2.7-1+b2' }],
    modules: { initrd: ['nvme', 'ahci'], root: ['nvme', 'ahci', 'e1000e'] },
    firmware: [],
  };
  const bytes = new Map<string, Buffer>([
    ['vmlinuz', kernel],
    ['initrd.img', initrd],
    ['disk.img.zst', disk],
    ['os.json', Buffer.from(JSON.stringify(json, null, 2) + '\n')],
    ['MANIFEST', Buffer.from('slipway OS image (test)\n')],
  ]);
  for (const [name, b] of bytes) writeFileSync(join(dir, name), b);
  return { dir, bytes, json };
}
