// The digests machines are rendered for (plan's AssetPins), read from what this serve
// actually offers: the bundle's manifest and/or the assets directory. Rendering from the
// files served, not from what a manifest claims, is what makes "a machine installs exactly
// what it was rendered for" true; a later change to the assets is refused by the machines
// until a reload (SIGHUP) renders again.
import { OS_ASSETS, OsImageError, parseOsJson } from '../catalog/os.ts';
import type { AssetPins } from '../plan/types.ts';

/** Where pins come from: an assets directory or a bundle (tried in order: the first that has a file wins). */
export interface PinSource {
  /** `sha256  name` lines for the files under `dir` (sha256sum's format), or undefined */
  sha256sums(dir: string): Promise<string | undefined>;
  /** one file's sha256, or undefined when there is no such file */
  digestOf(rel: string): Promise<string | undefined>;
  /** a small text file's contents (at most PIN_TEXT_MAX bytes), or undefined */
  readText(rel: string): Promise<string | undefined>;
}

/** The largest text file a pin source reads (os.json is ~30 KB). */
export const PIN_TEXT_MAX = 1 << 20;

function parseSums(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (text ?? '').split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

/** What reading the pins found, for the caller to log (serve) or print (render). */
export interface PinNote {
  level: 'info' | 'warn' | 'error';
  msg: string;
  data?: Record<string, unknown>;
}

export async function readPins(sources: PinSource[], notes: PinNote[] = []): Promise<AssetPins> {
  const bin: Record<string, string> = {};
  for (const s of [...sources].reverse()) for (const [name, hex] of parseSums(await s.sha256sums('bin/'))) bin[name] = hex;
  const cannot = (msg: string, data?: Record<string, unknown>): AssetPins => {
    notes.push({ level: 'error', msg: `${msg}: machines cannot be installed`, data });
    return { bin };
  };
  for (const s of sources) {
    const served = await s.digestOf(OS_ASSETS.disk);
    if (!served) continue;
    const text = await s.readText(OS_ASSETS.manifest);
    if (text === undefined) return cannot(`${OS_ASSETS.disk} is served without ${OS_ASSETS.manifest} (serve the whole \`slipway image build\` output)`);
    let disk: { sha256: string; rawSize: number };
    try {
      disk = parseOsJson(text, OS_ASSETS.manifest).disk;
    } catch (e) {
      if (!(e instanceof OsImageError)) throw e;
      return cannot(e.message);
    }
    if (disk.rawSize <= 0) return cannot(`${OS_ASSETS.manifest}: disk.rawSize is not a positive integer`);
    if (disk.sha256 !== served) return cannot(`${OS_ASSETS.disk} is not the image ${OS_ASSETS.manifest} describes (rebuild or copy the image again)`, { served, manifest: disk.sha256 });
    notes.push({ level: 'info', msg: 'machines are rendered for these assets: the OS image and binaries are pinned by sha256', data: { sha256: served, rawSize: disk.rawSize, binaries: Object.keys(bin).length } });
    return { bin, os: { sha256: served, rawSize: disk.rawSize } };
  }
  notes.push({ level: 'warn', msg: `no ${OS_ASSETS.disk} in the assets: machines cannot be installed (slipway image build, then serve its output under --assets DIR/os/ or serve --bundle)` });
  return { bin };
}
