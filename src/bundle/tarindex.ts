// Where each file's bytes sit in a tar, read from the headers alone (one 512-byte read
// per entry, skipping the data), so `serve --bundle` can answer any entry, or any byte
// range of it, straight from the tar without extracting it, and starts in milliseconds
// even for a multi-GiB bundle. tar-stream (used to write bundles) only reads
// sequentially, through every data byte; this is the random-access side.
//
// Understands what tar-stream, GNU tar and bsdtar write: ustar (with the 155-byte name
// prefix), pax extended headers (path, size), GNU long names ('L') and base-256 sizes.
import type { FileHandle } from 'node:fs/promises';

export interface TarEntry {
  name: string;
  /** offset of the entry's first data byte in the tar */
  offset: number;
  size: number;
  mode: number;
}

export class TarError extends Error {}

const BLOCK = 512;

function str(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

function octal(b: Buffer, start: number, len: number, what: string, at: number): number {
  const f = b.subarray(start, start + len);
  if (f[0]! & 0x80) {
    // base-256 (GNU): big-endian, the top bit of the first byte is the marker
    let n = f[0]! & 0x7f;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i]!;
    if (!Number.isSafeInteger(n)) throw new TarError(`tar header at offset ${at}: ${what} too large`);
    return n;
  }
  const s = str(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`tar header at offset ${at}: ${what} field "${s}" is not octal`);
  return parseInt(s, 8);
}

/** PAX records: "<len> <key>=<value>\n", len counting the whole record. */
function parsePax(data: Buffer, at: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number(data.subarray(i, sp).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0 || i + len > data.length) throw new TarError(`pax header at offset ${at}: bad record length`);
    const rec = data.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

/** Index the regular files of the tar open at `fh` (of `fileSize` bytes). Names must be unique. */
export async function indexTar(fh: FileHandle, fileSize: number, label: string): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const seen = new Set<string>();
  const header = Buffer.alloc(BLOCK);
  let pos = 0;
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  const readAt = async (buf: Buffer, at: number) => {
    const { bytesRead } = await fh.read(buf, 0, buf.length, at);
    if (bytesRead !== buf.length) throw new TarError(`${label}: truncated at offset ${at} (tar ends inside an entry)`);
  };
  for (;;) {
    if (pos + BLOCK > fileSize) throw new TarError(`${label}: truncated at offset ${pos} (no end-of-archive marker)`);
    await readAt(header, pos);
    if (header.every((x) => x === 0)) break; // end of archive
    // header checksum: the sum of all bytes with the checksum field read as spaces
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
    const want = octal(header, 148, 8, 'checksum', pos);
    if (sum !== want) throw new TarError(`${label}: tar header at offset ${pos} is corrupt (checksum ${sum}, header says ${want})`);
    const type = String.fromCharCode(header[156]!);
    let size = octal(header, 124, 12, 'size', pos);
    const dataAt = pos + BLOCK;
    if (type === 'x' || type === 'g' || type === 'L') {
      if (size > 1 << 20) throw new TarError(`${label}: extended header at offset ${pos} is implausibly large (${size} bytes)`);
      const data = Buffer.alloc(size);
      await readAt(data, dataAt);
      if (type === 'x') pax = { ...pax, ...parsePax(data, pos) };
      else if (type === 'L') longName = str(data, 0, data.length);
      // 'g' (global) headers carry nothing an index needs
      pos = dataAt + padded(size);
      continue;
    }
    const magic = str(header, 257, 6);
    const prefix = magic === 'ustar' ? str(header, 345, 155) : '';
    let name = pax.path ?? longName ?? (prefix ? `${prefix}/${str(header, 0, 100)}` : str(header, 0, 100));
    if (pax.size !== undefined) {
      size = Number(pax.size);
      if (!Number.isSafeInteger(size) || size < 0) throw new TarError(`${label}: pax size "${pax.size}" at offset ${pos} is not a byte count`);
    }
    pax = {};
    longName = undefined;
    if (dataAt + size > fileSize) throw new TarError(`${label}: ${name} at offset ${pos} runs past the end of the file (truncated tar)`);
    name = name.replace(/^\.\//, '');
    if (type === '0' || type === '\0' || type === '7') {
      if (seen.has(name)) throw new TarError(`${label}: ${name} appears twice in the tar`);
      seen.add(name);
      out.push({ name, offset: dataAt, size, mode: octal(header, 100, 8, 'mode', pos) });
    }
    pos = dataAt + padded(size);
  }
  return out;
}
