// The VM rehearsal's data, without booting anything: the hardware table (every firmware,
// NIC and disk controller in the default 5-machine run, and all of them among the three
// control planes, which a run with w1 and w2 broken on purpose still installs), the QEMU
// arguments each row gives, the blank-disk test of a disk file, and how the installer's
// steps are read from serve's events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DISK_BYTES, HARDWARE, describeHardware, diskArgs, firmwareArgs, hardwareFor, nicDevice, OVMF_CODE } from '../src/rehearse/vm/hardware.ts';
import { blankDisk } from '../src/rehearse/vm/qemu.ts';
import { installerSteps, INSTALL_STEPS, systemReported, type MachineEvent } from '../src/rehearse/vm/install.ts';

test('the hardware table: both firmwares, both NICs, all three disk controllers, all among the first three machines', () => {
  const kinds = (rows: readonly typeof HARDWARE[number][]) => ({
    firmware: new Set(rows.map((h) => h.firmware)),
    nic: new Set(rows.map((h) => h.nic)),
    disk: new Set(rows.map((h) => h.disk)),
  });
  const want = { firmware: new Set(['bios', 'uefi']), nic: new Set(['virtio', 'e1000e']), disk: new Set(['virtio-blk', 'ahci', 'nvme']) };
  assert.equal(HARDWARE.length, 5);
  assert.deepEqual(kinds(HARDWARE), want);
  assert.deepEqual(kinds(HARDWARE.slice(0, 3)), want, 'cp1-cp3 alone prove every driver');
  assert.deepEqual(hardwareFor(5), hardwareFor(0), 'more machines than rows: the rows cycle');
  assert.equal(describeHardware(HARDWARE[1]!), 'UEFI (OVMF), Intel e1000e NIC, AHCI (SATA) disk, hardware clock starting 2015-01-01');
  assert.equal(describeHardware(HARDWARE[0]!), 'BIOS (SeaBIOS), virtio-net NIC, virtio-blk disk');
  // two etcd members start with their clocks years off: etcd-healthy then proves the time path
  assert.deepEqual(HARDWARE.slice(0, 3).map((h) => h.rtc?.slice(0, 4)), [undefined, '2015', '2015']);
  assert.equal(DISK_BYTES, 8 * 1024 ** 3);
});

test('each row gives QEMU its NIC, its disk on its controller (raw, with a serial, after the NIC), and its firmware', () => {
  const args = (i: number) => diskArgs(HARDWARE[i]!, '/r/d.raw', 'slipway-x').join(' ');
  assert.equal(args(0), '-drive file=/r/d.raw,if=none,id=d0,format=raw,cache=writeback -device virtio-blk-pci,drive=d0,serial=slipway-x,bootindex=2');
  assert.equal(args(1), '-drive file=/r/d.raw,if=none,id=d0,format=raw,cache=writeback -device ahci,id=sata0 -device ide-hd,bus=sata0.0,drive=d0,serial=slipway-x,bootindex=2');
  assert.equal(args(2), '-drive file=/r/d.raw,if=none,id=d0,format=raw,cache=writeback -device nvme,drive=d0,serial=slipway-x,bootindex=2');
  assert.deepEqual(HARDWARE.map(nicDevice), ['virtio-net-pci', 'e1000e', 'e1000e', 'virtio-net-pci', 'virtio-net-pci']);
  assert.deepEqual(firmwareArgs(HARDWARE[0]!, '/r/vars.fd'), [], 'SeaBIOS: QEMU\'s default');
  assert.deepEqual(firmwareArgs(HARDWARE[1]!, '/r/vars.fd'), ['-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', 'if=pflash,format=raw,unit=1,file=/r/vars.fd']);
});

test('blankDisk: a sparse file never written is blank; one with a partition table is not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-blank-'));
  try {
    const file = join(dir, 'disk.raw');
    closeSync(openSync(file, 'wx'));
    truncateSync(file, 64 * 1024 ** 2);
    const b = blankDisk(file);
    assert.equal(b.blank, true, b.detail);
    assert.match(b.detail, /^67108864 bytes, 0 allocated, first MiB all zeros \(no partition table\)$/);
    // an MBR's signature at 510
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from([0x55, 0xaa]), 0, 2, 510);
    closeSync(fd);
    const w = blankDisk(file);
    assert.equal(w.blank, false);
    assert.match(w.detail, /first MiB not zeros/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const ev = (to: string, step?: string, source = 'machine'): MachineEvent => ({ to, source, detail: step ? { step } : {} });

test('installerSteps: the installer\'s steps in order, write progress collapsed, other sources ignored', () => {
  const events = [ev('dhcp', undefined, 'dhcp'), ev('booting', undefined, 'http'), ev('config-fetched', undefined, 'http'), ev('installing', 'disk'), ev('installing', 'write'), ev('installing', 'write'), ev('installing', 'write'), ev('installing', 'grow'), ev('installing', 'ignition'), ev('installed', 'reboot')];
  assert.deepEqual(installerSteps(events), [...INSTALL_STEPS]);
  assert.equal(systemReported(events), false, 'the installer\'s own installed is not the installed system');
  assert.equal(systemReported([...events, ev('booting', undefined, 'http')]), false, 'serve telling it to boot local is not it either');
  assert.equal(systemReported([...events, ev('installed')]), true);
  assert.equal(systemReported([...events, ev('failed')]), true);
  // a failed write: no grow, no installed
  assert.deepEqual(installerSteps([ev('installing', 'disk'), ev('installing', 'write'), ev('failed', 'write')]), ['disk', 'write']);
});
