// What `slipway apply` must do, decided from data alone (pure, so it is tested without a
// machine): which files a machine gets or loses (what it was given against a fresh
// render), which units that touches and how (restart, reload, a command), and in which
// order machines go (control plane and etcd one at a time, first; then workers).
import type { File } from '../plan/types.ts';
import type { Given } from '../render/given.ts';
import { givenFile } from '../render/given.ts';
import { hasRole, type Machine } from '../spec/types.ts';
import { KERNEL_ARGS_FILE } from '../plan/phases/additions.ts';

export interface FileChanges {
  /** new or changed files, by machine path */
  put: File[];
  /** paths it was given that the render no longer has */
  remove: string[];
}

const sameGiven = (a: Given[string] | undefined, b: Given[string]): boolean =>
  !!a && a.sha256 === b.sha256 && a.mode === b.mode && (a.owner ?? '') === (b.owner ?? '') && (a.link ?? '') === (b.link ?? '');

/** The difference between what a machine was given and what it would be given now. */
export function fileChanges(given: Given, next: Map<string, File>): FileChanges {
  const put: File[] = [];
  for (const [path, f] of [...next].sort(([a], [b]) => (a < b ? -1 : 1))) if (!sameGiven(given[path], givenFile(f))) put.push(f);
  const remove = Object.keys(given).filter((p) => !next.has(p)).sort();
  return { put, remove };
}

export type UnitAction = { kind: 'restart' | 'reload' | 'start' | 'stop'; unit: string };
export type Command = { argv: string[]; why: string };

export interface MachineActions {
  /** systemctl daemon-reload first: a unit file or drop-in changed */
  daemonReload: boolean;
  /** units to stop before their files go (a unit removed, or no longer enabled) */
  stop: string[];
  /** commands that apply a changed config without a unit of ours */
  commands: Command[];
  /** in order: what to restart, reload or start */
  units: UnitAction[];
}

const UNIT_DIR = '/etc/systemd/system/';
/** `/etc/systemd/system/<name>` or one of its drop-ins `<name>.d/*.conf` → name */
function unitOfPath(path: string): string | undefined {
  if (!path.startsWith(UNIT_DIR)) return undefined;
  const rest = path.slice(UNIT_DIR.length);
  const m = /^([^/]+\.(?:service|socket|timer|target|path))(?:\.d\/[^/]+\.conf)?$/.exec(rest);
  return m?.[1];
}
/** `<target>.wants/<unit>`: the unit is enabled */
const wantsLink = (path: string): string | undefined => /^\/etc\/systemd\/system\/[^/]+\.(?:wants|requires)\/([^/]+)$/.exec(path)?.[1];

/**
 * Configuration the node OS's own units read (Slipway renders the config, not the unit),
 * and what takes a change of it: first match wins.
 */
export const OS_CONFIG: readonly { prefix: string; action: UnitAction | Command }[] = [
  { prefix: '/etc/haproxy/', action: { kind: 'reload', unit: 'haproxy.service' } },
  { prefix: '/etc/keepalived/', action: { kind: 'reload', unit: 'keepalived.service' } },
  { prefix: '/etc/containerd/', action: { kind: 'restart', unit: 'containerd.service' } },
  { prefix: '/etc/systemd/network/', action: { argv: ['networkctl', 'reload'], why: 'networkd files changed' } },
  { prefix: '/etc/systemd/timesyncd.conf.d/', action: { kind: 'restart', unit: 'systemd-timesyncd.service' } },
  { prefix: '/etc/sysctl.d/', action: { argv: ['sysctl', '--system'], why: 'sysctl.d changed' } },
  { prefix: '/etc/modules-load.d/', action: { kind: 'restart', unit: 'systemd-modules-load.service' } },
];

/**
 * Files read only at install time: delivering a change of one is not applying it. apply
 * writes it (so the machine's files match the render) and says what it takes instead.
 */
export const INSTALL_TIME: readonly { path: string; note: (machine: string) => string }[] = [
  {
    path: KERNEL_ARGS_FILE,
    note: (machine) =>
      `kernel arguments changed (spec.kernelArgs): ${KERNEL_ARGS_FILE} is written, but the installed boot loader keeps the ones it was installed with; they take effect when the machine is reprovisioned (slipway provision ${machine}, or the console's Reprovision)`,
  },
];

/** The notes for install-time files among `changes` (INSTALL_TIME). */
export const installTimeNotes = (changes: FileChanges, name: string): string[] =>
  INSTALL_TIME.filter((x) => changes.put.some((f) => f.path === x.path) || changes.remove.includes(x.path)).map((x) => x.note(name));

/**
 * Units Slipway renders that apply never restarts: they report the machine's progress and
 * run once per boot (restarting them would report `installed` again mid-day).
 */
const NEVER_RESTART = new Set(['slipway-progress.service']);

/** Units in the order a machine's parts depend on each other: etcd before the apiserver before the rest; the kubelet last. */
const UNIT_ORDER = ['containerd.service', 'etcd.service', 'kube-apiserver.service', 'kube-controller-manager.service', 'kube-scheduler.service', 'haproxy.service', 'keepalived.service'];
const rankOf = (u: string): number => {
  const i = UNIT_ORDER.indexOf(u);
  if (i >= 0) return i;
  return u === 'kubelet.service' ? 1000 : 500;
};

/** Absolute paths a text names (flags like --x=/path, `ExecStart=/path`, YAML values, script words). */
function pathsNamed(text: string, known: Set<string>): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?<![A-Za-z0-9_.-])(\/[A-Za-z0-9_@%+:,./-]*[A-Za-z0-9_])/g)) if (known.has(m[1]!)) out.push(m[1]!);
  return out;
}

/**
 * For each unit the machine's render defines, the files it reads: those its unit file and
 * drop-ins name, and those named by what they name (a config naming its certificates), two
 * levels deep. A changed file restarts every unit that reads it.
 */
export function unitInputs(files: Map<string, File>): Map<string, Set<string>> {
  const known = new Set([...files.keys()].filter((p) => !files.get(p)!.link));
  const units = new Map<string, Set<string>>();
  for (const [path, f] of files) {
    const u = unitOfPath(path);
    if (!u || u.includes('@') || f.link) continue;
    const set = units.get(u) ?? new Set<string>();
    units.set(u, set);
    let frontier = pathsNamed(f.contents, known);
    for (let depth = 0; depth < 3 && frontier.length; depth++) {
      const next: string[] = [];
      for (const p of frontier) {
        if (set.has(p)) continue;
        set.add(p);
        const g = files.get(p)!;
        if (!g.secret) next.push(...pathsNamed(g.contents, known));
      }
      frontier = next;
    }
  }
  return units;
}

/**
 * What delivering `changes` takes on a machine whose fresh render is `next` (and whose
 * previous render had the unit-enabling links in `givenPaths`).
 */
export function machineActions(changes: FileChanges, next: Map<string, File>, givenPaths: Iterable<string>): MachineActions {
  const changed = new Set([...changes.put.map((f) => f.path), ...changes.remove]);
  const enabledNow = new Set([...next.keys()].map(wantsLink).filter((u): u is string => !!u));
  const enabledBefore = new Set([...givenPaths].map(wantsLink).filter((u): u is string => !!u));
  let daemonReload = false;
  const restart = new Set<string>();
  const reload = new Set<string>();
  const start = new Set<string>();
  const stop = new Set<string>();
  const commands = new Map<string, Command>();
  const inputs = unitInputs(next);

  for (const path of changed) {
    const unit = unitOfPath(path);
    if (unit) {
      daemonReload = true;
      if (!unit.includes('@') && enabledNow.has(unit)) restart.add(unit);
      continue;
    }
    const link = wantsLink(path);
    if (link) {
      daemonReload = true;
      if (next.has(path)) start.add(link);
      else stop.add(link);
      continue;
    }
    const os = OS_CONFIG.find((c) => path.startsWith(c.prefix));
    if (os) {
      if ('argv' in os.action) commands.set(os.action.argv.join(' '), os.action);
      else if (os.action.kind === 'reload') reload.add(os.action.unit);
      else restart.add(os.action.unit);
    }
    for (const [u, reads] of inputs) if (reads.has(path) && enabledNow.has(u)) restart.add(u);
  }
  // a unit whose file went away: stop it (its link goes with it)
  for (const p of changes.remove) {
    const u = unitOfPath(p);
    if (u && !next.has(`${UNIT_DIR}${u}`) && enabledBefore.has(u)) stop.add(u);
  }
  for (const u of stop) {
    restart.delete(u);
    start.delete(u);
  }
  for (const u of start) restart.delete(u); // newly enabled: started (a restart of a stopped unit is a start anyway)
  for (const u of restart) reload.delete(u); // a restart covers a reload
  for (const u of NEVER_RESTART) {
    restart.delete(u);
    start.delete(u);
  }
  const byRank = (a: string, b: string) => rankOf(a) - rankOf(b) || (a < b ? -1 : 1);
  const units: UnitAction[] = [
    ...[...restart].sort(byRank).map((unit) => ({ kind: 'restart' as const, unit })),
    ...[...start].sort(byRank).map((unit) => ({ kind: 'start' as const, unit })),
    ...[...reload].sort(byRank).map((unit) => ({ kind: 'reload' as const, unit })),
  ].sort((a, b) => byRank(a.unit, b.unit));
  return { daemonReload, stop: [...stop].sort(byRank).reverse(), commands: [...commands.values()], units };
}

/** Control-plane and etcd machines first, one at a time, in the file's order; then workers. */
export function rolloutOrder<T extends { machine: Machine }>(targets: T[]): T[] {
  const isCore = (m: Machine) => hasRole(m, 'control-plane') || hasRole(m, 'etcd');
  return [...targets.filter((t) => isCore(t.machine)), ...targets.filter((t) => !isCore(t.machine))];
}

/** Whether the machine's delivery needs any action at all. */
export const isEmpty = (c: FileChanges): boolean => c.put.length === 0 && c.remove.length === 0;
