// Spec + Secrets → Plan: every file of every machine, the cluster directory and the PXE
// side. Pure: the same inputs give the same bytes. Each phase is a small module in
// phases/; this file only runs them in order and checks they don't collide.
import type { Machine, Spec } from '../spec/types.ts';
import type { Secrets } from '../secrets/types.ts';
import { versionProfile } from '../catalog/versions.ts';
import type { AssetPins, File, Phase, PhaseContext, Plan } from './types.ts';
import { installEnv } from './phases/install.ts';
import { wantedBy } from './systemd.ts';
import { hostPhase } from './phases/host.ts';
import { pkiPhase } from './phases/pki.ts';
import { etcdPhase } from './phases/etcd.ts';
import { controlPlanePhase } from './phases/control-plane.ts';
import { haPhase } from './phases/ha.ts';
import { nodePhase } from './phases/node.ts';
import { addonsPhase } from './phases/addons.ts';
import { pxePhase } from './phases/pxe.ts';
import { reportPhase, failureDropIns } from './phases/report.ts';
import { proxyPhase } from './phases/proxy.ts';
import { additionsPhase, SITE_SYSCTL, sysctlKeys } from './phases/additions.ts';

export const PHASES: Phase[] = [hostPhase, pkiPhase, etcdPhase, controlPlanePhase, haPhase, nodePhase, addonsPhase, reportPhase, proxyPhase, additionsPhase, pxePhase];

/**
 * The operator's addition (issue 20) clashes with a file Slipway renders: `origin` is
 * where the cluster file asks for it ("spec.files[2]"), so the CLI can point at its line.
 */
export class AdditionConflict extends Error {
  readonly origin: string;
  /** the other addition of a clash between two ("spec.units[0]"), when it is one */
  readonly also?: string;
  constructor(origin: string, message: string, also?: string) {
    super(`${origin}: ${message}`);
    this.origin = origin;
    if (also) this.also = also;
    this.name = 'AdditionConflict';
  }
}

/** "spec.files[2]" → ['spec', 'files', 2] (the path problems.ts locates). */
export const originPath = (origin: string): (string | number)[] =>
  origin.split(/[.[\]]+/).filter(Boolean).map((s) => (/^\d+$/.test(s) ? Number(s) : s));

function collect(where: string, parts: [string, File[]][]): File[] {
  const byPath = new Map<string, { phase: string; file: File }>();
  const out: File[] = [];
  for (const [phase, files] of parts)
    for (const f of files) {
      const prev = byPath.get(f.path);
      if (prev) {
        const ours = [prev, { phase, file: f }].find((x) => !x.file.origin);
        const theirs = [prev, { phase, file: f }].find((x) => x.file.origin);
        if (ours && theirs) throw new AdditionConflict(theirs.file.origin!.split(', ')[0]!, `${f.path} on ${where} is also a file Slipway renders (its ${ours.phase} phase): choose another path`);
        // two of the operator's entries for one path (a file where a unit's enable link goes, say)
        if (prev.file.origin && f.origin) {
          const [first, second] = [prev.file.origin.split(', ')[0]!, f.origin.split(', ')[0]!];
          throw new AdditionConflict(second, `${f.path} on ${where} is also written by ${first}: one path, two entries`, first);
        }
        throw new Error(`${where}: phases ${prev.phase} and ${phase} both write ${f.path}`);
      }
      byPath.set(f.path, { phase, file: f });
      out.push(f);
    }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** An operator's file where Slipway needs a directory (or under one of Slipway's files) could not be written by Ignition. */
function directoryClashes(where: string, files: File[]): void {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : 1));
  for (let i = 0; i < sorted.length - 1; i++) {
    const [a, b] = [sorted[i]!, sorted[i + 1]!];
    if (!b.path.startsWith(`${a.path}/`) || (!a.origin && !b.origin)) continue;
    const theirs = a.origin ? a : b;
    const other = a.origin && b.origin ? b.origin.split(', ')[0] : undefined;
    throw new AdditionConflict(theirs.origin!.split(', ')[0]!, `${a.path} on ${where} is a file, but ${b.path} puts a directory there (${b.origin ? b.origin : 'a file Slipway renders'})`, other);
  }
}

/** The operator's sysctls may not undo Slipway's: a key both set, to different values, is refused. */
function sysctlClashes(where: string, files: File[]): void {
  const site = files.find((f) => f.path === SITE_SYSCTL && f.origin);
  if (!site) return;
  const theirs = sysctlKeys(site.contents);
  for (const f of files) {
    if (f.origin || !f.path.startsWith('/etc/sysctl.d/')) continue;
    for (const [k, v] of sysctlKeys(f.contents)) {
      const t = theirs.get(k);
      if (t !== undefined && t !== v) {
        const origins = site.origin!.split(', ');
        const origin = origins[[...theirs.keys()].indexOf(k)] ?? origins[0]!;
        throw new AdditionConflict(origin, `${k} = ${t} on ${where}, but Slipway sets ${k} = ${v} (${f.path}), which Kubernetes needs`);
      }
    }
  }
}

/**
 * `systemctl enable` as data: a unit with WantedBy=multi-user.target gets its
 * multi-user.target.wants/ link, so the machine needs no first-boot preset logic.
 */
function enableLinks(files: File[]): File[] {
  const links: File[] = [];
  for (const f of files) {
    const m = /^\/etc\/systemd\/system\/([^/]+\.service)$/.exec(f.path);
    // the operator's own units are enabled by their `enabled` (phases/additions.ts)
    if (m && !f.link && !f.origin && /^WantedBy=multi-user\.target$/m.test(f.contents))
      links.push(wantedBy('multi-user.target', f.path));
  }
  return links;
}

function machineFiles(ctx: PhaseContext, phases: Phase[], m: Machine): File[] {
  const parts = phases.flatMap((p) => (p.machine ? [[p.name, p.machine(ctx, m)] as [string, File[]]] : []));
  const all = parts.flatMap(([, f]) => f);
  parts.push(['enable', enableLinks(all)], ['report', failureDropIns(all)]);
  const files = collect(`machine ${m.name}`, parts);
  sysctlClashes(`machine ${m.name}`, files);
  directoryClashes(`machine ${m.name}`, files);
  return files;
}

export interface PlanOptions {
  /** digests of the provisioner's binaries and OS image (see AssetPins) */
  pins?: AssetPins;
  phases?: Phase[];
}

export function buildPlan(spec: Spec, secrets: Secrets, opts: PlanOptions = {}): Plan {
  const phases = opts.phases ?? PHASES;
  const ctx: PhaseContext = { spec, secrets, version: versionProfile(spec.kubernetesVersion), pins: opts.pins };
  return {
    cluster: collect('cluster', phases.flatMap((p) => (p.cluster ? [[p.name, p.cluster(ctx)] as [string, File[]]] : []))),
    pxe: collect('pxe', phases.flatMap((p) => (p.pxe ? [[p.name, p.pxe(ctx)] as [string, File[]]] : []))),
    machines: spec.machines.map((m) => ({
      machine: m,
      files: machineFiles(ctx, phases, m),
      install: installEnv(ctx, m),
    })),
  };
}
