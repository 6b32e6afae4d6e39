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

export const PHASES: Phase[] = [hostPhase, pkiPhase, etcdPhase, controlPlanePhase, haPhase, nodePhase, addonsPhase, reportPhase, pxePhase];

function collect(where: string, parts: [string, File[]][]): File[] {
  const byPath = new Map<string, string>();
  const out: File[] = [];
  for (const [phase, files] of parts)
    for (const f of files) {
      const prev = byPath.get(f.path);
      if (prev) throw new Error(`${where}: phases ${prev} and ${phase} both write ${f.path}`);
      byPath.set(f.path, phase);
      out.push(f);
    }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * `systemctl enable` as data: a unit with WantedBy=multi-user.target gets its
 * multi-user.target.wants/ link, so the machine needs no first-boot preset logic.
 */
function enableLinks(files: File[]): File[] {
  const links: File[] = [];
  for (const f of files) {
    const m = /^\/etc\/systemd\/system\/([^/]+\.service)$/.exec(f.path);
    if (m && !f.link && /^WantedBy=multi-user\.target$/m.test(f.contents))
      links.push(wantedBy('multi-user.target', f.path));
  }
  return links;
}

function machineFiles(ctx: PhaseContext, phases: Phase[], m: Machine): File[] {
  const parts = phases.flatMap((p) => (p.machine ? [[p.name, p.machine(ctx, m)] as [string, File[]]] : []));
  const all = parts.flatMap(([, f]) => f);
  parts.push(['enable', enableLinks(all)], ['report', failureDropIns(all)]);
  return collect(`machine ${m.name}`, parts);
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
