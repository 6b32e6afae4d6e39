// What a network-booting machine's loader is told, by what the inventory says of its MAC:
// one decision for every loader (iPXE's scripts over HTTP in http/server.ts, PXELINUX's
// menus over TFTP in serve.ts), so "installed machines boot their disk" cannot differ
// between them. Which loader a firmware gets in the first place is plan's BOOT_RULES.
import type { Machine } from '../spec/types.ts';
import type { Lookup } from './inventory.ts';

export type Loader = 'ipxe' | 'pxelinux';

/** Back to the firmware, which boots the next device: the machine's disk. */
const LOCAL_BOOT: Record<Loader, (why: string) => string> = {
  ipxe: (why) => `#!ipxe\necho Slipway: ${why}: booting from local disk\nexit\n`,
  pxelinux: (why) => `# Slipway: ${why}\nDEFAULT local\nLABEL local\n  LOCALBOOT 0\n`,
};

export type BootAnswer =
  /** the machine's own install script or menu (and the lifecycle hears `booting`) */
  | { kind: 'install'; machine: Machine }
  /** boot from the local disk, saying why */
  | { kind: 'local'; body: string }
  /** not ours to answer: an unknown MAC with `--unknown ignore` */
  | { kind: 'none' }
  /** an unknown MAC with `--unknown enlist`: the installer in inventory mode (iPXE only; serve's enlist.ts) */
  | { kind: 'enlist'; mac: string };

/** state → answer: install while being provisioned, local disk once installed, unknown MACs by --unknown. */
export function bootAnswer(loader: Loader, mac: string, lookup: Lookup): BootAnswer {
  const { machine, action } = lookup;
  if (!machine) {
    if (action === 'enlist' && loader === 'ipxe') return { kind: 'enlist', mac };
    // PXELINUX's menus are static files over TFTP: no per-boot token to hand out
    if (action === 'enlist') return { kind: 'local', body: LOCAL_BOOT[loader](`unknown machine ${mac} (enlistment needs the iPXE loader)`) };
    return action === 'local' ? { kind: 'local', body: LOCAL_BOOT[loader](`unknown machine ${mac}`) } : { kind: 'none' };
  }
  if (action !== 'install') return { kind: 'local', body: LOCAL_BOOT[loader](lookup.why ?? `${machine.name} is installed`) };
  return { kind: 'install', machine };
}
