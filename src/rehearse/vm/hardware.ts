// What each VM of the rehearsal is made of, as data: its firmware, its NIC and its disk
// controller. The default 5-machine run mixes them so that one run proves the installer
// and the installed OS on each kind a rack has: BIOS (SeaBIOS) and UEFI (OVMF), virtio
// and Intel e1000e NICs (each network-booting through its own iPXE ROM, Debian's
// ipxe-qemu), virtio-blk, AHCI (SATA) and NVMe disks. The i-th machine of the file gets
// row i (cycling); the report prints each machine's row.
import { existsSync } from 'node:fs';

export type Firmware = 'bios' | 'uefi';
export type NicModel = 'virtio' | 'e1000e';
export type DiskBus = 'virtio-blk' | 'ahci' | 'nvme';

export interface Hardware {
  firmware: Firmware;
  nic: NicModel;
  disk: DiskBus;
  /** the hardware clock's start when it is wrong, as a new machine's often is (QEMU -rtc base=) */
  rtc?: string;
}

/**
 * In the file's order (examples/rehearsal.yaml: cp1, cp2, cp3, w1, w2). The three control
 * planes alone cover both firmwares, both NICs and all three disks, so a run with w1 and
 * w2 broken on purpose (test/rehearse.test.ts) still proves every driver. reboot-from-disk
 * resets the last machine installed and not failed: w2 (UEFI, NVMe) in a clean run, cp3
 * (BIOS, NVMe) in that test. cp2 and cp3 start with their hardware clocks in 2015: their
 * etcd (TLS between the members) may only start once timesyncd took serve's time, so
 * etcd-healthy proves the time path too.
 */
const CLOCK_YEARS_OFF = '2015-01-01T00:00:00';

export const HARDWARE: readonly Hardware[] = [
  { firmware: 'bios', nic: 'virtio', disk: 'virtio-blk' },
  { firmware: 'uefi', nic: 'e1000e', disk: 'ahci', rtc: CLOCK_YEARS_OFF },
  { firmware: 'bios', nic: 'e1000e', disk: 'nvme', rtc: CLOCK_YEARS_OFF },
  { firmware: 'bios', nic: 'virtio', disk: 'ahci' },
  { firmware: 'uefi', nic: 'virtio', disk: 'nvme' },
];

export const hardwareFor = (i: number): Hardware => HARDWARE[i % HARDWARE.length]!;

/** Every VM's disk: blank, and big enough for the image (its root grows to the rest). */
export const DISK_BYTES = 8 * 1024 ** 3;

/** Debian's ovmf: the UEFI code (read-only) and the template of each VM's own variable store. */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** Where QEMU finds the NICs' iPXE ROMs (Debian's ipxe-qemu; QEMU's firmware path). */
const ROM_DIRS = ['/usr/lib/ipxe/qemu', '/usr/share/qemu'];
const ROMS: Record<NicModel, string> = { virtio: 'efi-virtio.rom', e1000e: 'efi-e1000e.rom' };

const FIRMWARE_TEXT: Record<Firmware, string> = { bios: 'BIOS (SeaBIOS)', uefi: 'UEFI (OVMF)' };
const NIC_TEXT: Record<NicModel, string> = { virtio: 'virtio-net NIC', e1000e: 'Intel e1000e NIC' };
const DISK_TEXT: Record<DiskBus, string> = { 'virtio-blk': 'virtio-blk disk', ahci: 'AHCI (SATA) disk', nvme: 'NVMe disk' };

/** "UEFI (OVMF), Intel e1000e NIC, AHCI (SATA) disk" */
export const describeHardware = (h: Hardware): string => `${FIRMWARE_TEXT[h.firmware]}, ${NIC_TEXT[h.nic]}, ${DISK_TEXT[h.disk]}${h.rtc ? `, hardware clock starting ${h.rtc.slice(0, 10)}` : ''}`;

/** What the host lacks to run these rows: Debian packages named. */
export function missingFirmware(rows: readonly Hardware[]): string[] {
  const missing: string[] = [];
  if (rows.some((h) => h.firmware === 'uefi') && (!existsSync(OVMF_CODE) || !existsSync(OVMF_VARS))) missing.push(`${OVMF_CODE} and ${OVMF_VARS} (ovmf)`);
  for (const nic of new Set(rows.map((h) => h.nic))) {
    if (!ROM_DIRS.some((d) => existsSync(`${d}/${ROMS[nic]}`))) missing.push(`the iPXE ROM ${ROMS[nic]} for the ${NIC_TEXT[nic]} (ipxe-qemu)`);
  }
  return missing;
}

/** The QEMU device of the NIC (its ROM is QEMU's default for the model: iPXE, BIOS and EFI in one). */
export const nicDevice = (h: Hardware): string => (h.nic === 'virtio' ? 'virtio-net-pci' : 'e1000e');

/**
 * The disk's QEMU arguments: a raw file as drive d0 on the row's controller, with a
 * serial (the installer's /dev/disk/by-id names come from it), booting after the NIC.
 */
export function diskArgs(h: Hardware, file: string, serial: string): string[] {
  const drive = ['-drive', `file=${file},if=none,id=d0,format=raw,cache=writeback`];
  switch (h.disk) {
    case 'virtio-blk':
      return [...drive, '-device', `virtio-blk-pci,drive=d0,serial=${serial},bootindex=2`];
    case 'ahci':
      return [...drive, '-device', 'ahci,id=sata0', '-device', `ide-hd,bus=sata0.0,drive=d0,serial=${serial},bootindex=2`];
    case 'nvme':
      return [...drive, '-device', `nvme,drive=d0,serial=${serial},bootindex=2`];
  }
}

/** The firmware's QEMU arguments: nothing for SeaBIOS (QEMU's default), OVMF's code and the VM's own variable store. */
export function firmwareArgs(h: Hardware, vars: string): string[] {
  return h.firmware === 'bios' ? [] : ovmfArgs(vars);
}

/** OVMF as QEMU's flash: the code read-only, `vars` (a VM's own copy of OVMF_VARS) writable. */
export const ovmfArgs = (vars: string): string[] => ['-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`];
