// `serve --bundle BUNDLE.tar`: open the bundle once (index + manifest, no extraction),
// then answer /v2/ (the registry) and /assets/bin|os/ from it. Handlers sit before the
// core routes, so the bundle wins over --assets for the paths it has, and anything it
// lacks (iPXE loaders, extra files) still comes from the assets directory. Its pins (the
// digests machines are rendered for) are the manifest's, which `bundle verify` checks,
// and os/os.json read from the tar.
import type { Logger } from '../serve/log.ts';
import type { Handler } from '../serve/http/server.ts';
import { PIN_TEXT_MAX, type PinSource } from '../serve/pins.ts';
import { Bundle } from './reader.ts';
import { registryIndex, registryRoutes } from './registry.ts';
import { bundleAssetRoutes, sha256sums } from './assets.ts';

export interface ServedBundle {
  bundle: Bundle;
  handlers: Handler[];
  pins: PinSource;
  close(): Promise<void>;
}

/** The bundle as serve's pin source: SHA256SUMS from the manifest, small files (os/os.json) from the tar. */
export function bundlePins(bundle: Bundle): PinSource {
  return {
    sha256sums: async (dir) => sha256sums(bundle, dir),
    digestOf: async (rel) => bundle.files.get(rel)?.sha256,
    async readText(rel) {
      const e = bundle.files.has(rel) ? bundle.entries.get(rel) : undefined;
      if (!e || e.size > PIN_TEXT_MAX) return undefined;
      return (await bundle.read(e)).toString('utf8');
    },
  };
}

export async function serveBundle(path: string, log?: Logger): Promise<ServedBundle> {
  const bundle = await Bundle.open(path);
  try {
    const handlers = [registryRoutes(bundle, await registryIndex(bundle)), bundleAssetRoutes(bundle)];
    const m = bundle.manifest;
    log?.info(
      { bundle: path, kubernetes: m.cluster.kubernetesVersion, files: m.files.filter((f) => !f.path.startsWith('oci/')).length, images: m.images.map((i) => i.ref) },
      'serving bundle: /assets/bin, /assets/os and a registry at /v2/',
    );
    return { bundle, handlers, pins: bundlePins(bundle), close: () => bundle.close() };
  } catch (e) {
    await bundle.close();
    throw e;
  }
}
