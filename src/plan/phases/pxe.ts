// The PXE side (DIR/pxe/): DHCP server configs in three dialects, PXELINUX configs and
// iPXE scripts, all renderings of the one boot policy in pxe/boot.ts (read its header
// for the boot chain and the HTTP layout). Files are in sorted-path order by plan.ts;
// everything here is a function of the Spec alone.
import type { Machine, Spec } from '../../spec/types.ts';
import type { File, Phase } from '../types.ts';
import { PXELINUX_INITRD, PXELINUX_KERNEL, bootUrls, kernelArgs, macHyphen } from './pxe/boot.ts';
import { dhcpdConf } from './pxe/dhcpd.ts';
import { keaJson } from './pxe/kea.ts';
import { dnsmasqConf } from './pxe/dnsmasq.ts';
import { bootWord } from './pxe/text.ts';

export { bootUrls, kernelArgs, macHyphen } from './pxe/boot.ts';

/** PXELINUX looks for pxelinux.cfg/01-<mac> (01 = ARP hardware type Ethernet) before "default". */
export const pxelinuxName = (m: Machine): string => `pxelinux.cfg/01-${macHyphen(m.mac)}`;

function pxelinuxMachine(spec: Spec, m: Machine): string {
  return [
    `# ${m.name} (${m.mac}, ${m.ip}): first boot from the network, Ignition from the provisioner.`,
    '# Once installed, switch DEFAULT to "local" (or remove this file) so a reboot does not',
    '# boot the installer again.',
    'DEFAULT install',
    'PROMPT 0',
    'TIMEOUT 0',
    '',
    'LABEL install',
    `  KERNEL ${bootWord(PXELINUX_KERNEL)}`,
    `  APPEND ${[`initrd=${PXELINUX_INITRD}`, ...kernelArgs(spec, m)].map(bootWord).join(' ')}`,
    '',
    'LABEL local',
    '  LOCALBOOT 0',
    '',
  ].join('\n');
}

const PXELINUX_DEFAULT = [
  '# Machines not in the cluster file: boot from the local disk, never install.',
  'DEFAULT local',
  'PROMPT 0',
  'TIMEOUT 0',
  '',
  'LABEL local',
  '  LOCALBOOT 0',
  '',
].join('\n');

function ipxeMachine(spec: Spec, m: Machine): string {
  const u = bootUrls(spec);
  // initrd=<name> on the kernel line: an EFI-stub kernel started by iPXE under UEFI only
  // finds the initrd when the command line names it; BIOS kernels ignore it.
  const args = ['initrd=initrd.img', ...kernelArgs(spec, m)].map(bootWord).join(' ');
  return [
    '#!ipxe',
    `# ${m.name} (${m.mac}, ${m.ip}): kernel and initrd over HTTP, Ignition from the provisioner.`,
    `kernel ${bootWord(u.kernel)} ${args} || goto failed`,
    `initrd ${bootWord(u.initrd)} || goto failed`,
    'boot || goto failed',
    '',
    ':failed',
    `echo Slipway: booting ${m.name} failed; leaving iPXE so the firmware tries its next boot device.`,
    'exit 1',
    '',
  ].join('\n');
}

/** What iPXE runs first (DHCP hands it this file's URL): find the machine by MAC. */
function ipxeBoot(spec: Spec): string {
  const u = bootUrls(spec);
  return [
    '#!ipxe',
    '# Every iPXE client starts here. It asks for the script of the NIC it booted from',
    '# (netX), by MAC with hyphens: /ipxe/mac/<aa-bb-cc-dd-ee-ff>.ipxe. That file exists for',
    '# each machine in the cluster file and chains /ipxe/<name>.ipxe; slipway serve answers',
    '# the same path from its MAC table, and a static HTTP server works from this tree.',
    `chain --autofree ${bootWord(`${u.base}/ipxe/mac/`)}\${netX/mac:hexhyp}.ipxe || goto unknown`,
    '',
    ':unknown',
    '# Not a machine of this cluster (or its script failed): leave iPXE, and the firmware',
    '# boots its next device (normally the local disk).',
    'echo Slipway: no boot script for ${netX/mac}; leaving iPXE.',
    'exit 1',
    '',
  ].join('\n');
}

function ipxeMac(spec: Spec, m: Machine): string {
  return ['#!ipxe', `# ${m.mac} is ${m.name}.`, `chain --autofree ${bootWord(bootUrls(spec).machineScript(m))}`, ''].join('\n');
}

export function pxeFiles(spec: Spec): File[] {
  const file = (path: string, contents: string): File => ({ path, mode: 0o644, contents });
  const files: File[] = [
    file('dhcpd.conf', dhcpdConf(spec)),
    file('kea-dhcp4.json', keaJson(spec)),
    file('dnsmasq.conf', dnsmasqConf(spec)),
    file('pxelinux.cfg/default', PXELINUX_DEFAULT),
    file('boot.ipxe', ipxeBoot(spec)),
  ];
  for (const m of spec.machines)
    files.push(
      file(pxelinuxName(m), pxelinuxMachine(spec, m)),
      file(`ipxe/${m.name}.ipxe`, ipxeMachine(spec, m)),
      file(`ipxe/mac/${macHyphen(m.mac)}.ipxe`, ipxeMac(spec, m)),
    );
  return files;
}

export const pxePhase: Phase = {
  name: 'pxe',
  pxe: (ctx) => pxeFiles(ctx.spec),
};
