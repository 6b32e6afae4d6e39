// The operating systems a machine can be installed with, as data. Only Slipway's own
// image is offered: Debian 12 built from Debian's archive by `slipway image build`
// (scripts/build-os-image.sh), the OS every rehearsal runs. Flatcar was offered once; its
// path (no haproxy/keepalived, its own containerd config path, an image that cannot be
// obtained here) was never proved, so it was removed rather than left half-working.
export const OS_CHOICES = ['debian-12'] as const;
export type OsName = (typeof OS_CHOICES)[number];
export const DEFAULT_OS: OsName = 'debian-12';

/** The image's files under the provisioner's assets (/assets/os/...), as a bundle carries them (os/...). */
export const OS_ASSETS = {
  kernel: 'os/vmlinuz',
  /** the installer initramfs: it writes the disk image, then runs Ignition on it */
  initrd: 'os/initrd.img',
  /** the zstd-compressed raw disk image the installer streams onto the machine's disk */
  disk: 'os/disk.img.zst',
  /** the image's manifest: digests, raw size, package versions */
  manifest: 'os/os.json',
} as const;

/**
 * The SMBIOS product name Slipway's rehearsal VMs carry (QEMU -smbios type=1,product=...).
 * The image's generator (scripts/build-os-image.sh) gives root a shell on the serial
 * console only on such a machine, for the checks that type into it; every other machine
 * gets a login prompt with root locked.
 */
export const REHEARSAL_PRODUCT_NAME = 'slipway-rehearsal';
export const rehearsalSmbios = (): string[] => ['-smbios', `type=1,product=${REHEARSAL_PRODUCT_NAME}`];

// os.json, the image's manifest (scripts/build-os-image.sh writes it): read by `slipway
// image build`, `bundle create`/`verify` and serve's pins, all through this one parser.

export interface OsFileInfo {
  file: string;
  sha256: string;
  size: number;
}

/** os.json: the fields Slipway reads (the build writes more: modules, firmware, inputs, buildSeconds). */
export interface OsJson {
  name: string;
  version: string;
  kernel: OsFileInfo;
  initrd: OsFileInfo;
  disk: OsFileInfo & { rawSize: number; rawSha256: string };
  packages: { name: string; version: string }[];
  [more: string]: unknown;
}

export class OsImageError extends Error {}

const HEX64 = /^[0-9a-f]{64}$/;
const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** Parse and check os.json's shape; each problem names the field. */
export function parseOsJson(text: string, where: string): OsJson {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new OsImageError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  const bad = (what: string) => new OsImageError(`${where}: ${what}`);
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw bad('not a JSON object');
  const o = j as Record<string, unknown>;
  for (const k of ['name', 'version'] as const) if (typeof o[k] !== 'string' || o[k] === '') throw bad(`${k} is missing`);
  const fileInfo = (k: 'kernel' | 'initrd' | 'disk') => {
    const f = o[k] as Partial<OsFileInfo> | undefined;
    if (!f || typeof f !== 'object') throw bad(`${k} is missing`);
    if (typeof f.file !== 'string' || !/^[A-Za-z0-9._-]+$/.test(f.file)) throw bad(`${k}.file is not a file name`);
    if (typeof f.sha256 !== 'string' || !HEX64.test(f.sha256)) throw bad(`${k}.sha256 is not 64 hex digits`);
    if (!isCount(f.size)) throw bad(`${k}.size is not a byte count`);
  };
  fileInfo('kernel');
  fileInfo('initrd');
  fileInfo('disk');
  const disk = o.disk as Partial<OsJson['disk']>;
  if (!isCount(disk.rawSize)) throw bad('disk.rawSize is not a byte count');
  if (typeof disk.rawSha256 !== 'string' || !HEX64.test(disk.rawSha256)) throw bad('disk.rawSha256 is not 64 hex digits');
  if (!Array.isArray(o.packages) || !o.packages.every((p) => p && typeof p.name === 'string' && typeof p.version === 'string')) throw bad('packages is not a list of {name, version}');
  return o as OsJson;
}
