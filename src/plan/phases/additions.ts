// The operator's own files, units, sysctls and kernel arguments (issue 20), on the
// machines their roles or names select. Each file carries its origin ("spec.files[2]"): the planner refuses a
// clash with a file Slipway renders naming both (plan.ts), and `plan` shows it.
import { applies, type Machine } from '../../spec/types.ts';
import { installTargets } from '../../spec/additions.ts';
import { oneLine } from '../guard.ts';
import type { File, Phase } from '../types.ts';
import { SLIPWAY, UNITS } from '../paths.ts';

/** The operator's sysctls: after Slipway's 90-slipway-* files; a key both set differently is refused (plan.ts). */
export const SITE_SYSCTL = '/etc/sysctl.d/95-slipway-site.conf';

/**
 * The operator's kernel arguments, one line: the installer (scripts/os-image/init,
 * kernel_args) appends it to the APPEND line of the boot partition's SYSLINUX configs.
 */
export const KERNEL_ARGS_FILE = `${SLIPWAY}/kernel-args`;

/** "KEY = VALUE" lines of a sysctl.d file. */
export function sysctlKeys(contents: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of contents.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq).trim().replace(/\//g, '.'), line.slice(eq + 1).trim());
  }
  return out;
}

export const additionsPhase: Phase = {
  name: 'additions',
  machine(ctx, m: Machine) {
    const a = ctx.spec.additions;
    if (!a) return [];
    const files: File[] = [];
    for (const f of a.files.filter((x) => applies(x, m)))
      files.push({ path: f.path, mode: f.mode, contents: f.contents, owner: f.owner, origin: f.origin });
    for (const u of a.units.filter((x) => applies(x, m))) {
      const path = `${UNITS}/${u.name}`;
      files.push({ path, mode: 0o644, contents: u.contents, origin: u.origin });
      if (!u.enabled) continue;
      const t = installTargets(u.contents);
      // `systemctl enable` as data, for every target the unit's [Install] names
      for (const [kind, targets] of [['wants', t.wantedBy], ['requires', t.requiredBy]] as const)
        for (const target of targets) files.push({ path: `${UNITS}/${oneLine(target, `${u.origin}'s [Install]`)}.${kind}/${u.name}`, mode: 0o777, contents: '', link: path, origin: u.origin });
    }
    const sysctls = a.sysctls.filter((x) => applies(x, m));
    if (sysctls.length)
      files.push({
        path: SITE_SYSCTL,
        mode: 0o644,
        origin: sysctls.map((x) => x.origin).join(', '),
        contents: `# spec.sysctls from the cluster file (Slipway).\n${sysctls.map((x) => `${x.name} = ${oneLine(x.value, x.origin)}`).join('\n')}\n`,
      });
    const kargs = a.kernelArgs.filter((x) => applies(x, m));
    if (kargs.length)
      files.push({
        path: KERNEL_ARGS_FILE,
        mode: 0o644,
        origin: kargs.map((x) => x.origin).join(', '),
        contents: `# spec.kernelArgs from the cluster file (Slipway): the installer appends this line to the boot loader's.\n${kargs.flatMap((x) => x.args.map((arg) => oneLine(arg, x.origin))).join(' ')}\n`,
      });
    return files;
  },
};
