// Enlistment (issue 18): `slipway serve --unknown enlist` boots an unknown MAC into the
// installer's inventory mode with a per-boot token; the installer POSTs the machine's
// facts to /api/v1/enlist with it. The token is random, bound to the MAC, stored only as
// its sha256, and used up by the one report it allows. The facts are untrusted input,
// so they are checked field by field against one strict shape (checkFacts) before
// anything is stored: bounded sizes, known keys only, the types the console and
// `slipway adopt` rely on.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { MAC_RE, normalizeMac } from '../lib/mac.ts';
import { parseIp } from '../lib/ipv4.ts';
import type { ServeContext } from './context.ts';

/** the whole enlistment body; a server's facts are a few KiB */
export const MAX_ENLIST_BYTES = 64 * 1024;
/** a token is good for this long after its boot script was handed out */
export const ENLIST_TOKEN_TTL_MS = 3600_000;
/** at most this many outstanding tokens (anyone on the segment can make up MACs) */
export const ENLIST_TOKENS_MAX = 10_000;
export const FACT_LIMITS = { nics: 64, disks: 256, ids: 32, string: 256, idString: 512, bmcChannels: 16 } as const;

/** What an enlisted (or installed) machine says it is. */
export interface Facts {
  /** the NIC it booted from */
  bootMac: string;
  nics: { name: string; mac: string; driver: string; link: boolean; speedMbps: number | null }[];
  disks: { path: string; ids: string[]; model: string; serial: string; size: number; rotational: boolean; removable: boolean }[];
  cpu: { model: string; count: number };
  memoryBytes: number;
  dmi: { vendor: string; product: string; serial: string };
  /**
   * its BMC's LAN side, as the host reads it over KCS (absent: no BMC, or none configured):
   * the first LAN channel with an address (adopt's), and every LAN channel (1-11) it has
   */
  bmc?: { address: string; mac: string; channels?: { channel: number; address: string; mac: string }[] };
}

const PRINTABLE = /^[^\u0000-\u001f\u007f]*$/;
const DEV_PATH = /^\/dev\/[A-Za-z0-9._-]{1,64}$/;
const DISK_ID = /^\/dev\/disk\/by-(id|path)\/[A-Za-z0-9#+.:=@_,-]{1,400}$/;
const IFNAME = /^[A-Za-z0-9._@:-]{1,15}$/;

class Bad extends Error {}
type Obj = Record<string, unknown>;

function obj(v: unknown, at: string, keys: readonly string[], optional: readonly string[] = []): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Bad(`${at} must be an object`);
  for (const k of Object.keys(v)) if (!keys.includes(k) && !optional.includes(k)) throw new Bad(`${at} has an unknown field ${JSON.stringify(k.slice(0, 40))}`);
  for (const k of keys) if (!(k in v)) throw new Bad(`${at}.${k} is missing`);
  return v as Obj;
}
function str(v: unknown, at: string, max: number = FACT_LIMITS.string, re: RegExp = PRINTABLE): string {
  if (typeof v !== 'string') throw new Bad(`${at} must be a string`);
  if (v.length > max) throw new Bad(`${at} is longer than ${max} characters`);
  if (!re.test(v)) throw new Bad(`${at} ${re === PRINTABLE ? 'has a control character' : `is not of the form ${re.source}`}`);
  return v;
}
function int(v: unknown, at: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new Bad(`${at} must be a whole number from ${min} to ${max}`);
  return v;
}
function bool(v: unknown, at: string): boolean {
  if (typeof v !== 'boolean') throw new Bad(`${at} must be true or false`);
  return v;
}
function arr(v: unknown, at: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new Bad(`${at} must be a list`);
  if (v.length > max) throw new Bad(`${at} has more than ${max} items`);
  return v;
}
function mac(v: unknown, at: string): string {
  const s = str(v, at, 17);
  if (!MAC_RE.test(s)) throw new Bad(`${at} is not a MAC address`);
  return normalizeMac(s);
}

/** The facts, rebuilt from only the fields they may have, or the first reason they are refused (naming the field). */
export function checkFacts(v: unknown): { facts: Facts } | { error: string } {
  try {
    const f = obj(v, 'facts', ['bootMac', 'nics', 'disks', 'cpu', 'memoryBytes', 'dmi'], ['bmc']);
    const nics = arr(f.nics, 'facts.nics', FACT_LIMITS.nics).map((x, i) => {
      const at = `facts.nics[${i}]`;
      const n = obj(x, at, ['name', 'mac', 'driver', 'link', 'speedMbps']);
      return {
        name: str(n.name, `${at}.name`, 15, IFNAME),
        mac: mac(n.mac, `${at}.mac`),
        driver: str(n.driver, `${at}.driver`, 64),
        link: bool(n.link, `${at}.link`),
        speedMbps: n.speedMbps === null ? null : int(n.speedMbps, `${at}.speedMbps`, 0, 10_000_000),
      };
    });
    const disks = arr(f.disks, 'facts.disks', FACT_LIMITS.disks).map((x, i) => {
      const at = `facts.disks[${i}]`;
      const d = obj(x, at, ['path', 'ids', 'model', 'serial', 'size', 'rotational', 'removable']);
      return {
        path: str(d.path, `${at}.path`, 69, DEV_PATH),
        ids: arr(d.ids, `${at}.ids`, FACT_LIMITS.ids).map((s, j) => str(s, `${at}.ids[${j}]`, FACT_LIMITS.idString, DISK_ID)),
        model: str(d.model, `${at}.model`),
        serial: str(d.serial, `${at}.serial`),
        size: int(d.size, `${at}.size`, 0, Number.MAX_SAFE_INTEGER),
        rotational: bool(d.rotational, `${at}.rotational`),
        removable: bool(d.removable, `${at}.removable`),
      };
    });
    const cpu = obj(f.cpu, 'facts.cpu', ['model', 'count']);
    const dmi = obj(f.dmi, 'facts.dmi', ['vendor', 'product', 'serial']);
    const facts: Facts = {
      bootMac: mac(f.bootMac, 'facts.bootMac'),
      nics,
      disks,
      cpu: { model: str(cpu.model, 'facts.cpu.model'), count: int(cpu.count, 'facts.cpu.count', 1, 65_536) },
      memoryBytes: int(f.memoryBytes, 'facts.memoryBytes', 0, Number.MAX_SAFE_INTEGER),
      dmi: { vendor: str(dmi.vendor, 'facts.dmi.vendor'), product: str(dmi.product, 'facts.dmi.product'), serial: str(dmi.serial, 'facts.dmi.serial') },
    };
    if (!nics.some((n) => n.mac === facts.bootMac)) throw new Bad('facts.bootMac is none of facts.nics');
    if (f.bmc !== undefined) {
      const b = obj(f.bmc, 'facts.bmc', ['address', 'mac'], ['channels']);
      const lan = (x: Obj, at: string) => {
        const address = str(x.address, `${at}.address`, 15);
        if (address !== '' && parseIp(address) === undefined) throw new Bad(`${at}.address is not an IPv4 address`);
        return { address, mac: x.mac === '' ? '' : mac(x.mac, `${at}.mac`) };
      };
      facts.bmc = lan(b, 'facts.bmc');
      if (b.channels !== undefined)
        facts.bmc.channels = arr(b.channels, 'facts.bmc.channels', FACT_LIMITS.bmcChannels).map((x, i) => {
          const at = `facts.bmc.channels[${i}]`;
          const c = obj(x, at, ['channel', 'address', 'mac']);
          return { channel: int(c.channel, `${at}.channel`, 0, 15), ...lan(c, at) };
        });
    }
    return { facts };
  } catch (e) {
    if (e instanceof Bad) return { error: e.message };
    throw e;
  }
}

export const tokenHash = (token: string): string => createHash('sha256').update(token).digest('hex');

export interface EnlistBoot {
  kernel: string;
  initrd: string;
  /** where the installer POSTs the facts */
  enlistUrl: string;
  then: 'poweroff' | 'wait';
}

/**
 * The iPXE script an unknown MAC gets with `--unknown enlist`: the OS image's kernel and
 * installer initramfs in inventory mode, with a new token for this boot (stored hashed;
 * the MAC's earlier token is forgotten).
 */
export function enlistScript(ctx: Pick<ServeContext, 'store'>, macAddr: string, boot: EnlistBoot): string {
  const token = randomBytes(32).toString('base64url');
  ctx.store.issueEnlistToken(normalizeMac(macAddr), tokenHash(token), { expireBefore: new Date(Date.now() - ENLIST_TOKEN_TTL_MS).toISOString(), keep: ENLIST_TOKENS_MAX });
  const args = [
    'initrd=initrd.img',
    `slipway.enlist=${boot.enlistUrl}`,
    `slipway.enlist.token=${token}`,
    ...(boot.then === 'wait' ? ['slipway.enlist.then=wait'] : []),
    'console=tty0',
    'console=ttyS0,115200n8',
  ];
  return [
    '#!ipxe',
    `# ${normalizeMac(macAddr)} is not in the cluster file: the installer reports what this machine is (enlistment), then ${boot.then === 'wait' ? 'waits' : 'powers off'}.`,
    `kernel ${boot.kernel} ${args.join(' ')} || goto failed`,
    `initrd ${boot.initrd} || goto failed`,
    'boot || goto failed',
    '',
    ':failed',
    'echo Slipway: the enlistment boot failed; leaving iPXE so the firmware tries its next boot device.',
    'exit 1',
    '',
  ].join('\n');
}

export type EnlistOutcome = { status: number; body: Record<string, unknown>; log?: { level: 'info' | 'warn'; msg: string; fields: Record<string, unknown> } };

/**
 * POST /api/v1/enlist: `Authorization: Bearer <token>`, body `{"facts": {...}}`. 401 for a
 * token that is unknown, expired or used; 413 for a body over MAX_ENLIST_BYTES; 400 for
 * anything that is not the facts' shape; 403 when the facts do not list the MAC the
 * token was issued to. Only a 200 stores anything (and uses the token up).
 */
export async function enlistReport(ctx: ServeContext, req: IncomingMessage, token: string | undefined, readBody: (req: IncomingMessage, limit: number) => Promise<Buffer | undefined>, from: string): Promise<EnlistOutcome> {
  const hash = token ? tokenHash(token) : undefined;
  const tokenMac = hash ? ctx.store.enlistTokenMac(hash, new Date(Date.now() - ENLIST_TOKEN_TTL_MS).toISOString()) : undefined;
  if (!hash || !tokenMac) return { status: 401, body: { error: 'missing, unknown, expired or used enlistment token' }, log: { level: 'warn', msg: 'enlistment refused: bad token', fields: { from } } };
  const body = await readBody(req, MAX_ENLIST_BYTES);
  const refuse = (status: number, why: string): EnlistOutcome => ({ status, body: { error: why }, log: { level: 'warn', msg: 'enlistment refused', fields: { mac: tokenMac, from, why } } });
  if (body === undefined) return refuse(413, `enlistment larger than ${MAX_ENLIST_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return refuse(400, 'the body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return refuse(400, 'the body must be {"facts": {...}}');
  const extra = Object.keys(parsed).find((k) => k !== 'facts');
  if (extra !== undefined) return refuse(400, `the body has an unknown field ${JSON.stringify(extra.slice(0, 40))}`);
  const checked = checkFacts((parsed as { facts?: unknown }).facts);
  if ('error' in checked) return refuse(400, checked.error);
  const { facts } = checked;
  // bound to the MAC: the token's MAC must be one of the machine's NICs
  if (!facts.nics.some((n) => n.mac === tokenMac)) return refuse(403, `this token was issued to ${tokenMac}, which none of facts.nics has`);
  const known = ctx.inventory().getByMac(tokenMac).machine;
  const stored = ctx.store.recordFacts(tokenMac, facts as unknown as Record<string, unknown>, 'enlist', { useToken: hash, ...(known ? { machine: known.name } : {}) });
  if (!stored) return { status: 401, body: { error: 'this enlistment token was used already' }, log: { level: 'warn', msg: 'enlistment refused: token used', fields: { mac: tokenMac, from } } };
  ctx.inventory().seen(tokenMac, 'http', { enlisted: stored.at });
  await ctx.store.durable();
  return {
    status: 200,
    body: { mac: tokenMac, at: stored.at },
    log: { level: 'info', msg: 'machine enlisted', fields: { mac: tokenMac, from, nics: facts.nics.length, disks: facts.disks.length, bmc: facts.bmc?.address || undefined, product: facts.dmi.product || undefined } },
  };
}
