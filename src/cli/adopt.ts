// `slipway adopt -f FILE MAC --name NAME --roles ROLES [--ip IP]` (issue 18): the flags,
// the facts from the running serve, then spec/adopt.ts (the same code the console's
// POST /api/v1/adopt runs): the machine added to the file as text, every comment and the
// layout kept, `validate`'s checks passed before anything is written, atomically.
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseClusterFile } from '../spec/parse.ts';
import { MAC_RE, normalizeMac } from '../lib/mac.ts';
import { provisionerURL } from '../spec/types.ts';
import { adoptFile, withFacts, type FactsForAdopt } from '../spec/adopt.ts';

export { AdoptRefused, adoptFile, adoptText, installDisk, nextFreeIp, type Adoption, type FactsForAdopt } from '../spec/adopt.ts';

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
  // The facts it enlisted with (serve --unknown enlist), from the running serve: its install disk and BMC.
  let noFacts: string | undefined;
  const facts = a['no-facts'] ? undefined : await factsOf(a.file, mac, { server: a.server, state: a.state, tokenFile: a['token-file'] }).catch((e: Error) => void (noFacts = e.message));
  if (!a['no-facts'] && !facts && !noFacts && a['bmc-username']) noFacts = `${mac} has no enlistment facts`;
  const { adoption, notes } = withFacts({ mac, name: a.name, roles, ip: a.ip }, facts, { username: a['bmc-username'], passwordFile: a['bmc-password-file'], passwordEnv: a['bmc-password-env'] }, noFacts);
  const { ip } = await adoptFile(a.file, adoption);
  out(`${a.file}: adopted ${normalizeMac(mac)} as ${a.name} (${roles.join(', ')}, ${ip}${adoption.disk ? `, disk ${adoption.disk}` : ''}${adoption.bmc ? `, bmc ${adoption.bmc.address}` : ''})`);
  for (const n of notes) out(`  ${n}`);
  if (adoption.bmcNote) out(`  its BMC reported ${facts!.bmc!.address}: written as a comment (give --bmc-username and --bmc-password-file to fill in bmc)`);
  return 0;
}
