// The digests machines are rendered for (plan's AssetPins), read from what this serve
// actually offers: the bundle's manifest and/or the assets directory. Rendering from the
// files served, not from what a manifest claims, is what makes "a machine installs exactly
// what it was rendered for" true; a later change to the assets is refused by the machines
// until a reload (SIGHUP) renders again.
import { OS_ASSETS } from '../catalog/os.ts';
import type { AssetPins } from '../plan/types.ts';

/** Where pins come from: an assets directory or a bundle (tried in order: the first that has a file wins). */
export interface PinSource {
  /** `sha256  name` lines for the files under `dir` (sha256sum's format), or undefined */
  sha256sums(dir: string): Promise<string | undefined>;
  /** a small text file's contents, or undefined */
  readText(rel: string): Promise<string | undefined>;
}

const HEX64 = /^[0-9a-f]{64}$/;

function parseSums(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (text ?? '').split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

/** os.json's disk entry: the compressed image's digest and the raw image's size. */
export function parseOsManifest(text: string): { sha256: string; rawSize: number } {
  const o = JSON.parse(text) as { disk?: { sha256?: unknown; rawSize?: unknown } };
  const sha = o.disk?.sha256, raw = o.disk?.rawSize;
  if (typeof sha !== 'string' || !HEX64.test(sha)) throw new Error('os.json: disk.sha256 is not a sha256');
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw <= 0) throw new Error('os.json: disk.rawSize is not a positive integer');
  return { sha256: sha, rawSize: raw };
}

/** What reading the pins found, for the caller to log (serve) or print (render). */
export interface PinNote {
  level: 'info' | 'warn' | 'error';
  msg: string;
  data?: Record<string, unknown>;
}

export async function readPins(sources: PinSource[], notes: PinNote[] = []): Promise<AssetPins> {
  const log = {
    info: (data: Record<string, unknown>, msg: string) => notes.push({ level: 'info', msg, data }),
    warn: (msg: string) => notes.push({ level: 'warn', msg }),
    error: (a: string | Record<string, unknown>, b?: string) => notes.push(typeof a === 'string' ? { level: 'error', msg: a } : { level: 'error', msg: b!, data: a }),
  };
  const bin: Record<string, string> = {};
  for (const s of [...sources].reverse()) for (const [name, hex] of parseSums(await s.sha256sums('bin/'))) bin[name] = hex;
  const diskName = OS_ASSETS.disk.slice('os/'.length);
  for (const s of sources) {
    const served = parseSums(await s.sha256sums('os/')).get(diskName);
    if (!served) continue;
    const text = await s.readText(OS_ASSETS.manifest);
    if (text === undefined) {
      log.error(`${OS_ASSETS.disk} is served without ${OS_ASSETS.manifest}: machines cannot be installed (serve the whole \`slipway image build\` output)`);
      return { bin };
    }
    let os: { sha256: string; rawSize: number };
    try {
      os = parseOsManifest(text);
    } catch (e) {
      log.error(`${OS_ASSETS.manifest}: ${(e as Error).message}: machines cannot be installed`);
      return { bin };
    }
    if (os.sha256 !== served) {
      log.error({ served, manifest: os.sha256 }, `${OS_ASSETS.disk} is not the image ${OS_ASSETS.manifest} describes: machines cannot be installed (rebuild or copy the image again)`);
      return { bin };
    }
    log.info({ sha256: served, rawSize: os.rawSize, binaries: Object.keys(bin).length }, 'machines are rendered for these assets: the OS image and binaries are pinned by sha256');
    return { bin, os };
  }
  log.warn(`no ${OS_ASSETS.disk} in the assets: machines cannot be installed (slipway image build, then serve its output under --assets DIR/os/ or serve --bundle)`);
  return { bin };
}
