// `slipway image build [-o DIR] [--mirror URL] [-q]`: flags in (as data: parseImageArgs),
// the build run, its progress on stderr, the image's summary on stdout. Usage errors are
// thrown as ImageUsage for main.ts to print with the usage text (exit 2); not being root
// is exit 1 with the reason, as `rehearse` says it.
import { parseArgs } from 'node:util';
import { summaryText } from './os-image.ts';
import { buildImage, ImageBuildError } from './build.ts';

export class ImageUsage extends Error {}

export interface ImageRequest {
  command: 'build';
  out?: string;
  mirror?: string;
  quiet: boolean;
}

/** A Debian mirror URL as the script's SLIPWAY_MIRROR takes it: http(s), no query or fragment, no trailing slash. */
export function checkMirror(s: string): string {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new ImageUsage(`image build: --mirror "${s}" is not a URL (like http://deb.debian.org/debian)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ImageUsage(`image build: --mirror ${s}: only http and https mirrors`);
  if (u.search || u.hash) throw new ImageUsage(`image build: --mirror ${s}: no query or fragment in a mirror URL`);
  return s.replace(/\/+$/, '');
}

export function parseImageArgs(argv: string[]): ImageRequest {
  const [sub, ...rest] = argv;
  if (sub !== 'build') throw new ImageUsage(sub ? `unknown image command "${sub}" (build)` : 'image: build?');
  let values;
  try {
    values = parseArgs({ args: rest, options: { out: { type: 'string', short: 'o' }, mirror: { type: 'string' }, quiet: { type: 'boolean', short: 'q' } }, allowPositionals: false, strict: true }).values;
  } catch (e) {
    throw new ImageUsage(`image build: ${(e as Error).message}`);
  }
  if (values.out === '') throw new ImageUsage('image build: -o needs a directory');
  return { command: 'build', out: values.out, mirror: values.mirror === undefined ? undefined : checkMirror(values.mirror), quiet: values.quiet ?? false };
}

export interface ImageIO {
  out(s: string): void;
  err(s: string): void;
  /** the caller's user id (root builds) */
  uid: number;
  /** tests: a script in place of scripts/build-os-image.sh */
  script?: string;
  env?: NodeJS.ProcessEnv;
}

export const NEEDS_ROOT = 'slipway image build needs root (debootstrap and chroot make its Debian tree): run it with sudo';

export async function imageCommand(argv: string[], io: ImageIO): Promise<number> {
  const req = parseImageArgs(argv);
  if (io.uid !== 0) {
    io.err(NEEDS_ROOT);
    return 1;
  }
  const started = Date.now();
  try {
    const r = await buildImage({
      out: req.out,
      mirror: req.mirror,
      progress: req.quiet ? () => {} : (l) => io.err(`image: ${l}`),
      script: io.script,
      env: io.env,
    });
    io.out(summaryText(r.image).trimEnd());
    if (r.copy) io.out(`copied to ${r.copy.dir}: ${r.copy.files.join(', ')}`);
    if (!req.quiet) io.err(`image: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } catch (e) {
    if (e instanceof ImageBuildError) {
      io.err(`slipway image build: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
