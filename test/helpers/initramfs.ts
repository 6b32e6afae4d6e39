// The boot image the QEMU end-to-end test serves as assets/os/vmlinuz + os/initrd.img:
// Debian's own kernel, and an initramfs built here from Debian packages only:
//   busybox-static      /bin/busybox and its applets (sh, udhcpc, wget, sha256sum, ...)
//   linux-image-amd64   the modules a virtio-net-pci NIC needs, in dependency order
//   ignition            the real Ignition binary (+ the shared libraries ldd names), as
//                       /usr/bin/ignition and, linked, /usr/bin/ignition-apply
//   test/fixtures/initramfs/{init,udhcpc.script}   what runs (read init's header)
//
// Building takes a few seconds (gzip of ~20 MB), so the result is cached under
// /var/cache/slipway/test-initramfs/<key>/ — outside the clone, so every checkout and
// every run shares it — where <key> is a sha256 over every input's bytes and the builder
// version: a new kernel, Ignition or init script gives a new key, never a stale image.
// A cold cache still works; it just builds first. Concurrent builders each write a
// private temporary directory and rename it into place, so they cannot see half an image.
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Images not used for this long are deleted when a new one is built. */
const KEEP_UNUSED_MS = 14 * 24 * 3600 * 1000;
/** Bump when the image layout changes in a way the inputs' bytes do not show. */
const BUILDER_VERSION = 'slipway-test-initramfs/1';
export const CACHE_ROOT = '/var/cache/slipway/test-initramfs';
const FIXTURES = fileURLToPath(new URL('../fixtures/initramfs/', import.meta.url));
/** Where Debian's ignition package puts the binary (for its dracut module to install). */
export const IGNITION_BIN = '/usr/lib/dracut/modules.d/30ignition/ignition';
/** The NIC driver and the PCI transport it sits on; the rest comes from modules.dep. */
const WANTED_MODULES = ['virtio_net', 'virtio_pci'];

export interface BootImage {
  /** absolute paths inside the cache */
  kernel: string;
  initrd: string;
  /** the kernel release the modules came from, e.g. 6.1.0-56-amd64 */
  release: string;
  key: string;
  /** true when this call built it (cold cache) */
  built: boolean;
  buildMs: number;
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** Compare Debian kernel releases like "6.1.0-56-amd64" numerically, part by part. */
function compareRelease(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const d = /^\d+$/.test(x) && /^\d+$/.test(y) ? Number(x) - Number(y) : x.localeCompare(y);
    if (d !== 0) return d;
  }
  return 0;
}

/** The newest kernel that has both /boot/vmlinuz-<release> and /lib/modules/<release>. */
export function debianKernel(): { release: string; vmlinuz: string; modules: string } {
  const releases = readdirSync('/lib/modules').filter((r) => existsSync(`/boot/vmlinuz-${r}`) && existsSync(`/lib/modules/${r}/modules.dep`));
  if (releases.length === 0) throw new Error('no /boot/vmlinuz-<release> with /lib/modules/<release>/modules.dep: install linux-image-amd64');
  const release = releases.sort(compareRelease).at(-1)!;
  return { release, vmlinuz: `/boot/vmlinuz-${release}`, modules: `/lib/modules/${release}` };
}

/**
 * The .ko files (paths relative to the modules dir) to insmod, dependencies first, for
 * `wanted`. Modules built into the kernel (modules.builtin) need nothing. Compressed
 * modules (.ko.xz/.ko.zst) would need a decompressing insmod: refused, not guessed.
 */
export function moduleLoadOrder(modulesDir: string, wanted: string[]): string[] {
  const norm = (s: string) => s.replace(/-/g, '_');
  const nameOf = (path: string) => norm(path.split('/').at(-1)!.replace(/\.ko(\..*)?$/, ''));
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of readFileSync(join(modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    deps.set(nameOf(m[1]!), { path: m[1]!, deps: m[2]!.split(/\s+/).filter(Boolean).map(nameOf) });
  }
  const builtin = new Set(
    existsSync(join(modulesDir, 'modules.builtin')) ? readFileSync(join(modulesDir, 'modules.builtin'), 'utf8').split('\n').filter(Boolean).map(nameOf) : [],
  );
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: string[]) => {
    if (seen.has(name) || builtin.has(name)) return;
    const entry = deps.get(name);
    if (!entry) throw new Error(`module ${name} (needed by ${chain.join(' <- ') || 'the test'}) is neither in modules.dep nor built in`);
    if (!entry.path.endsWith('.ko')) throw new Error(`module ${entry.path} is compressed; this builder packs plain .ko files for busybox insmod`);
    seen.add(name);
    for (const d of entry.deps) visit(d, [name, ...chain]);
    order.push(entry.path);
  };
  for (const w of wanted) visit(norm(w), []);
  return order;
}

/** The shared libraries a dynamic ELF loads, as absolute paths (none for a static one). */
export function sharedLibraries(bin: string): string[] {
  const r = spawnSync('ldd', [bin], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0 && /not a dynamic executable/.test(r.stdout + r.stderr)) return [];
  if (r.status !== 0) throw new Error(`ldd ${bin}: ${r.stderr}`);
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
    else if (/not found/.test(line)) throw new Error(`ldd ${bin}: ${line.trim()}`);
  }
  return libs;
}

function findBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!existsSync(p)) continue;
    if (sharedLibraries(p).length === 0) return p;
  }
  throw new Error('no statically linked busybox: install busybox-static');
}

/** One file of the image: where it goes, and where its bytes come from (or the bytes). */
interface Entry {
  dest: string;
  src?: string;
  data?: string;
  mode: number;
}

/** Build the image, or return it from the cache when an identical one is there. */
export function testBootImage(): BootImage {
  const t0 = performance.now();
  const kernel = debianKernel();
  if (!existsSync(IGNITION_BIN)) throw new Error(`${IGNITION_BIN} missing: install Debian's ignition package`);
  const busybox = findBusybox();
  const modules = moduleLoadOrder(kernel.modules, WANTED_MODULES);

  const entries: Entry[] = [
    { dest: 'init', src: join(FIXTURES, 'init'), mode: 0o755 },
    { dest: 'etc/udhcpc.script', src: join(FIXTURES, 'udhcpc.script'), mode: 0o755 },
    { dest: 'bin/busybox', src: busybox, mode: 0o755 },
    { dest: 'usr/bin/ignition', src: IGNITION_BIN, mode: 0o755 },
    // flat: init reads the order from this list, not from modules.dep
    ...modules.map((m) => ({ dest: `lib/modules/${m.split('/').at(-1)!}`, src: join(kernel.modules, m), mode: 0o644 })),
    { dest: 'lib/modules/load.order', data: modules.map((m) => m.split('/').at(-1)!).join('\n') + '\n', mode: 0o644 },
  ];
  for (const lib of sharedLibraries(IGNITION_BIN)) {
    // the path ldd printed is where the loader looks (ld-linux under /lib64): keep it
    entries.push({ dest: lib.replace(/^\//, ''), src: realpathSync(lib), mode: 0o755 });
  }
  const applets = run(busybox, ['--list']).split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');

  const hash = createHash('sha256').update(BUILDER_VERSION).update('\0').update(kernel.release).update('\0').update(sha256(readFileSync(kernel.vmlinuz)));
  for (const e of entries) hash.update(`\0${e.dest}\0${e.mode}\0`).update(e.data ?? sha256(readFileSync(e.src!)));
  hash.update(`\0${applets.join(',')}`);
  const key = hash.digest('hex').slice(0, 32);
  const dir = join(CACHE_ROOT, key);
  const image = (built: boolean): BootImage => ({
    kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), release: kernel.release, key, built, buildMs: Math.round(performance.now() - t0),
  });
  if (existsSync(join(dir, 'initrd.img')) && existsSync(join(dir, 'vmlinuz'))) {
    // the directory's mtime says when it was last used, for pruneCache()
    const now = new Date();
    utimesSync(dir, now, now);
    return image(false);
  }
  pruneCache();

  mkdirSync(CACHE_ROOT, { recursive: true });
  const tmp = join(CACHE_ROOT, `.${key}.${process.pid}.${Date.now()}`);
  const root = join(tmp, 'root');
  try {
    for (const d of ['bin', 'dev', 'proc', 'sys', 'run', 'tmp', 'etc', 'usr/bin', 'lib/modules', 'sysroot']) mkdirSync(join(root, d), { recursive: true });
    for (const e of entries) {
      const to = join(root, e.dest);
      mkdirSync(dirname(to), { recursive: true });
      if (e.data !== undefined) writeFileSync(to, e.data);
      else copyFileSync(e.src!, to);
      chmodSync(to, e.mode);
    }
    for (const a of applets) if (!existsSync(join(root, 'bin', a))) symlinkSync('busybox', join(root, 'bin', a));
    symlinkSync('ignition', join(root, 'usr/bin/ignition-apply'));
    // /dev/console for the kernel to open as init's stdio before init mounts devtmpfs
    run('mknod', ['-m', '600', join(root, 'dev/console'), 'c', '5', '1']);
    // sorted names, owner root, fixed mtimes (--reproducible) and gzip -n: the same
    // inputs give the same bytes
    run('bash', ['-o', 'pipefail', '-c',
      'find . -print0 | LC_ALL=C sort -z | cpio --null --reproducible -o -H newc -R 0:0 --quiet | gzip -n -6 > ../initrd.img'], { cwd: root });
    copyFileSync(kernel.vmlinuz, join(tmp, 'vmlinuz'));
    rmSync(root, { recursive: true, force: true });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // another builder won the race with an identical image: use theirs
      if (!existsSync(join(dir, 'initrd.img'))) throw e;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return image(true);
}

/**
 * Every new input (kernel update, init change) makes a new key; delete images nobody
 * used for two weeks so the cache does not grow forever. Half-written temporary
 * directories of builders that died are old too and go the same way.
 */
function pruneCache(): void {
  if (!existsSync(CACHE_ROOT)) return;
  for (const name of readdirSync(CACHE_ROOT)) {
    const p = join(CACHE_ROOT, name);
    try {
      if (Date.now() - statSync(p).mtimeMs > KEEP_UNUSED_MS) rmSync(p, { recursive: true, force: true });
    } catch {
      // another process pruned or renamed it meanwhile
    }
  }
}

/** Copy the image into an assets directory as os/vmlinuz + os/initrd.img. */
export function installBootImage(img: BootImage, assetsDir: string): void {
  mkdirSync(join(assetsDir, 'os'), { recursive: true });
  for (const [from, name] of [[img.kernel, 'vmlinuz'], [img.initrd, 'initrd.img']] as const) {
    const to = join(assetsDir, 'os', name);
    rmSync(to, { force: true });
    copyFileSync(from, to);
  }
}

/**
 * The digest init computes in the VM (its header defines it), over a directory on the
 * host: the rendered machines/<name>/root/ gives what the machine must have got.
 */
export function treeDigest(root: string): { digest: string; files: number; manifest: string } {
  const lines: [string, string][] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const p = `${rel}/${name}`;
      const st = lstatSync(join(root, p));
      if (st.isDirectory()) walk(p);
      else if (st.isSymbolicLink()) lines.push([p, `${p} l - ${sha256(readlinkSync(join(root, p)))}`]);
      else if (st.isFile()) lines.push([p, `${p} f ${(st.mode & 0o7777).toString(8)} ${sha256(readFileSync(join(root, p)))}`]);
      else lines.push([p, `${p} o`]);
    }
  };
  walk('');
  // byte order of the paths, as busybox sort in the VM (paths here are ASCII)
  lines.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  const manifest = lines.map((l) => l[1] + '\n').join('');
  return { digest: sha256(manifest), files: lines.length, manifest };
}
