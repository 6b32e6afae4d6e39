// An open bundle: the tar's index, its manifest, and streams of any entry's bytes (or a
// range of them) read straight from the tar. The file stays open for as long as the
// bundle is served, so replacing bundle.tar on disk while serving cannot mix two
// bundles' bytes: the old inode is served until restart.
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { indexTar, TarError, type TarEntry } from './tarindex.ts';
import { MANIFEST_PATH, parseBundleManifest, type BundleFile, type BundleManifest } from './manifest.ts';

export class BundleError extends Error {}

export class Bundle {
  readonly path: string;
  readonly size: number;
  readonly entries: Map<string, TarEntry>;
  readonly manifest: BundleManifest;
  /** manifest rows by path */
  readonly files: Map<string, BundleFile>;
  private readonly fh: FileHandle;

  private constructor(path: string, fh: FileHandle, size: number, entries: TarEntry[], manifest: BundleManifest) {
    this.path = path;
    this.fh = fh;
    this.size = size;
    this.entries = new Map(entries.map((e) => [e.name, e]));
    this.manifest = manifest;
    this.files = new Map(manifest.files.map((f) => [f.path, f]));
  }

  /**
   * Open and index `path`. Structural problems (not a tar, no manifest, an entry the
   * manifest lists missing or of another size) are errors here; digests are `verify`'s job.
   * `lenient` opens a bundle with such entry problems anyway (verify reports them all).
   */
  static async open(path: string, opts: { lenient?: boolean } = {}): Promise<Bundle> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw new BundleError(`${path}: cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new BundleError(`${path}: not a regular file`);
      let entries: TarEntry[];
      try {
        entries = await indexTar(fh, st.size, path);
      } catch (e) {
        if (e instanceof TarError) throw new BundleError(e.message);
        throw e;
      }
      const first = entries[0];
      if (!first || first.name !== MANIFEST_PATH) throw new BundleError(`${path}: not a Slipway bundle (its first entry is ${first ? first.name : 'missing'}, not ${MANIFEST_PATH})`);
      if (first.size > 64 << 20) throw new BundleError(`${path}: ${MANIFEST_PATH} is implausibly large (${first.size} bytes)`);
      const buf = Buffer.alloc(first.size);
      await fh.read(buf, 0, first.size, first.offset);
      const manifest = parseBundleManifest(buf.toString('utf8'), path);
      const b = new Bundle(path, fh, st.size, entries, manifest);
      if (!opts.lenient) {
        const problems = b.structuralProblems();
        if (problems.length) throw new BundleError(`${path}: ${problems.map((p) => `${p.path}: ${p.problem}`).join('; ')} (run \`slipway bundle verify ${path}\`)`);
      }
      return b;
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Entries the manifest lists that the tar lacks or has at another size, and entries it does not list. */
  structuralProblems(): { path: string; problem: string }[] {
    const out: { path: string; problem: string }[] = [];
    for (const f of this.manifest.files) {
      const e = this.entries.get(f.path);
      if (!e) out.push({ path: f.path, problem: `listed in ${MANIFEST_PATH} but not in the tar` });
      else if (e.size !== f.size) out.push({ path: f.path, problem: `${e.size} bytes in the tar, ${f.size} in ${MANIFEST_PATH}` });
    }
    for (const name of this.entries.keys()) if (name !== MANIFEST_PATH && !this.files.has(name)) out.push({ path: name, problem: `in the tar but not listed in ${MANIFEST_PATH}` });
    return out;
  }

  /** The bytes of an entry, or of [start, end] (inclusive) within it. */
  stream(e: TarEntry, start = 0, end = e.size - 1): Readable {
    // by the numeric fd: a FileHandle-based stream adds a 'close' listener to the handle
    // that is never removed, one per request for as long as the server runs
    return createReadStream('', { fd: this.fh.fd, start: e.offset + start, end: e.offset + end, autoClose: false, highWaterMark: 1 << 20 });
  }

  async read(e: TarEntry): Promise<Buffer> {
    const buf = Buffer.alloc(e.size);
    const { bytesRead } = await this.fh.read(buf, 0, e.size, e.offset);
    if (bytesRead !== e.size) throw new BundleError(`${this.path}: ${e.name} is truncated`);
    return buf;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
