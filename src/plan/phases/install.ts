// What the installer initramfs (scripts/os-image/init) needs to put the OS on a blank
// disk: where the disk image is and its digest, which disk, and how to report. Served by
// `slipway serve` at /machines/<name>/install.env, like ignition.json only to that
// machine while it is being provisioned (it carries the machine's report token).
//
// One KEY=value per line; the installer parses it (never sources it), so every value is
// held to a character set no shell or URL quoting can be needed for, and refused here
// otherwise (the schema already holds `disk` to that set: DISK_PATTERN).
import { OS_ASSETS } from '../../catalog/os.ts';
import { provisionerURL, type Machine } from '../../spec/types.ts';
import type { File, PhaseContext } from '../types.ts';

export const INSTALL_ENV = 'install.env';
/** The report API every report goes to (the installer's and the installed system's). */
export const REPORT_PATH = '/api/v1/report';

const SAFE = /^[A-Za-z0-9._:/@%+=,_-]*$/;

export function installEnvValues(ctx: PhaseContext, m: Machine): [string, string][] {
  const base = provisionerURL(ctx.spec);
  const token = ctx.secrets.machineTokens[m.name];
  if (!token) throw new Error(`secrets have no report token for ${m.name}`);
  const os = ctx.pins?.os;
  return [
    ['SLIPWAY_MACHINE', m.name],
    ['SLIPWAY_OS', ctx.spec.os],
    ['SLIPWAY_IMAGE_URL', `${base}/assets/${OS_ASSETS.disk}`],
    // empty when the image was not known at render time: the installer refuses to write
    ['SLIPWAY_IMAGE_SHA256', os?.sha256 ?? ''],
    ['SLIPWAY_IMAGE_SIZE', os ? String(os.rawSize) : ''],
    ['SLIPWAY_DISK', m.disk ?? ''],
    ['SLIPWAY_REPORT_URL', `${base}${REPORT_PATH}`],
    ['SLIPWAY_TOKEN', token],
  ];
}

export function installEnv(ctx: PhaseContext, m: Machine): File {
  const lines = installEnvValues(ctx, m).map(([k, v]) => {
    if (!SAFE.test(v)) throw new Error(`${m.name}: ${k} ${JSON.stringify(v)} has a character the installer cannot read (only letters, digits and ._:/@%+=,_-)`);
    return `${k}=${v}`;
  });
  return { path: INSTALL_ENV, mode: 0o600, contents: `# slipway install.env for ${m.name}: read by the installer initramfs (scripts/os-image/init)\n${lines.join('\n')}\n`, secret: true };
}
