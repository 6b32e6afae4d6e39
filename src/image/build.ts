// `slipway image build`: run the image script (it decides the cache key, builds when the
// key is new and only prints the directory when it is not), read what it made, and with
// `out` copy the image's files into a directory of the user's, atomically. The script
// is one constant; what it is asked (mirror, cache) is environment it documents.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pipeline } from 'node:stream/promises';
import { readOsImage, type OsImage } from './os-image.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The build script (helper scripts/build-rehearsal-tree.sh makes the Debian tree it starts from). */
export const IMAGE_SCRIPT = join(REPO, 'scripts/build-os-image.sh');
/** The archive the script installs from when no mirror is given. */
export const DEBIAN_ARCHIVE = 'http://deb.debian.org/debian';

export class ImageBuildError extends Error {}

export interface BuildOptions {
  /** copy the built image's files here (atomically: all of them or nothing) */
  out?: string;
  /** a Debian mirror (SLIPWAY_MIRROR for the script) */
  mirror?: string;
  /** one line of the build's progress (its stderr and any stdout before the last line) */
  progress: (line: string) => void;
  /** tests: another script in place of IMAGE_SCRIPT */
  script?: string;
  env?: NodeJS.ProcessEnv;
}

export interface BuildResult {
  /** the image in the cache (verified against its os.json) */
  image: OsImage;
  /** the copy under `out`, when asked for: its directory and the files in it */
  copy?: { dir: string; files: string[] };
}

/** The environment the script gets: ours, with the mirror when one is named. */
export function scriptEnv(o: Pick<BuildOptions, 'mirror' | 'env'>): NodeJS.ProcessEnv {
  const env = { ...(o.env ?? process.env) };
  if (o.mirror !== undefined) env.SLIPWAY_MIRROR = o.mirror;
  return env;
}

/** Run the script; resolve with the directory it printed last. */
function runScript(script: string, env: NodeJS.ProcessEnv, progress: (line: string) => void): Promise<string> {
  return new Promise((resolvePath, reject) => {
    const child = spawn('bash', [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let last: string | undefined;
    const lines = (stream: NodeJS.ReadableStream, each: (l: string) => void) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        buf += c;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          each(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
      stream.on('end', () => buf && each(buf));
    };
    lines(child.stderr, (l) => {
      tail.push(l);
      if (tail.length > 20) tail.shift();
      progress(l);
    });
    lines(child.stdout, (l) => {
      if (!l.trim()) return;
      if (last !== undefined) progress(last);
      last = l.trim();
    });
    child.on('error', (e) => reject(new ImageBuildError(`cannot run ${script}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0 && last) return resolvePath(last);
      const why = signal ? `was killed by ${signal}` : code === 0 ? 'printed no image directory' : `exited ${code}`;
      reject(new ImageBuildError(`${script} ${why}${tail.length ? `; its last lines:\n  ${tail.slice(-5).join('\n  ')}` : ''}`));
    });
  });
}

export async function buildImage(o: BuildOptions): Promise<BuildResult> {
  const script = o.script ?? IMAGE_SCRIPT;
  const dir = await runScript(script, scriptEnv(o), o.progress);
  let image: OsImage;
  try {
    image = await readOsImage(dir, { verify: true });
  } catch (e) {
    throw new ImageBuildError(`${script} printed ${dir}, which is not a complete image: ${(e as Error).message}`);
  }
  if (o.out === undefined) return { image };
  o.progress(`copying the image's files to ${o.out}`);
  return { image, copy: await copyImage(image, o.out) };
}

/** The files a copy holds: the three os.json names, os.json, and MANIFEST (the build's text) when there is one. */
async function filesToCopy(image: OsImage): Promise<{ name: string; sha256?: string }[]> {
  const named = (['kernel', 'initrd', 'disk'] as const).map((r) => ({ name: image.info[r].file, sha256: image.info[r].sha256 }));
  const manifest = await stat(join(image.dir, 'MANIFEST')).then(() => [{ name: 'MANIFEST' }], () => []);
  return [...named, { name: 'os.json' }, ...manifest];
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  await d.sync().finally(() => d.close());
}

/**
 * Copy the image's files (not root/) into `out`: written and checked in a temporary
 * directory beside it, then renamed into place. An `out` that holds an earlier image is
 * replaced whole; an empty one is filled; anything else is refused, not overwritten.
 */
export async function copyImage(image: OsImage, out: string): Promise<{ dir: string; files: string[] }> {
  const target = resolve(out);
  const parent = dirname(target);
  await mkdir(parent, { recursive: true });
  const existing = await readdir(target).then((names) => names, (e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw new ImageBuildError(`-o ${out}: ${e.code === 'ENOTDIR' ? 'exists and is not a directory' : e.message}`);
  });
  if (existing && existing.length && !existing.includes('os.json')) throw new ImageBuildError(`-o ${out}: exists and is not an OS image directory (no os.json): not replacing it`);
  const tmp = join(parent, `.${basename(target)}.tmp-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp);
  const files = await filesToCopy(image);
  try {
    for (const f of files) {
      const h = createHash('sha256');
      const to = join(tmp, f.name);
      await pipeline(
        createReadStream(join(image.dir, f.name), { highWaterMark: 1 << 20 }),
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) {
            h.update(c);
            yield c;
          }
        },
        createWriteStream(to, { mode: 0o644, flush: true }),
      );
      const got = h.digest('hex');
      if (f.sha256 && got !== f.sha256) throw new ImageBuildError(`${join(image.dir, f.name)}: sha256 ${got}, its os.json says ${f.sha256}: the cached image is damaged; remove ${image.dir} and build again`);
    }
    await syncDir(tmp);
    if (existing?.length) {
      const old = join(parent, `.${basename(target)}.old-${randomBytes(6).toString('hex')}`);
      await rename(target, old);
      await rename(tmp, target);
      await rm(old, { recursive: true, force: true });
    } else {
      if (existing) await rmdir(target);
      await rename(tmp, target);
    }
    await syncDir(parent);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  await readOsImage(target); // what was renamed into place reads as an image
  return { dir: target, files: files.map((f) => f.name) };
}
