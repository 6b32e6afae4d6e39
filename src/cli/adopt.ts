// `slipway adopt -f FILE MAC --name NAME --roles ROLES [--ip IP]` (issue 18): a machine
// added to the cluster file where the yaml package's Document API says the machines end,
// as text, so every comment and the layout of the rest of the file stay as they were. The result must pass the same checks
// as `validate` before anything is written, and it is written atomically (a temporary
// file beside it, renamed over it, the file's mode kept): a refused adoption leaves the
// file byte for byte as it was.
import { randomBytes } from 'node:crypto';
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { parseClusterFile, hasErrors } from '../spec/parse.ts';
import { formatProblem } from '../spec/problems.ts';
import { formatIp, parseIp } from '../lib/ipv4.ts';
import { MAC_RE, normalizeMac } from '../lib/mac.ts';
import type { Spec } from '../spec/types.ts';

export class AdoptRefused extends Error {}

export interface Adoption {
  mac: string;
  name: string;
  roles: string[];
  /** with or without a prefix; default: the next free address of the subnet */
  ip?: string;
}

/** The first free host address after the highest machine address (then from the subnet's start). */
export function nextFreeIp(spec: Spec): string {
  const { subnet, pool } = spec.provisioner.dhcp;
  const taken = new Set<number>(
    [spec.provisioner.address, spec.provisioner.dhcp.router, spec.controlPlane.vip, ...spec.machines.map((m) => m.ip)].filter((x): x is string => !!x).map((x) => parseIp(x)!),
  );
  const inPool = (n: number) => !!pool && n >= parseIp(pool.start)! && n <= parseIp(pool.end)!;
  const first = subnet.base + 1;
  const last = subnet.base + 2 ** (32 - subnet.prefix) - 2;
  const highest = Math.max(...spec.machines.map((m) => parseIp(m.ip)!));
  for (const start of [highest + 1, first])
    for (let n = Math.max(start, first); n <= last; n++) if (!taken.has(n) && !inPool(n)) return formatIp(n);
  throw new AdoptRefused(`no free address left in ${subnet.cidr}`);
}

/** The file's text with the machine added (or AdoptRefused naming why, nothing changed). */
export function adoptText(text: string, file: string, a: Adoption): { text: string; ip: string } {
  const loaded = parseClusterFile(text, file);
  if (!loaded.spec) throw new AdoptRefused(`${file} is not valid as it is; fix it first:\n${loaded.problems.map(formatProblem).join('\n')}`);
  const spec = loaded.spec;
  if (!MAC_RE.test(a.mac)) throw new AdoptRefused(`${JSON.stringify(a.mac)} is not a MAC address (six hex pairs: 52:54:00:20:30:11)`);
  const mac = normalizeMac(a.mac);
  const sameMac = spec.machines.find((m) => m.mac === mac);
  if (sameMac) throw new AdoptRefused(`${mac} is already adopted: it is ${sameMac.name}`);
  if (spec.machines.some((m) => m.name === a.name)) throw new AdoptRefused(`the name ${a.name} is already used by another machine`);
  const ip = a.ip ?? `${nextFreeIp(spec)}/${spec.provisioner.dhcp.subnet.prefix}`;
  // The Document API finds where the list ends and how it is indented; the entry goes in
  // as text there, so nothing else of the file is re-serialized (yaml's toString would
  // re-flow comments, flow lists and long lines).
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  const machines = doc.getIn(['spec', 'machines'], true);
  if (!isSeq(machines) || machines.items.length === 0 || !machines.range) throw new AdoptRefused(`${file}: spec.machines is not a list of machines`);
  if (machines.flow) throw new AdoptRefused(`${file}: spec.machines is written inline ([...]); adopt adds to a block list ("- name: ...")`);
  const last = machines.items[machines.items.length - 1]!;
  if (!isMap(last) || !last.range) throw new AdoptRefused(`${file}: the last of spec.machines is not a machine`);
  const { col } = lc.linePos(last.range[0]);
  // the column of "- " is two before the map's first key in a block list ("- name: ...")
  const dash = ' '.repeat(Math.max(0, col - 3));
  const q = (v: string) => JSON.stringify(v);
  const entry = last.flow
    ? `${dash}- {name: ${a.name}, mac: ${q(mac)}, ip: ${ip}, roles: [${a.roles.join(', ')}]}\n`
    : `${dash}- name: ${a.name}\n${dash}  mac: ${q(mac)}\n${dash}  ip: ${ip}\n${dash}  roles: [${a.roles.join(', ')}]\n`;
  const eol = text.indexOf('\n', last.range[1]);
  const at = eol < 0 ? text.length : eol + 1;
  const out = (eol < 0 ? `${text}\n` : text.slice(0, at)) + entry + text.slice(at);
  // the same checks as `validate`, on the new text: nothing is written unless it passes
  const check = parseClusterFile(out, file);
  if (hasErrors(check.problems)) throw new AdoptRefused(`the file would not be valid with ${a.name}:\n${check.problems.filter((p) => p.severity === 'error').map(formatProblem).join('\n')}`);
  return { text: out, ip };
}

export async function adoptFile(file: string, a: Adoption): Promise<{ ip: string }> {
  const text = await readFile(file, 'utf8');
  const r = adoptText(text, file, a);
  const mode = (await stat(file)).mode & 0o777;
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, r.text, { mode, flag: 'wx' });
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return { ip: r.ip };
}

/** argv of `slipway adopt`; AdoptUsage for a usage error (exit 2), AdoptRefused for a refusal (exit 1). */
export class AdoptUsage extends Error {}

export async function adoptCli(argv: string[], out: (s: string) => void): Promise<number> {
  const { parseArgs } = await import('node:util');
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { file: { type: 'string', short: 'f' }, name: { type: 'string' }, roles: { type: 'string' }, ip: { type: 'string' } } });
  } catch (e) {
    throw new AdoptUsage((e as Error).message);
  }
  const a = parsed.values;
  if (!a.file) throw new AdoptUsage('missing -f FILE');
  if (parsed.positionals.length !== 1) throw new AdoptUsage('adopt takes one MAC');
  if (!a.name) throw new AdoptUsage('missing --name NAME');
  if (!a.roles) throw new AdoptUsage('missing --roles ROLE[,ROLE...]');
  const roles = a.roles.split(',').map((r) => r.trim()).filter(Boolean);
  const { ip } = await adoptFile(a.file, { mac: parsed.positionals[0]!, name: a.name, roles, ip: a.ip });
  out(`${a.file}: adopted ${normalizeMac(parsed.positionals[0]!)} as ${a.name} (${roles.join(', ')}, ${ip})`);
  return 0;
}
