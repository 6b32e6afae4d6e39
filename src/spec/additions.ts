// The operator's own additions (issue 20): files, systemd units, sysctls and kernel
// arguments per role or per machine, and the proxy. Checked here for what the file alone can tell (one source
// of contents, selectors naming real machines, no two entries for one path on one
// machine); a clash with a file Slipway renders is found by the planner, which knows them
// all (plan/phases/additions.ts), and reported at the same FILE:LINE:COL.
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { ClusterFile } from './schema.ts';
import type { PathSeg, Problem } from './problems.ts';
import type { Additions, Proxy, Role } from './types.ts';

type Report = (path: PathSeg[], message: string, also?: PathSeg[]) => void;
type Spec = ClusterFile['spec'];
type Sel = { roles?: string[]; machines?: string[] };

/** Largest file `source` may name: contents travel inline in Ignition and cloud-config. */
export const SOURCE_MAX = 1024 * 1024;

/**
 * The installed system's own command line, as scripts/build-os-image.sh writes it into
 * the boot partition's SYSLINUX configs (os.json's kernelCmdline; the install test
 * compares them). spec.kernelArgs are appended after it.
 */
export const OS_KERNEL_CMDLINE = 'root=LABEL=ROOT rw console=tty0 console=ttyS0,115200n8';
/**
 * At most this many bytes of spec.kernelArgs per machine (joined by spaces): x86 Linux
 * takes 2048 with SYSLINUX's BOOT_IMAGE= and initrd= and Slipway's own, which leaves room.
 */
export const KERNEL_ARGS_MAX = 1024;
/** Arguments that decide what boots (root file system, init, Ignition, the installer): Slipway's. */
const OWNED_ARGS = new Set(['root', 'rootfstype', 'rootflags', 'rootwait', 'rootdelay', 'ro', 'rw', 'init', 'rdinit', 'initrd', 'BOOT_IMAGE']);
const OWNED_PREFIXES = ['ignition.', 'flatcar.', 'slipway.'];

/** Names of the machines an entry applies to. */
function targets(s: Spec, sel: Sel): Set<string> {
  return new Set(s.machines.filter((m) => (!sel.roles || sel.roles.some((r) => m.roles.includes(r))) && (!sel.machines || sel.machines.includes(m.name))).map((m) => m.name));
}

export function additionProblems(cf: ClusterFile, err: Report, warn: Report): void {
  const s = cf.spec;
  const names = new Set(s.machines.map((m) => m.name));
  const selector = (base: PathSeg[], sel: Sel) => {
    sel.machines?.forEach((n, k) => {
      if (!names.has(n)) err([...base, 'machines', k], `no machine is named ${n} (machines: ${[...names].join(', ')})`);
    });
    if (targets(s, sel).size === 0 && (sel.machines ?? []).every((n) => names.has(n))) warn(base, 'applies to no machine');
  };
  const oneSource = (base: PathSeg[], e: { contents?: string; source?: string }) => {
    if (e.contents !== undefined && e.source !== undefined) err([...base, 'source'], 'both "contents" and "source": give one');
    if (e.contents === undefined && e.source === undefined) err(base, 'needs "contents" (inline) or "source" (a file beside the cluster file)');
  };
  /** Two entries with one key on one machine: which one would the machine get? */
  const unique = <T extends Sel>(list: T[] | undefined, field: string, key: (e: T) => string, what: string) => {
    list?.forEach((e, i) => {
      const mine = targets(s, e);
      const j = list.findIndex((o, k) => k < i && key(o) === key(e) && [...targets(s, o)].some((n) => mine.has(n)));
      if (j >= 0) err(['spec', field, i], `${what} ${key(e)} is also spec.${field}[${j}] for ${[...targets(s, list[j]!)].filter((n) => mine.has(n)).join(', ')}`, ['spec', field, j]);
    });
  };
  s.files?.forEach((f, i) => {
    oneSource(['spec', 'files', i], f);
    selector(['spec', 'files', i], f);
  });
  unique(s.files, 'files', (f) => f.path, 'path');
  s.units?.forEach((u, i) => {
    oneSource(['spec', 'units', i], u);
    selector(['spec', 'units', i], u);
    const j = s.files?.findIndex((f) => f.path === `/etc/systemd/system/${u.name}`) ?? -1;
    if (j >= 0) err(['spec', 'units', i, 'name'], `${u.name} is also written by spec.files[${j}] (/etc/systemd/system/${u.name})`, ['spec', 'files', j]);
  });
  unique(s.units, 'units', (u) => u.name, 'unit');
  s.sysctls?.forEach((x, i) => selector(['spec', 'sysctls', i], x));
  unique(s.sysctls, 'sysctls', (x) => x.name, 'sysctl');
  kernelArgProblems(s, err, selector);
  const p = s.proxy;
  if (p && !p.http && !p.https) warn(['spec', 'proxy'], 'neither http nor https: no proxy is configured');
}

/** spec.kernelArgs: none of Slipway's own, and a command line the loader and kernel take. */
function kernelArgProblems(s: Spec, err: Report, selector: (base: PathSeg[], sel: Sel) => void): void {
  const used = new Map<string, number>();
  s.kernelArgs?.forEach((e, i) => {
    selector(['spec', 'kernelArgs', i], e);
    e.args.forEach((a, k) => {
      const name = a.split('=')[0]!;
      if (OWNED_ARGS.has(name) || OWNED_PREFIXES.some((p) => name.startsWith(p)))
        err(['spec', 'kernelArgs', i, 'args', k], `${name}${a.includes('=') ? '=' : ''} is Slipway's: the installed system boots with "${OS_KERNEL_CMDLINE}", and ${OWNED_PREFIXES.map((p) => `${p}*`).join(', ')} drive Ignition and the installer`);
    });
    const length = e.args.join(' ').length;
    for (const m of targets(s, e)) {
      const before = used.get(m);
      const total = before === undefined ? length : before + 1 + length;
      used.set(m, total);
      if (total > KERNEL_ARGS_MAX && (before ?? 0) <= KERNEL_ARGS_MAX) err(['spec', 'kernelArgs', i, 'args'], `machine ${m}'s kernel arguments are ${total} bytes with this entry; at most ${KERNEL_ARGS_MAX} (the kernel's command line holds 2048 with the boot loader's and Slipway's own)`);
    }
  });
}

/** A unit file's targets from [Install] WantedBy=/RequiredBy= (what `systemctl enable` links it into). */
export function installTargets(contents: string): { wantedBy: string[]; requiredBy: string[] } {
  const out = { wantedBy: [] as string[], requiredBy: [] as string[] };
  let section = '';
  for (const raw of contents.split('\n')) {
    const line = raw.trim();
    const head = /^\[(.+)\]$/.exec(line);
    if (head) section = head[1]!;
    else if (section === 'Install') {
      const m = /^(WantedBy|RequiredBy)\s*=\s*(.*)$/.exec(line);
      if (m) (m[1] === 'WantedBy' ? out.wantedBy : out.requiredBy).push(...m[2]!.split(/\s+/).filter(Boolean));
    }
  }
  return out;
}

/**
 * Reads every `source` (relative to `baseDir`, the cluster file's directory) as UTF-8 text,
 * and checks what needs the contents: an enabled unit must say where it is wanted.
 * Returns the contents by "files/3", "units/0".
 */
export function readSources(cf: ClusterFile, baseDir: string): { problems: Problem[]; contents: Map<string, string> } {
  const problems: Problem[] = [];
  const contents = new Map<string, string>();
  const err = (path: PathSeg[], message: string) => problems.push({ severity: 'error', path, message });
  const read = (kind: 'files' | 'units', i: number, e: { contents?: string; source?: string }) => {
    if (e.source === undefined) return e.contents !== undefined && contents.set(`${kind}/${i}`, e.contents);
    const path = join(baseDir, e.source);
    if (isAbsolute(e.source)) return err(['spec', kind, i, 'source'], 'must be a path beside the cluster file (relative)');
    try {
      const st = statSync(path);
      if (!st.isFile()) return err(['spec', kind, i, 'source'], `${path} is not a regular file`);
      if (st.size > SOURCE_MAX) return err(['spec', kind, i, 'source'], `${path} is ${st.size} bytes; at most ${SOURCE_MAX} (contents travel inline in every machine's Ignition and cloud-config)`);
      const text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(path));
      contents.set(`${kind}/${i}`, text);
    } catch (e2) {
      const code = (e2 as NodeJS.ErrnoException).code;
      err(['spec', kind, i, 'source'], code ? `cannot read ${path}: ${code}` : `${path} is not UTF-8 text`);
    }
  };
  cf.spec.files?.forEach((f, i) => read('files', i, f));
  cf.spec.units?.forEach((u, i) => {
    read('units', i, u);
    const text = contents.get(`units/${i}`);
    if (text !== undefined && (u.enabled ?? true)) {
      const t = installTargets(text);
      if (!t.wantedBy.length && !t.requiredBy.length) err(['spec', 'units', i, 'enabled'], `${u.name} is enabled but its [Install] section names no WantedBy= or RequiredBy=: say which target wants it, or set enabled: false`);
    }
  });
  return { problems, contents };
}

const sel = (e: Sel) => ({ roles: e.roles as Role[] | undefined, machines: e.machines });

export function resolveAdditions(cf: ClusterFile, contents: Map<string, string>): Additions | undefined {
  const s = cf.spec;
  if (!s.files && !s.units && !s.sysctls && !s.kernelArgs) return undefined;
  return {
    files: (s.files ?? []).map((f, i) => ({
      origin: `spec.files[${i}]`,
      ...sel(f),
      path: f.path,
      mode: parseInt(f.mode ?? '0644', 8),
      owner: f.owner ? (f.owner.includes(':') ? f.owner : `${f.owner}:root`) : 'root:root',
      contents: contents.get(`files/${i}`) ?? '',
    })),
    units: (s.units ?? []).map((u, i) => ({ origin: `spec.units[${i}]`, ...sel(u), name: u.name, enabled: u.enabled ?? true, contents: contents.get(`units/${i}`) ?? '' })),
    sysctls: (s.sysctls ?? []).map((x, i) => ({ origin: `spec.sysctls[${i}]`, ...sel(x), name: x.name, value: x.value })),
    kernelArgs: (s.kernelArgs ?? []).map((x, i) => ({ origin: `spec.kernelArgs[${i}]`, ...sel(x), args: [...x.args] })),
  };
}

export const resolveProxy = (cf: ClusterFile): Proxy | undefined =>
  cf.spec.proxy && { http: cf.spec.proxy.http, https: cf.spec.proxy.https, noProxy: cf.spec.proxy.noProxy ?? [] };
