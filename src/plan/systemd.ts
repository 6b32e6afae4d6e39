// systemd units as data: sections of key → value(s), rendered by one small writer.
// Flags go on the ExecStart command line (as guide 02 does), one per line, so a
// person reading the unit on the machine sees exactly what runs.

import { BIN, UNITS } from './paths.ts';
import type { File } from './types.ts';
import { oneLine, Unrenderable, word } from './guard.ts';

/** The line continuation `command` writes between flags; the only line break a value may hold. */
const CONTINUATION = ' \\\n  ';

/** `systemctl enable` as a file: TARGET.wants/<the unit's name>, a link to the unit at `unitPath`. */
export function wantedBy(target: string, unitPath: string): File {
  return { path: `${UNITS}/${target}.wants/${unitPath.slice(unitPath.lastIndexOf('/') + 1)}`, mode: 0o777, contents: '', link: unitPath };
}

export type UnitValue = string | number | boolean | undefined | (string | number)[];
export type Section = Record<string, UnitValue>;
export interface Unit {
  Unit?: Section;
  Service?: Section;
  Install?: Section;
}

/**
 * A unit that runs a binary Slipway fetches (under BIN) starts only once that binary is
 * there: when the provisioner's assets lack it (a bundle without Kubernetes, say), systemd
 * skips the unit ("condition failed", not a restart loop) and progress.sh reports what
 * is missing, so nothing pretends to run.
 */
function withBinaryCondition(u: Unit): Unit {
  const exec = u.Service?.ExecStart;
  const binary = typeof exec === 'string' && exec.startsWith(`${BIN}/`) ? exec.split(/\s/)[0] : undefined;
  return binary ? { Unit: { ...u.Unit, ConditionFileIsExecutable: binary }, Service: u.Service, Install: u.Install } : u;
}

export function unitFile(unit: Unit): string {
  const u = withBinaryCondition(unit);
  const out: string[] = [];
  for (const [name, section] of Object.entries(u) as [string, Section | undefined][]) {
    if (!section) continue;
    if (out.length) out.push('');
    out.push(`[${name}]`);
    for (const [k, v] of Object.entries(section)) {
      if (v === undefined) continue;
      for (const item of Array.isArray(v) ? v : [v]) {
        const text = String(item === true ? 'yes' : item === false ? 'no' : item);
        for (const line of text.split(CONTINUATION)) oneLine(line, `the unit's ${name}.${k}=`);
        out.push(`${k}=${text}`);
      }
    }
  }
  return out.join('\n') + '\n';
}

export type Flags = Record<string, string | number | boolean | undefined | string[]>;

/** `binary --flag=value ...` split over lines; undefined flags are left out, lists joined by commas. */
export function command(binary: string, flags: Flags): string {
  const parts = [word(binary, 'a unit\'s command')];
  for (const [k, v] of Object.entries(flags)) {
    if (v === undefined) continue;
    const where = `${binary}'s --${k}`;
    // A list is joined by commas, so no item may hold one; systemd would expand % and $.
    const items = (Array.isArray(v) ? v : [String(v)]).map((item) => word(item, where));
    for (const item of items) if (/[%$\\"']/.test(item)) throw new Unrenderable(where, item, 'systemd would expand or unquote % $ \\ " \'');
    if (Array.isArray(v) && items.some((item) => item.includes(','))) throw new Unrenderable(where, items.find((i) => i.includes(','))!, 'list items cannot hold a comma');
    parts.push(`--${k}=${items.join(',')}`);
  }
  return parts.join(' \\\n  ');
}

/** Parse the flags back out of an ExecStart written by `command` (tests start real daemons from them). */
export function parseCommand(execStart: string): { binary: string; args: string[] } {
  const words = execStart.replace(/\\\n/g, ' ').trim().split(/\s+/);
  return { binary: words[0]!, args: words.slice(1) };
}
