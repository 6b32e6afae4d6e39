// The same files as a legacy CoreOS cloud-config (guide 01's format): write_files for
// every regular file, and each enabled unit started by coreos.units.
import { stringify } from 'yaml';
import type { File } from '../plan/types.ts';

export function cloudConfig(hostname: string, files: File[]): string {
  const enabled = files.filter((f) => f.link?.startsWith('/etc/systemd/system/')).map((f) => f.link!.slice('/etc/systemd/system/'.length));
  const doc = {
    hostname,
    write_files: files
      .filter((f) => !f.link)
      .map((f) => ({
        path: f.path,
        permissions: `0${f.mode.toString(8)}`,
        owner: 'root:root',
        encoding: 'b64',
        content: Buffer.from(f.contents).toString('base64'),
      })),
    coreos: { units: enabled.map((name) => ({ name, enable: true, command: 'start' })) },
  };
  return `#cloud-config\n${stringify(doc, { lineWidth: 0 })}`;
}
