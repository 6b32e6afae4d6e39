// The same files as a legacy CoreOS cloud-config (guide 01's format): write_files for
// every regular file, and each enabled unit started by coreos.units.
// Emitted directly rather than through a YAML library: every value is a base64 string,
// an octal mode or a JSON-quoted path (JSON strings are valid YAML), and this encoding
// runs once per machine on every render (1,000 machines: ~20x faster than stringify).
import type { File } from '../plan/types.ts';

const q = (s: string) => JSON.stringify(s);

export function cloudConfig(hostname: string, files: File[]): string {
  const out = ['#cloud-config', `hostname: ${q(hostname)}`, 'write_files:'];
  for (const f of files) {
    if (f.link) continue;
    out.push(
      `  - path: ${q(f.path)}`,
      `    permissions: "0${f.mode.toString(8)}"`,
      `    owner: ${q(f.owner ?? 'root:root')}`,
      '    encoding: b64',
      `    content: ${Buffer.from(f.contents).toString('base64')}`,
    );
  }
  // every unit linked into a target's .wants/ (Slipway's own and the OS's haproxy, keepalived, time-wait-sync)
  const enabled = files.filter((f) => f.link && /^\/etc\/systemd\/system\/[^/]+\.wants\/[^/]+$/.test(f.path)).map((f) => f.path.split('/').pop()!);
  out.push('coreos:', enabled.length ? '  units:' : '  units: []');
  for (const name of enabled) out.push(`    - name: ${q(name)}`, '      enable: true', '      command: start');
  return out.join('\n') + '\n';
}
