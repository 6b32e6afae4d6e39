// Adoption (issue 18): a machine added to the cluster file where the yaml package's
// Document API says the machines end, as text, so every comment and the layout of the
// rest of the file stay as they were. The result must pass the same checks as `validate`
// before anything is written, and it is written atomically (a temporary file beside it,
// renamed over it, the file's mode kept): a refused adoption leaves the file byte for byte
// as it was. `slipway adopt` (cli/adopt.ts) and serve's POST /api/v1/adopt (the console)
// both run this code; AdoptRefused names the field at fault for the console.
import { randomBytes } from 'node:crypto';
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { parseClusterFile, hasErrors } from './parse.ts';
import { formatProblem } from './problems.ts';
import { formatIp, parseIp } from '../lib/ipv4.ts';
import { MAC_RE, normalizeMac } from '../lib/mac.ts';
import type { Spec } from './types.ts';

/** What an adoption can be refused for: the field at fault (mac, name, roles, ip, disk, bmc) or the file itself. */
export type AdoptField = 'mac' | 'name' | 'roles' | 'ip' | 'disk' | 'bmc' | 'file';

export class AdoptRefused extends Error {
  readonly field: AdoptField;
  /** it clashes with a machine already in the file (its MAC or name) */
  readonly conflict: boolean;
  constructor(message: string, field: AdoptField = 'file', conflict = false) {
    super(message);
    this.field = field;
    this.conflict = conflict;
  }
}

export interface Adoption {
  mac: string;
  name: string;
  roles: string[];
  /** with or without a prefix; default: the next free address of the subnet */
  ip?: string;
  /** the install disk (machines[].disk), from the facts it enlisted with */
  disk?: string;
  /** its BMC (machines[].bmc): the address from its facts, the credentials from the operator */
  bmc?: { address: string; username: string; passwordFile?: string; passwordEnv?: string };
  /** a BMC address from its facts without credentials to go with it: written as a comment */
  bmcNote?: string;
}

/** What enlistment's facts say of a machine's disks and BMC (serve/enlist.ts's Facts, the parts adopt reads). */
export interface FactsForAdopt {
  disks?: { path: string; ids: string[]; removable: boolean }[];
  bmc?: { address: string; mac: string };
}

/** The operator's BMC credentials for an adopted machine (the address comes from its facts). */
export interface BmcCredentials {
  username?: string;
  passwordFile?: string;
  passwordEnv?: string;
}

/**
 * The disk the installer would take (the only non-removable one), by a stable name: a
 * /dev/disk/by-id name (by-path when it has none; /dev/NAME last), or why there is none.
 */
export function installDisk(facts: FactsForAdopt): { disk: string } | { why: string } {
  const fixed = (facts.disks ?? []).filter((d) => !d.removable);
  if (fixed.length === 0) return { why: 'it reported no non-removable disk' };
  if (fixed.length > 1) return { why: `it has ${fixed.length} disks (${fixed.map((d) => d.path).join(', ')}): name one with machines[].disk` };
  const d = fixed[0]!;
  return { disk: d.ids.find((i) => i.startsWith('/dev/disk/by-id/')) ?? d.ids.find((i) => i.startsWith('/dev/disk/by-path/')) ?? d.path };
}

/**
 * The adoption with what its facts say filled in (install disk, BMC) and notes for the
 * operator; AdoptRefused when BMC credentials are given but the facts name no BMC address.
 */
export function withFacts(a: Adoption, facts: FactsForAdopt | undefined, creds: BmcCredentials, noFactsWhy?: string): { adoption: Adoption; notes: string[] } {
  const adoption: Adoption = { ...a };
  const notes: string[] = [];
  if (!facts) {
    if (creds.username) throw new AdoptRefused(`no BMC address to go with the BMC username: ${noFactsWhy ?? `${a.mac} has no enlistment facts`}`, 'bmc');
    if (noFactsWhy) notes.push(`no facts: ${noFactsWhy}`);
    return { adoption, notes };
  }
  const d = installDisk(facts);
  if ('disk' in d) adoption.disk = d.disk;
  else notes.push(`disk not filled in: ${d.why}`);
  const addr = facts.bmc?.address;
  if (addr && creds.username) adoption.bmc = { address: addr, username: creds.username, ...(creds.passwordEnv !== undefined ? { passwordEnv: creds.passwordEnv } : { passwordFile: creds.passwordFile ?? `bmc/${a.name}.pw` }) };
  else if (addr) adoption.bmcNote = `its BMC (enlisted): ${addr}${facts.bmc?.mac ? ` (${facts.bmc.mac})` : ''}: bmc: {address: ${addr}, username: ..., passwordFile: ..., protocol: ipmi}`;
  else if (creds.username) throw new AdoptRefused(`no BMC address to go with the BMC username: ${normalizeMac(a.mac)}'s facts name none`, 'bmc');
  else notes.push('no BMC address in its facts');
  return { adoption, notes };
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
  throw new AdoptRefused(`no free address left in ${subnet.cidr}`, 'ip');
}

/**
 * A value as YAML text: plain when it cannot mean anything but itself there (as the file's
 * own entries are written), else double-quoted, so whatever an operator types (a console
 * field included) stays one scalar of this entry and `validate` judges it where it stands.
 */
const scalar = (v: string) => (/^[A-Za-z0-9][A-Za-z0-9_./-]*$/.test(v) ? v : JSON.stringify(v));

/** The file's text with the machine added (or AdoptRefused naming why and the field, nothing changed). */
export function adoptText(text: string, file: string, a: Adoption): { text: string; ip: string } {
  const loaded = parseClusterFile(text, file);
  if (!loaded.spec) throw new AdoptRefused(`${file} is not valid as it is; fix it first:\n${loaded.problems.map(formatProblem).join('\n')}`);
  const spec = loaded.spec;
  if (!MAC_RE.test(a.mac)) throw new AdoptRefused(`${JSON.stringify(a.mac)} is not a MAC address (six hex pairs: 52:54:00:20:30:11)`, 'mac');
  const mac = normalizeMac(a.mac);
  const sameMac = spec.machines.find((m) => m.mac === mac);
  if (sameMac) throw new AdoptRefused(`${mac} is already adopted: it is ${sameMac.name}`, 'mac', true);
  if (spec.machines.some((m) => m.name === a.name)) throw new AdoptRefused(`the name ${a.name} is already used by another machine`, 'name', true);
  if (a.roles.length === 0) throw new AdoptRefused('give at least one role (control-plane, etcd, worker)', 'roles');
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
  const index = machines.items.length;
  const { col } = lc.linePos(last.range[0]);
  // the column of "- " is two before the map's first key in a block list ("- name: ...")
  const dash = ' '.repeat(Math.max(0, col - 3));
  const q = (v: string) => JSON.stringify(v);
  const b = a.bmc;
  const bmc = b ? `{address: ${q(b.address)}, username: ${q(b.username)}, ${b.passwordFile !== undefined ? `passwordFile: ${q(b.passwordFile)}` : `passwordEnv: ${q(b.passwordEnv ?? '')}`}, protocol: ipmi}` : undefined;
  const fields = [`name: ${scalar(a.name)}`, `mac: ${q(mac)}`, `ip: ${scalar(ip)}`, `roles: [${a.roles.map(scalar).join(', ')}]`, ...(a.disk ? [`disk: ${q(a.disk)}`] : []), ...(bmc ? [`bmc: ${bmc}`] : [])];
  const note = a.bmcNote ? `${dash}  # ${a.bmcNote.replace(/[\r\n]/g, ' ')}\n` : '';
  const entry = last.flow
    ? `${dash}- {${fields.join(', ')}}\n${note}`
    : `${dash}- ${fields.join(`\n${dash}  `)}\n${note}`;
  // after the line the last machine's text ends on (its range can reach past blank lines
  // and the end of the file: the entry would land after them, and a blank line be added)
  let end = last.range[1];
  while (end > last.range[0] && /\s/.test(text[end - 1]!)) end--;
  const eol = text.indexOf('\n', end);
  let at = eol < 0 ? text.length : eol + 1;
  // and after the comment lines indented under it (an earlier adoption's BMC note)
  for (let m; (m = /^( *)#[^\n]*(\n|$)/.exec(text.slice(at))) && m[1]!.length >= dash.length + 2 && m[0].length > 0; ) at += m[0].length;
  const out = (at === text.length && !text.endsWith('\n') ? `${text}\n` : text.slice(0, at)) + entry + text.slice(at);
  // the same checks as `validate`, on the new text: nothing is written unless it passes
  const check = parseClusterFile(out, file);
  if (hasErrors(check.problems)) {
    const errors = check.problems.filter((p) => p.severity === 'error');
    // the field of the new entry the first problem is about (spec.machines[index].<field>...)
    const mine = errors.map((p) => p.path).find((p) => p[0] === 'spec' && p[1] === 'machines' && p[2] === index && typeof p[3] === 'string');
    const field = (['mac', 'name', 'roles', 'ip', 'disk', 'bmc'] as const).find((f) => f === mine?.[3]) ?? 'file';
    throw new AdoptRefused(`the file would not be valid with ${a.name}:\n${errors.map(formatProblem).join('\n')}`, field);
  }
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
