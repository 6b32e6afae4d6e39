// IPv6 router advertisements on the lab's bridge, from Debian's radvd, as a segment with a
// router has them.
//
// Why: iPXE configures IPv4 (DHCP) and IPv6 (router solicitation) together and fetches
// its boot script only when both are done. With no router answering, the IPv6 side gives
// up after about 16 s, on every network boot (boot.qemu measured DHCP at 2.5 s, the
// script at 18.6 s). One advertisement ends that at once. It carries no prefix and a
// router lifetime of 0, so it gives the machines nothing: no address, no route, no DHCPv6
// (the M and O flags are off).
//
// The lab only: a real network has its router's advertisements or none. serve never sends
// them (the README's network boot notes).
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Netns } from './netns.ts';

export const RADVD = '/usr/sbin/radvd';

/** radvd.conf(5) for `iface`: advertise, but as no default router and with no prefix. */
export function radvdConf(iface: string): string {
  return [
    `interface ${iface} {`,
    '  AdvSendAdvert on;',
    '  # not a default router: the machines route through their rendered gateway only',
    '  AdvDefaultLifetime 0;',
    '  # no prefix, no managed or other configuration: nothing to configure, only an answer',
    '  AdvManagedFlag off;',
    '  AdvOtherConfigFlag off;',
    '  MinRtrAdvInterval 3;',
    '  MaxRtrAdvInterval 10;',
    '};',
    '',
  ].join('\n');
}

/**
 * Start radvd in `hub` on `iface` (radvd.conf and radvd.log in `dir`). Undefined when radvd is not
 * installed: the lab works without it, network boots just wait for IPv6 to give up.
 * The process is the namespace's: Netns.close() (or its exit hook) kills it by PID.
 */
export function startRouterAdverts(hub: Netns, iface: string, dir: string): ChildProcess | undefined {
  if (!existsSync(RADVD)) return undefined;
  const conf = join(dir, 'radvd.conf');
  const log = join(dir, 'radvd.log');
  writeFileSync(conf, radvdConf(iface));
  const fd = openSync(log, 'a', 0o600);
  try {
    // -n: stay in the foreground, so the PID is radvd's own (its privilege-separation
    // helper exits when radvd does)
    return hub.spawn(RADVD, ['--nodaemon', '--config', conf, '--pidfile', join(dir, 'radvd.pid'), '--logmethod', 'stderr'], { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}
