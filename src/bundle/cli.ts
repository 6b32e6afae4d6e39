// `slipway bundle create|inspect|verify`: flags in, the bundle modules called, text out.
// Exit codes as the rest of the CLI: 0 ok, 1 failure (a bad download, a bad bundle),
// usage errors are thrown as BundleUsage for main.ts to print with the usage text.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { stat } from 'node:fs/promises';
import type { Spec } from '../spec/types.ts';
import { bundleContents } from './contents.ts';
import { parseMirrors, MirrorError } from './mirror.ts';
import { parsePlatform, platformString, type Platform } from './oci/types.ts';
import { dryRunText, inspectText, plannedFetches, type OsImageSource } from './describe.ts';
import { progressFor, type Progress } from './progress.ts';
import { cacheRoot, newestCachedImage, readOsImage, type OsImage } from '../image/os-image.ts';
import { OsImageError } from '../catalog/os.ts';
import type { Mirrors } from './mirror.ts';

export class BundleUsage extends Error {}

export interface CliIO {
  out(s: string): void;
  err(s: string): void;
  /** read and check the cluster file (prints its problems); undefined when invalid */
  load(file: string): Promise<Spec | undefined>;
  stderr: NodeJS.WriteStream;
  /** the caller's user id: root may build the OS image when none is cached */
  uid: number;
}

/** No OS image to put in the bundle, and none can be made here: the message says what to do. */
class NoOsImage extends Error {}

/**
 * The OS image a bundle carries: --os-image DIR; else (root) the image script's build
 * for the current inputs (only printed when cached, built when not); else (not root) the
 * newest complete build in the cache, named so the user knows which.
 */
async function osImageFor(flag: string | undefined, uid: number, mirrors: Mirrors, progress: Progress): Promise<OsImage> {
  if (flag !== undefined) return readOsImage(flag);
  if (uid === 0) {
    const { buildImage, DEBIAN_ARCHIVE, ImageBuildError } = await import('../image/build.ts');
    // a --mirror rule for Debian's archive is the image build's mirror too
    const debian = mirrors.file(DEBIAN_ARCHIVE);
    progress.log('OS image: slipway image build (cached after the first build)');
    try {
      return (await buildImage({ mirror: debian === DEBIAN_ARCHIVE ? undefined : debian, progress: (l) => progress.log(`image: ${l}`) })).image;
    } catch (e) {
      if (e instanceof ImageBuildError) throw new NoOsImage(`the OS image could not be built: ${e.message}`);
      throw e;
    }
  }
  const cached = await newestCachedImage();
  if (!cached) throw new NoOsImage(`no OS image in ${cacheRoot()}/: build it first with \`sudo slipway image build\`, or give one with --os-image DIR`);
  progress.log(`OS image: ${cached.dir} (${cached.info.name} ${cached.info.version}, the newest build in the cache; \`sudo slipway image build\` makes one from the current inputs)`);
  return cached;
}

/** What the dry run says about the OS image; builds nothing. */
async function osImagePreview(flag: string | undefined, uid: number): Promise<OsImageSource> {
  if (flag !== undefined) return { image: await readOsImage(flag), how: '--os-image' };
  const cached = await newestCachedImage();
  const build = uid === 0 ? 'slipway image build, run by create (it builds only when the inputs changed)' : '`sudo slipway image build` first (create does not build it when not root)';
  if (cached) return { image: cached, how: `the newest build in the cache; create ${uid === 0 ? 'asks ' + build : 'uses it'}` };
  return { how: `not built yet: ${build}` };
}

function flags<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new BundleUsage((e as Error).message);
  }
}

async function create(argv: string[], io: CliIO): Promise<number> {
  const { values: a } = flags(argv, {
    file: { type: 'string', short: 'f' },
    out: { type: 'string', short: 'o' },
    mirror: { type: 'string', multiple: true },
    platform: { type: 'string', multiple: true },
    'all-platforms': { type: 'boolean' },
    'os-image': { type: 'string' },
    concurrency: { type: 'string' },
    'keep-parts': { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (!a.file) throw new BundleUsage('bundle create: missing -f FILE');
  if (!a.out && !a['dry-run']) throw new BundleUsage('bundle create: missing -o BUNDLE.tar');
  if (a.json && !a['dry-run']) throw new BundleUsage('bundle create: --json goes with --dry-run');
  if (a['all-platforms'] && a.platform?.length) throw new BundleUsage('bundle create: --platform and --all-platforms exclude each other');
  let platforms: Platform[] | 'all';
  try {
    platforms = a['all-platforms'] ? 'all' : (a.platform?.length ? a.platform : ['linux/amd64']).map(parsePlatform);
  } catch (e) {
    throw new BundleUsage(`bundle create: ${(e as Error).message}`);
  }
  const concurrency = a.concurrency === undefined ? 4 : Number(a.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32) throw new BundleUsage('bundle create: --concurrency must be 1..32');
  let mirrors;
  try {
    mirrors = parseMirrors(a.mirror ?? []);
  } catch (e) {
    if (e instanceof MirrorError) throw new BundleUsage(e.message);
    throw e;
  }
  if (a['os-image'] === '') throw new BundleUsage('bundle create: --os-image needs a directory');
  const spec = await io.load(a.file);
  if (!spec) return 1;
  const contents = bundleContents(spec);
  const platformText = platforms === 'all' ? 'all listed' : platforms.map(platformString).join(', ');
  if (a['dry-run']) {
    let os: OsImageSource;
    try {
      os = await osImagePreview(a['os-image'], io.uid);
    } catch (e) {
      if (!(e instanceof OsImageError)) throw e;
      io.err(`slipway bundle create: --os-image: ${e.message}`);
      return 1;
    }
    const fetches = plannedFetches(contents, mirrors, platformText, os);
    io.out(a.json ? JSON.stringify({ cluster: contents.cluster, os: { ...contents.os, version: os.image?.info.version ?? null, dir: os.image?.dir ?? null }, mirrors: mirrors.rules, fetches }, null, 2) : dryRunText(contents, fetches, mirrors));
    return 0;
  }
  const output = a.out!;
  const progress = progressFor(io.stderr, a.quiet ?? false);
  let osImage: OsImage;
  try {
    osImage = await osImageFor(a['os-image'], io.uid, mirrors, progress);
  } catch (e) {
    progress.stop();
    if (e instanceof OsImageError) io.err(`slipway bundle create: no bundle written: --os-image: ${e.message}`);
    else if (e instanceof NoOsImage) io.err(`slipway bundle create: no bundle written: ${e.message}`);
    else throw e;
    return 1;
  }
  const { createBundle, BundleCreateError, partsDirFor, removeTemporaries } = await import('./create.ts');
  // Ctrl-C: no half-written tar left behind; the verified downloads stay for the next run
  const interrupted = (signal: string) => {
    progress.stop();
    removeTemporaries();
    io.err(`slipway bundle create: ${signal}: no bundle written; verified downloads are kept in ${partsDirFor(output)}/`);
    process.exit(130);
  };
  const onInt = () => interrupted('SIGINT');
  const onTerm = () => interrupted('SIGTERM');
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onTerm);
  try {
    const r = await createBundle({ contents, osImage, output, mirrors, platforms, progress, concurrency, keepParts: a['keep-parts'] ?? false });
    progress.stop();
    const files = r.manifest.files.filter((f) => !f.path.startsWith('oci/')).length;
    io.out(`wrote ${output}: ${files} files, ${r.manifest.images.length} images, ${(r.bytes / 1048576).toFixed(1)} MiB (${r.fetched} downloaded, ${r.reused} reused from the cache)`);
    return 0;
  } catch (e) {
    progress.stop();
    if (e instanceof BundleCreateError) {
      io.err(`slipway bundle create: no bundle written:\n  ${e.problems.join('\n  ')}`);
      io.err(`verified downloads are kept in ${partsDirFor(output)}/; run the same command again to resume`);
      return 1;
    }
    throw e;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}

async function inspect(argv: string[], io: CliIO): Promise<number> {
  const { values: a, positionals } = flags(argv, { json: { type: 'boolean' } }, true);
  if (positionals.length !== 1) throw new BundleUsage('bundle inspect: give one BUNDLE.tar');
  const { Bundle } = await import('./reader.ts');
  const b = await Bundle.open(positionals[0]!);
  try {
    io.out(a.json ? JSON.stringify(b.manifest, null, 2) : inspectText(positionals[0]!, (await stat(positionals[0]!)).size, b.manifest));
  } finally {
    await b.close();
  }
  return 0;
}

async function verify(argv: string[], io: CliIO): Promise<number> {
  const { positionals } = flags(argv, { quiet: { type: 'boolean', short: 'q' } }, true);
  if (positionals.length !== 1) throw new BundleUsage('bundle verify: give one BUNDLE.tar');
  const path = positionals[0]!;
  const { verifyBundle } = await import('./verify.ts');
  const progress = progressFor(io.stderr, !io.stderr.isTTY);
  const r = await verifyBundle(path, progress);
  progress.stop();
  for (const p of r.bad) io.err(`BAD ${p.path}: ${p.problem}`);
  if (r.bad.length) {
    io.err(`${path}: ${r.bad.length} bad ${r.bad.length === 1 ? 'entry' : 'entries'} (${r.good} good)`);
    return 1;
  }
  io.out(`${path}: ok: ${r.good} entries (${(r.bytes / 1048576).toFixed(1)} MiB) match their sha256; ${r.images} images complete`);
  return 0;
}

export async function bundleCommand(argv: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'create') return create(rest, io);
  if (sub === 'inspect') return inspect(rest, io);
  if (sub === 'verify') return verify(rest, io);
  throw new BundleUsage(sub ? `unknown bundle command "${sub}" (create, inspect or verify)` : 'bundle: create, inspect or verify?');
}
