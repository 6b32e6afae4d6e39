// `serve --bundle BUNDLE.tar`: open the bundle once (index + manifest, no extraction),
// then answer /v2/ (the registry) and /assets/bin|os/ from it. Handlers sit before the
// core routes, so the bundle wins over --assets for the paths it has, and anything it
// lacks (iPXE loaders, extra files) still comes from the assets directory.
import type { Logger } from '../serve/log.ts';
import type { Handler } from '../serve/http/server.ts';
import { Bundle } from './reader.ts';
import { registryIndex, registryRoutes } from './registry.ts';
import { bundleAssetRoutes } from './assets.ts';

export interface ServedBundle {
  bundle: Bundle;
  handlers: Handler[];
  close(): Promise<void>;
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
    return { bundle, handlers, close: () => bundle.close() };
  } catch (e) {
    await bundle.close();
    throw e;
  }
}
