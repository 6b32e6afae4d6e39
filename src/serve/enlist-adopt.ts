// POST /api/v1/adopt (issue 18): the console adopts a discovered machine as `slipway adopt`
// does, by the same code (spec/adopt.ts): its facts fill in the install disk and BMC, the
// entry goes into the cluster file as text (comments and layout kept), the result must
// pass `validate`'s checks before anything is written, and a refusal names the field
// (`field`) and leaves the file byte for byte as it was. Then serve re-reads the file (as
// on SIGHUP), so the new machine is served at once. Adoptions run one at a time: two
// at once would both start from the same text and the second rename would drop the first.
import { MAC_RE, normalizeMac } from '../lib/mac.ts';
import { AdoptRefused, adoptFile, withFacts, type AdoptField, type FactsForAdopt } from '../spec/adopt.ts';
import type { ServeContext } from './context.ts';

/** the request body: a few short strings */
export const MAX_ADOPT_BYTES = 4096;

export type AdoptOutcome = { status: number; body: Record<string, unknown> };

const FIELDS = ['mac', 'name', 'roles', 'ip', 'bmcUsername', 'bmcPasswordFile', 'bmcPasswordEnv'] as const;
/** the body's fields as the console names them → the cluster file's field the refusal is about */
const FIELD_OF: Record<(typeof FIELDS)[number], AdoptField> = { mac: 'mac', name: 'name', roles: 'roles', ip: 'ip', bmcUsername: 'bmc', bmcPasswordFile: 'bmc', bmcPasswordEnv: 'bmc' };

const refused = (status: number, error: string, field: AdoptField | string): AdoptOutcome => ({ status, body: { error, field } });

/** The adoption asked for, checked for shape (what it means is spec/adopt.ts's to judge), or the refusal. */
function parseRequest(body: Buffer | undefined): { mac: string; name: string; roles: string[]; ip?: string; bmc: { username?: string; passwordFile?: string; passwordEnv?: string } } | AdoptOutcome {
  if (body === undefined) return refused(413, `the request is larger than ${MAX_ADOPT_BYTES} bytes`, 'file');
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    return refused(400, 'the body is not JSON', 'file');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return refused(400, 'the body must be {"mac": ..., "name": ..., "roles": [...]}', 'file');
  const o = v as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !(FIELDS as readonly string[]).includes(k));
  if (extra !== undefined) return refused(400, `unknown field ${JSON.stringify(extra.slice(0, 40))}`, 'file');
  for (const k of FIELDS) {
    const x = o[k];
    if (k === 'roles' && Array.isArray(x)) {
      if (x.length > 8 || x.some((r) => typeof r !== 'string' || r.length > 64)) return refused(400, 'roles must be at most 8 role names', 'roles');
      continue;
    }
    if (x !== undefined && (typeof x !== 'string' || x.length > 256)) return refused(400, `${k} must be a string of at most 256 characters`, FIELD_OF[k]);
  }
  const str = (k: (typeof FIELDS)[number]) => (typeof o[k] === 'string' && (o[k] as string).trim() !== '' ? (o[k] as string).trim() : undefined);
  const mac = str('mac');
  if (!mac) return refused(400, 'mac is missing', 'mac');
  const name = str('name');
  if (!name) return refused(400, 'name is missing', 'name');
  const roles = (Array.isArray(o.roles) ? (o.roles as string[]) : (str('roles') ?? '').split(',')).map((r) => r.trim()).filter(Boolean);
  if (!roles.length) return refused(400, 'give at least one role (control-plane, etcd, worker)', 'roles');
  const bmc = { username: str('bmcUsername'), passwordFile: str('bmcPasswordFile'), passwordEnv: str('bmcPasswordEnv') };
  if (bmc.passwordFile !== undefined && bmc.passwordEnv !== undefined) return refused(400, 'give one of bmcPasswordFile and bmcPasswordEnv', 'bmc');
  if ((bmc.passwordFile ?? bmc.passwordEnv) !== undefined && !bmc.username) return refused(400, 'a BMC password needs bmcUsername', 'bmc');
  return { mac, name, roles, ip: str('ip'), bmc };
}

export function adoptRoute(ctx: ServeContext): (body: Buffer | undefined) => Promise<AdoptOutcome> {
  let queue: Promise<unknown> = Promise.resolve();
  const one = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => {});
    return run;
  };
  return (body) => one(async () => {
    const file = ctx.file;
    if (!file || !ctx.reload) return refused(501, 'this serve cannot edit its cluster file', 'file');
    const req = parseRequest(body);
    if ('status' in req) return req;
    // the newest facts it reported (enlistment, or an installed report under another file)
    const stored = MAC_RE.test(req.mac) ? ctx.store.facts(normalizeMac(req.mac)) : undefined;
    try {
      const { adoption, notes } = withFacts({ mac: req.mac, name: req.name, roles: req.roles, ip: req.ip }, stored?.facts as FactsForAdopt | undefined, req.bmc, stored ? undefined : `${req.mac} has not enlisted`);
      const { ip } = await adoptFile(file, adoption);
      const reloaded = await ctx.reload();
      ctx.log.info({ mac: normalizeMac(req.mac), name: req.name, roles: req.roles, ip, disk: adoption.disk, bmc: adoption.bmc?.address, reloaded }, 'adopted from the console');
      return {
        status: 200,
        body: {
          mac: normalizeMac(req.mac), name: req.name, roles: req.roles, ip,
          ...(adoption.disk ? { disk: adoption.disk } : {}),
          ...(adoption.bmc ? { bmc: adoption.bmc.address } : {}),
          ...(adoption.bmcNote ? { bmcNote: adoption.bmcNote } : {}),
          notes: [...notes, ...(reloaded ? [] : ['serve could not re-read the file (its log says why): still serving the previous one'])],
          reloaded,
        },
      };
    } catch (e) {
      if (e instanceof AdoptRefused) return refused(e.conflict ? 409 : 400, e.message, e.field);
      throw e;
    }
  });
}
