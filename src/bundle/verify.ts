// `slipway bundle verify`: re-hash every entry of the tar against the manifest, check
// that each OCI blob's bytes match the digest it is named by, and that every image's
// manifests, configs and layers are there, and that the OS image's files are the ones its
// os/os.json names. Reports every bad entry, not just the first.
import { createHash } from 'node:crypto';
import { Bundle, BundleError } from './reader.ts';
import { blobPath, ManifestError, MANIFEST_PATH, OCI_DIR } from './manifest.ts';
import { parseManifestBytes } from './oci/types.ts';
import { CONTAINERD_NAME, REF_NAME } from './oci/layout.ts';
import type { Progress } from './progress.ts';
import { OS_ASSETS } from '../catalog/os.ts';
import { OsImageError, parseOsJson } from '../catalog/os.ts';

export interface Problem {
  path: string;
  problem: string;
}

export interface VerifyReport {
  /** entries whose digest was checked and matched */
  good: number;
  bad: Problem[];
  bytes: number;
  images: number;
}

export async function verifyBundle(path: string, progress?: Progress): Promise<VerifyReport> {
  let b: Bundle;
  try {
    b = await Bundle.open(path, { lenient: true });
  } catch (e) {
    if (e instanceof BundleError || e instanceof ManifestError) return { good: 0, bad: [{ path, problem: (e as Error).message }], bytes: 0, images: 0 };
    throw e;
  }
  try {
    const bad: Problem[] = b.structuralProblems();
    const unusable = new Set(bad.map((p) => p.path));
    let good = 0;
    let bytes = 0;
    const total = b.manifest.files.reduce((n, f) => n + f.size, 0);
    const bar = progress?.start(`verifying ${path}`, total);
    /** entries whose bytes match, so their contents can be trusted for the structural checks */
    const intact = new Set<string>();
    for (const f of b.manifest.files) {
      if (unusable.has(f.path)) continue;
      const e = b.entries.get(f.path)!;
      const h = createHash('sha256');
      for await (const chunk of b.stream(e) as AsyncIterable<Buffer>) {
        h.update(chunk);
        bytes += chunk.length;
        bar?.update(bytes);
      }
      const got = h.digest('hex');
      if (got !== f.sha256) {
        bad.push({ path: f.path, problem: `sha256 mismatch: manifest says ${f.sha256}, content is ${got}` });
        continue;
      }
      const blob = /^oci\/blobs\/sha256\/([a-f0-9]{64})$/.exec(f.path);
      if (f.path.startsWith(`${OCI_DIR}/blobs/`) && (!blob || blob[1] !== got)) {
        bad.push({ path: f.path, problem: `content digest sha256:${got} does not match the blob's name` });
        continue;
      }
      intact.add(f.path);
      good++;
    }
    bar?.done();
    bad.push(...(await imageProblems(b, intact)));
    bad.push(...(await osProblems(b, intact)));
    return { good, bad, bytes, images: b.manifest.images.length };
  } finally {
    await b.close();
  }
}

/** The kernel, initramfs and disk image are the files os/os.json names (by size and sha256). */
async function osProblems(b: Bundle, intact: Set<string>): Promise<Problem[]> {
  const path = OS_ASSETS.manifest;
  if (!intact.has(path)) return []; // absent (a bundle without the OS image), or its bad digest is reported
  let info;
  try {
    info = parseOsJson((await b.read(b.entries.get(path)!)).toString('utf8'), path);
  } catch (e) {
    if (e instanceof OsImageError) return [{ path, problem: e.message }];
    throw e;
  }
  const out: Problem[] = [];
  for (const role of ['kernel', 'initrd', 'disk'] as const) {
    const want = info[role];
    const f = b.files.get(OS_ASSETS[role]);
    if (!f) out.push({ path: OS_ASSETS[role], problem: `missing (${path} names it: ${want.file})` });
    else if (f.sha256 !== want.sha256 || f.size !== want.size) out.push({ path: f.path, problem: `${f.size} bytes, sha256 ${f.sha256}; ${path} says ${want.size} bytes, sha256 ${want.sha256}` });
  }
  return out;
}

/** Every image's manifest chain is complete in the layout, and index.json names it. */
async function imageProblems(b: Bundle, intact: Set<string>): Promise<Problem[]> {
  const out: Problem[] = [];
  const have = (digest: string) => b.files.has(blobPath(digest));
  const readJSON = async (path: string) => (intact.has(path) ? b.read(b.entries.get(path)!) : undefined);
  let index: { manifests?: { digest?: string; annotations?: Record<string, string> }[] } | undefined;
  if (b.manifest.images.length) {
    const bytes = await readJSON(`${OCI_DIR}/index.json`);
    if (!b.files.has(`${OCI_DIR}/index.json`)) out.push({ path: `${OCI_DIR}/index.json`, problem: 'missing: the bundle has images but no OCI index' });
    else if (bytes) {
      try {
        index = JSON.parse(bytes.toString('utf8')) as typeof index;
      } catch {
        out.push({ path: `${OCI_DIR}/index.json`, problem: 'not valid JSON' });
      }
    }
  }
  for (const im of b.manifest.images) {
    const label = `image ${im.ref}`;
    if (index) {
      const row = index.manifests?.find((m) => m.annotations?.[REF_NAME] === im.ref || m.annotations?.[CONTAINERD_NAME] === im.ref);
      if (!row) out.push({ path: `${OCI_DIR}/index.json`, problem: `does not name ${im.ref}` });
      else if (row.digest !== im.digest) out.push({ path: `${OCI_DIR}/index.json`, problem: `names ${im.ref} as ${row.digest}, ${MANIFEST_PATH} as ${im.digest}` });
    }
    for (const d of im.blobs) if (!have(d)) out.push({ path: blobPath(d), problem: `missing (${label} needs it)` });
    const top = await readJSON(blobPath(im.digest));
    if (!top) continue; // missing or corrupt: already reported
    try {
      const p = parseManifestBytes(top, label);
      const children = p.index ? p.index.manifests.map((m) => m.digest) : [im.digest];
      for (const m of im.manifests) {
        if (!children.includes(m.digest)) out.push({ path: blobPath(m.digest), problem: `${label}: not a manifest its tag names` });
        const bytes = await readJSON(blobPath(m.digest));
        if (!bytes) continue;
        const c = parseManifestBytes(bytes, `${label} (${m.platform ?? m.digest})`).manifest;
        if (!c) {
          out.push({ path: blobPath(m.digest), problem: `${label}: expected an image manifest` });
          continue;
        }
        for (const d of [c.config, ...c.layers]) if (!have(d.digest)) out.push({ path: blobPath(d.digest), problem: `missing (${label} ${m.platform ?? ''} needs it)`.replace(' )', ')') });
      }
    } catch (e) {
      out.push({ path: blobPath(im.digest), problem: (e as Error).message });
    }
  }
  // one line per missing blob, however many images share it
  const seen = new Set<string>();
  return out.filter((p) => {
    const k = `${p.path}\n${p.problem}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
