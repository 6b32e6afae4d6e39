// The network-boot policy every DHCP export shares, as data: which firmware gets which
// loader, where the provisioner serves what, and the kernel arguments that point a
// machine at its own Ignition and cloud-config. dhcpd.conf, kea-dhcp4.json,
// dnsmasq.conf, pxelinux.cfg/ and the iPXE scripts are renderings of this one table, so
// they cannot drift apart; `slipway serve` can import the same URLs.
//
// The chain, for a machine in the cluster file:
//   firmware PXE ──DHCP──▶ TFTP undionly.kpxe (BIOS) / snponly.efi (UEFI x64)
//                           or HTTP ipxe.efi (UEFI HTTP boot, arch 16)
//   iPXE ──DHCP (user-class "iPXE")──▶ HTTP /boot.ipxe ──▶ /ipxe/mac/<mac>.ipxe
//        ──▶ /ipxe/<name>.ipxe ──▶ kernel + initrd from /assets/os/, Ignition from
//            /machines/<name>/ignition.json
// PXELINUX (guide 01's way) is the alternative for sites that already serve it:
// pxelinux.cfg/01-<mac> boots the same kernel with the same arguments over TFTP.
//
// HTTP layout on http://<provisioner>:<httpPort>/ (slipway serve answers it; any static
// server does too when its root holds DIR/pxe/* at /, DIR/machines at /machines and the
// OS/iPXE images at /assets):
//   /boot.ipxe                      pxe/boot.ipxe
//   /ipxe/<name>.ipxe               pxe/ipxe/<name>.ipxe
//   /ipxe/mac/<aa-bb-..>.ipxe       pxe/ipxe/mac/<aa-bb-..>.ipxe
//   /machines/<name>/ignition.json  machines/<name>/ignition.json
//   /machines/<name>/cloud-config.yml
//   /machines/<name>/install.env    machines/<name>/install.env (the installer's)
//   /assets/os/vmlinuz, /assets/os/initrd.img, /assets/os/disk.img.zst, /assets/ipxe/ipxe.efi
import { provisionerURL, type Machine, type Spec } from '../../../spec/types.ts';

/** Where the TFTP server's root is on the provisioner (dnsmasq's tftp-root). */
export const TFTP_ROOT = '/var/lib/slipway/tftp';

/** Loaders fetched over TFTP, relative to TFTP_ROOT. */
export const LOADERS = {
  /** iPXE over the firmware's UNDI driver: works on any BIOS PXE ROM */
  bios: 'undionly.kpxe',
  /** iPXE over the firmware's SNP driver: works on any UEFI NIC */
  efi: 'snponly.efi',
} as const;

/**
 * DHCP option 93 (client system architecture), RFC 4578 + IANA registry. x64 UEFI
 * firmware sends 7 as often as 9 (the registry's early mix-up), so both get snponly.efi.
 */
export const ARCH = { bios: 0, efiBC: 7, efiX64: 9, efiX64Http: 16 } as const;

/** iPXE marks its own DHCP requests with this user class (option 77). */
export const IPXE_USER_CLASS = 'iPXE';
/** UEFI HTTP boot clients only accept offers that echo this vendor class (option 60). */
export const HTTP_CLIENT_CLASS = 'HTTPClient';

/** PXELINUX itself, relative to TFTP_ROOT: what BIOS clients get instead of iPXE with `serve --loader pxelinux`. */
export const PXELINUX = 'pxelinux.0';

/**
 * Firmware and loader → what it is handed, in order: the first rule whose match fits
 * wins. The DHCP policy (serve/dhcp/policy.ts) and the dhcpd, Kea and dnsmasq exports
 * all render from this one table; the real-DHCP-server tests prove they agree.
 */
export interface BootRule {
  /** the kind of client: Kea's class name, dnsmasq's tag */
  name: 'ipxe' | 'efi-http' | 'efi-x64' | 'bios';
  /**
   * iPXE by its user class (option 77), firmware by its architecture (option 93);
   * undefined: every client no earlier rule took (arch 0, or no option 93 at all)
   */
  match: { userClass: string } | { arch: readonly number[] } | undefined;
  /** what it is handed: a URL (fetched by HTTP) or a loader on the TFTP server */
  file: (urls: Pick<BootUrls, 'bootScript' | 'httpBootLoader'>, loader: 'ipxe' | 'pxelinux') => string;
  tftp: boolean;
  /** an option 60 the offer must echo, or the client ignores it */
  vendorClass?: string;
  /** why, for the rendered configs' comments */
  comment: string;
}

export const BOOT_RULES: readonly BootRule[] = [
  {
    name: 'ipxe',
    match: { userClass: IPXE_USER_CLASS },
    file: (u) => u.bootScript,
    tftp: false,
    comment: 'iPXE itself: give it the per-MAC dispatcher, never a loader again (it also sends option 93, and a loader would chain-load iPXE forever).',
  },
  {
    name: 'efi-http',
    match: { arch: [ARCH.efiX64Http] },
    file: (u) => u.httpBootLoader,
    tftp: false,
    vendorClass: HTTP_CLIENT_CLASS,
    comment: `UEFI HTTP boot: the firmware fetches the URL itself, and ignores offers that do not echo vendor class ${HTTP_CLIENT_CLASS}.`,
  },
  {
    name: 'efi-x64',
    match: { arch: [ARCH.efiBC, ARCH.efiX64] },
    file: () => LOADERS.efi,
    tftp: true,
    comment: 'UEFI x64 PXE (firmware sends 7 or 9): iPXE over the firmware SNP driver, by TFTP.',
  },
  {
    name: 'bios',
    match: undefined,
    file: (_, loader) => (loader === 'pxelinux' ? PXELINUX : LOADERS.bios),
    tftp: true,
    comment: 'Everything else is BIOS PXE (arch 0 or no option 93): iPXE over UNDI, by TFTP.',
  },
];

/** The rule for a client: iPXE (it said so by user class) or its firmware architecture. */
export function bootRuleFor(client: { userClasses: readonly string[]; arch?: number }): BootRule {
  return BOOT_RULES.find((r) => !r.match || ('userClass' in r.match ? client.userClasses.includes(r.match.userClass) : client.arch !== undefined && r.match.arch.includes(client.arch)))!;
}

/** PXELINUX paths, relative to TFTP_ROOT (the directory pxelinux.0 lives in). */
export const PXELINUX_KERNEL = 'os/vmlinuz';
export const PXELINUX_INITRD = 'os/initrd.img';

export interface BootUrls {
  base: string;
  /** what DHCP hands to iPXE: the per-MAC dispatcher */
  bootScript: string;
  /** what DHCP hands to UEFI HTTP boot clients */
  httpBootLoader: string;
  kernel: string;
  initrd: string;
  machineScript(m: Machine): string;
  macScript(mac: string): string;
  ignition(m: Machine): string;
  cloudConfig(m: Machine): string;
  /** what the installer initramfs reads: the disk image, its digest, the disk, how to report */
  installEnv(m: Machine): string;
}

/** "52:54:00:AB:cd:ef" → "52-54-00-ab-cd-ef": what iPXE's ${mac:hexhyp} and PXELINUX print. */
export const macHyphen = (mac: string): string => mac.toLowerCase().replace(/:/g, '-');

export function bootUrls(spec: Spec): BootUrls {
  const base = provisionerURL(spec);
  return {
    base,
    bootScript: `${base}/boot.ipxe`,
    httpBootLoader: `${base}/assets/ipxe/ipxe.efi`,
    kernel: `${base}/assets/os/vmlinuz`,
    initrd: `${base}/assets/os/initrd.img`,
    machineScript: (m) => `${base}/ipxe/${m.name}.ipxe`,
    macScript: (mac) => `${base}/ipxe/mac/${macHyphen(mac)}.ipxe`,
    ignition: (m) => `${base}/machines/${m.name}/ignition.json`,
    cloudConfig: (m) => `${base}/machines/${m.name}/cloud-config.yml`,
    installEnv: (m) => `${base}/machines/${m.name}/install.env`,
  };
}

/**
 * The kernel command line of the first (installing) boot, the same for PXELINUX and
 * iPXE, read by Slipway's installer initramfs: slipway.install names what it writes to
 * the disk, ignition.* what the real Ignition then applies to it (the names Ignition
 * itself reads). cloud-config-url stays for sites that boot their own cloud-init image
 * with the same menu (guide 01's way). Serial console last, so it is /dev/console and a
 * headless machine's boot log lands on the BMC's serial-over-LAN.
 */
export function kernelArgs(spec: Spec, m: Machine): string[] {
  const u = bootUrls(spec);
  return [
    'ignition.firstboot',
    'ignition.platform.id=metal',
    `ignition.config.url=${u.ignition(m)}`,
    `cloud-config-url=${u.cloudConfig(m)}`,
    // Slipway's installer: write the OS image to the disk, then run Ignition on it
    `slipway.install=${u.installEnv(m)}`,
    'console=tty0',
    'console=ttyS0,115200n8',
  ];
}
