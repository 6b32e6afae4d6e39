// A machine's files as an Ignition spec 3.3 config (the real Ignition in Slipway's
// installer applies it to the new root; Flatcar and Fedora CoreOS read the same spec). It carries exactly the machine's root/ tree: regular
// files with their modes, and the symlinks that enable units.
import type { File } from '../plan/types.ts';

export const IGNITION_VERSION = '3.3.0';

export function ignitionConfig(files: File[]): string {
  const regular = files.filter((f) => !f.link);
  const links = files.filter((f) => f.link);
  const config = {
    ignition: { version: IGNITION_VERSION },
    storage: {
      files: regular.map((f) => ({
        path: f.path,
        mode: f.mode,
        // issue 20: the operator's files may name an owner (Ignition looks the names up in the new root)
        ...(f.owner ? { user: { name: f.owner.split(':')[0] }, group: { name: f.owner.split(':')[1] ?? 'root' } } : {}),
        overwrite: true,
        contents: { source: `data:;base64,${Buffer.from(f.contents).toString('base64')}` },
      })),
      links: links.map((f) => ({ path: f.path, target: f.link!, hard: false, overwrite: true })),
    },
  };
  return JSON.stringify(config, null, 2) + '\n';
}
