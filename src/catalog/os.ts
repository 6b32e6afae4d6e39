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
