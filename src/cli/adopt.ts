// `slipway adopt -f FILE MAC --name NAME --roles ROLES [--ip IP]` (issue 18): a machine
// added to the cluster file where the yaml package's Document API says the machines end,
// as text, so every comment and the layout of the rest of the file stay as they were. The result must pass the same checks
// as `validate` before anything is written, and it is written atomically (a temporary
// file beside it, renamed over it, the file's mode kept): a refused adoption leaves the
// file byte for byte as it was.
import { randomBytes } from 'node:crypto';
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, basename, resolve } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { parseClusterFile, hasErrors } from '../spec/parse.ts';
import { formatProblem } from '../spec/problems.ts';
import { formatIp, parseIp } from '../lib/ipv4.ts';
import { MAC_RE, normalizeMac } from '../lib/mac.ts';
import { provisionerURL, type Spec } from '../spec/types.ts';

export class AdoptRefused extends Error {}

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
  const b = a.bmc;
  const bmc = b ? `{address: ${q(b.address)}, username: ${q(b.username)}, ${b.passwordFile !== undefined ? `passwordFile: ${q(b.passwordFile)}` : `passwordEnv: ${q(b.passwordEnv ?? '')}`}, protocol: ipmi}` : undefined;
  const fields = [`name: ${a.name}`, `mac: ${q(mac)}`, `ip: ${ip}`, `roles: [${a.roles.join(', ')}]`, ...(a.disk ? [`disk: ${q(a.disk)}`] : []), ...(bmc ? [`bmc: ${bmc}`] : [])];
  const note = a.bmcNote ? `${dash}  # ${a.bmcNote.replace(/[\r\n]/g, ' ')}\n` : '';
  const entry = last.flow
    ? `${dash}- {${fields.join(', ')}}\n${note}`
    : `${dash}- ${fields.join(`\n${dash}  `)}\n${note}`;
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

/** The facts a running serve holds for `mac` (undefined: it enlisted none); throws when serve cannot be asked. */
async function factsOf(file: string, mac: string, o: { server?: string; state?: string; tokenFile?: string }): Promise<FactsForAdopt | undefined> {
  if (!MAC_RE.test(mac)) return undefined; // adoptText says why
  const loaded = parseClusterFile(await readFile(file, 'utf8'), file);
  if (!loaded.spec) return undefined; // adoptText says why
  const tokenFile = o.tokenFile ?? join(o.state ?? join(dirname(resolve(file)), '.slipway'), 'api-token');
  let token: string;
  try {
    token = (await readFile(tokenFile, 'utf8')).trim();
  } catch {
    throw new Error(`cannot read the API token ${tokenFile} (is slipway serve running for this file?)`);
  }
  const { fetchAll } = await import('./machines.ts');
  const { discovered } = await fetchAll(o.server ?? provisionerURL(loaded.spec), token);
  return discovered.find((d) => d.mac === normalizeMac(mac))?.facts?.facts;
}

/** argv of `slipway adopt`; AdoptUsage for a usage error (exit 2), AdoptRefused for a refusal (exit 1). */
export class AdoptUsage extends Error {}

export async function adoptCli(argv: string[], out: (s: string) => void): Promise<number> {
  const { parseArgs } = await import('node:util');
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: {
        file: { type: 'string', short: 'f' }, name: { type: 'string' }, roles: { type: 'string' }, ip: { type: 'string' },
        server: { type: 'string' }, state: { type: 'string' }, 'token-file': { type: 'string' }, 'no-facts': { type: 'boolean' },
        'bmc-username': { type: 'string' }, 'bmc-password-file': { type: 'string' }, 'bmc-password-env': { type: 'string' },
      },
    });
  } catch (e) {
    throw new AdoptUsage((e as Error).message);
  }
  const a = parsed.values;
  if (!a.file) throw new AdoptUsage('missing -f FILE');
  if (parsed.positionals.length !== 1) throw new AdoptUsage('adopt takes one MAC');
  if (!a.name) throw new AdoptUsage('missing --name NAME');
  if (!a.roles) throw new AdoptUsage('missing --roles ROLE[,ROLE...]');
  const roles = a.roles.split(',').map((r) => r.trim()).filter(Boolean);
  if (a['bmc-password-file'] !== undefined && a['bmc-password-env'] !== undefined) throw new AdoptUsage('give one of --bmc-password-file and --bmc-password-env');
  if ((a['bmc-password-file'] ?? a['bmc-password-env']) !== undefined && !a['bmc-username']) throw new AdoptUsage('--bmc-password-file/--bmc-password-env need --bmc-username');
  const mac = parsed.positionals[0]!;
  const adoption: Adoption = { mac, name: a.name, roles, ip: a.ip };
  const notes: string[] = [];
  // The facts it enlisted with (serve --unknown enlist), from the running serve: its install disk and BMC.
  const facts = a['no-facts'] ? undefined : await factsOf(a.file, mac, { server: a.server, state: a.state, tokenFile: a['token-file'] }).catch((e: Error) => void notes.push(`no facts: ${e.message}`));
  if (facts) {
    const d = installDisk(facts);
    if ('disk' in d) adoption.disk = d.disk;
    else notes.push(`disk not filled in: ${d.why}`);
    const addr = facts.bmc?.address;
    if (addr && a['bmc-username']) adoption.bmc = { address: addr, username: a['bmc-username'], ...(a['bmc-password-env'] !== undefined ? { passwordEnv: a['bmc-password-env'] } : { passwordFile: a['bmc-password-file'] ?? `bmc/${a.name}.pw` }) };
    else if (addr) adoption.bmcNote = `its BMC (enlisted): ${addr}${facts.bmc?.mac ? ` (${facts.bmc.mac})` : ''}: bmc: {address: ${addr}, username: ..., passwordFile: ..., protocol: ipmi}`;
    else notes.push('no BMC address in its facts');
  } else if (a['bmc-username']) throw new AdoptRefused(`no BMC address to go with --bmc-username: ${notes[0] ?? `${mac} has no enlistment facts`}`);
  if (a['bmc-username'] && facts && !facts.bmc?.address) throw new AdoptRefused(`no BMC address to go with --bmc-username: ${mac}'s facts name none`);
  const { ip } = await adoptFile(a.file, adoption);
  out(`${a.file}: adopted ${normalizeMac(mac)} as ${a.name} (${roles.join(', ')}, ${ip}${adoption.disk ? `, disk ${adoption.disk}` : ''}${adoption.bmc ? `, bmc ${adoption.bmc.address}` : ''})`);
  for (const n of notes) out(`  ${n}`);
  if (adoption.bmcNote) out(`  its BMC reported ${facts!.bmc!.address}: written as a comment (give --bmc-username and --bmc-password-file to fill in bmc)`);
  return 0;
}
