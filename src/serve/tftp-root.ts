// The TFTP server's root, staged in the state directory: the network-boot loaders from
// Debian's packages (or from the assets directory, which wins, e.g. from a bundle) and,
// for PXELINUX (guide 01's way), the OS kernel and initrd from the assets directory.
// Copies, not symlinks: the TFTP server and /assets/ipxe/ refuse links that leave the
// root. Every source is resolved to its real file first: link(2) on a symlink (Debian's
// /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi) hard-links the symlink itself.
import { copyFile, link, lstat, mkdir, realpath, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from './log.ts';
import { LOADERS, PXELINUX_INITRD, PXELINUX_KERNEL, PXELINUX } from '../plan/phases/pxe/boot.ts';


/** name in the TFTP root → where Debian's packages put it (ipxe.efi: a symlink to /boot/ipxe.efi) */
export const DEBIAN_LOADERS: Record<string, string> = {
  [LOADERS.bios]: '/usr/lib/ipxe/undionly.kpxe', // package ipxe
  [LOADERS.efi]: '/usr/lib/ipxe/snponly.efi',
  'ipxe.efi': '/usr/lib/ipxe/ipxe.efi',
  [PXELINUX]: '/usr/lib/PXELINUX/pxelinux.0', // package pxelinux
  'ldlinux.c32': '/usr/lib/syslinux/modules/bios/ldlinux.c32', // package syslinux-common
};

async function fileStat(p: string) {
  try {
    const s = await stat(p);
    return s.isFile() ? s : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Put the file `src` resolves to at `dst` unless a regular file of the same size and age
 * is already there; hard link when possible. `dst` itself is looked at without following
 * links: a symlink an older Slipway staged there is replaced.
 */
async function place(src: string, dst: string): Promise<void> {
  const real = await realpath(src).catch(() => undefined);
  const s = real && (await fileStat(real));
  if (!real || !s) return;
  const d = await lstat(dst).catch(() => undefined);
  if (d?.isFile() && d.size === s.size && d.mtimeMs >= s.mtimeMs) return;
  await mkdir(join(dst, '..'), { recursive: true });
  if (d) await unlink(dst);
  try {
    await link(real, dst);
  } catch {
    await copyFile(real, dst);
  }
}

/** `debian`: where to look for the packages' loaders (a test's own table). */
export async function stageTftpRoot(stateDir: string, assetsDir: string | undefined, log: Logger, debian = DEBIAN_LOADERS): Promise<string> {
  const root = join(stateDir, 'tftp');
  await mkdir(root, { recursive: true, mode: 0o755 });
  const missing: string[] = [];
  for (const [name, fromDebian] of Object.entries(debian)) {
    const fromAssets = assetsDir ? join(assetsDir, 'ipxe', name) : undefined;
    const src = fromAssets && (await fileStat(fromAssets)) ? fromAssets : fromDebian;
    if (await fileStat(src)) await place(src, join(root, name));
    else missing.push(name);
  }
  if (missing.length) log.warn({ missing }, 'network-boot loaders not found (install Debian packages ipxe, pxelinux, syslinux-common, or put them in <assets>/ipxe/)');
  if (assetsDir) for (const rel of [PXELINUX_KERNEL, PXELINUX_INITRD]) await place(join(assetsDir, rel), join(root, rel));
  return root;
}
