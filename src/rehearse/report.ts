// The rehearsal report: one JSON shape for every engine (field and check names are a
// contract), and its text summary for the terminal.
import type { CheckResult } from './checks.ts';
import type { Adjustment } from './containers/adjustments.ts';

export interface MachineReport {
  name: string;
  roles: string[];
  /** what the machine is made of (VM engine: firmware, NIC, disk controller) */
  hardware?: string;
  ready: boolean;
  /** the provisioner's lifecycle state at the end */
  state: string;
  /** why it failed, when it did */
  reason?: string;
  /** seconds from the start of the install phase to each milestone */
  seconds: { dhcp?: number; configFetched?: number; installed?: number; ready?: number };
  /** powered off on purpose by a check */
  poweredOff?: boolean;
  failedUnits: { unit: string; logs: string }[];
  /** every unit Slipway rendered for it, as it stood after install (VM engine) */
  units?: UnitState[];
}

/** A unit on a machine: active, failed, not-started (with why), or systemd's ActiveState. */
export interface UnitState {
  unit: string;
  state: string;
  detail?: string;
}

export interface Report {
  engine: 'containers' | 'vm';
  kubernetesVersion: string;
  ok: boolean;
  seconds: number;
  machines: MachineReport[];
  checks: CheckResult[];
  adjustments: Adjustment[];
  phases: { name: string; seconds: number }[];
  /** where the binaries and images came from, what could not run and why */
  notes: string[];
  /** set when the rehearsal stopped before the checks */
  error?: string;
}

/** The report's phases: `phase(name)` closes the phase that ran since the previous call. */
export function phaseTimer(): { phases: Report['phases']; phase: (name: string) => void } {
  const phases: Report['phases'] = [];
  let start = Date.now();
  return {
    phases,
    phase(name) {
      phases.push({ name, seconds: Math.round((Date.now() - start) / 100) / 10 });
      start = Date.now();
    },
  };
}

/** Exit 0 only when every check is ok or not-run for a stated reason. */
export const reportOk = (checks: CheckResult[]): boolean => checks.length > 0 && checks.every((c) => c.result === 'ok' || (c.result === 'not-run' && c.detail.length > 0));

export function summary(r: Report): string {
  const lines = [`rehearsal (${r.engine}, Kubernetes ${r.kubernetesVersion}): ${r.ok ? 'OK' : 'FAILED'} in ${r.seconds}s`];
  if (r.error) lines.push(`  error: ${r.error}`);
  lines.push('  phases: ' + r.phases.map((p) => `${p.name} ${p.seconds}s`).join(', '));
  for (const m of r.machines) {
    const s = m.seconds;
    const t = [s.dhcp !== undefined && `dhcp ${s.dhcp}s`, s.configFetched !== undefined && `config ${s.configFetched}s`, s.installed !== undefined && `installed ${s.installed}s`, s.ready !== undefined && `ready ${s.ready}s`].filter(Boolean).join(', ');
    lines.push(`  ${m.name.padEnd(10)} ${m.roles.join(',').padEnd(22)} ${(m.ready ? 'Ready' : 'not ready').padEnd(10)} ${m.state.padEnd(15)} ${t}${m.poweredOff ? '  (powered off by a check)' : ''}`);
    if (m.hardware) lines.push(`      hardware: ${m.hardware}`);
    if (m.reason) lines.push(`      ${m.state}: ${m.reason}`);
    if (m.units?.length) {
      const by = (st: string) => m.units!.filter((u) => u.state === st);
      const active = by('active');
      if (active.length) lines.push(`      active: ${active.map((u) => u.unit).join(', ')}`);
      const done = by('done');
      if (done.length) lines.push(`      done: ${done.map((u) => u.unit).join(', ')}`);
      const skipped = by('not-started');
      if (skipped.length) lines.push(`      not started: ${skipped.map((u) => `${u.unit} (${u.detail})`).join(', ')}`);
      const other = m.units.filter((u) => !['active', 'done', 'not-started', 'failed'].includes(u.state));
      if (other.length) lines.push(`      other: ${other.map((u) => `${u.unit} ${u.state}${u.detail ? ` (${u.detail})` : ''}`).join(', ')}`);
    }
    for (const u of m.failedUnits) lines.push(`      failed unit ${u.unit}:\n${u.logs.split('\n').slice(-8).map((l) => `        ${l}`).join('\n')}`);
  }
  for (const c of r.checks) lines.push(`  ${c.result === 'ok' ? 'ok     ' : c.result === 'failed' ? 'FAILED ' : 'not-run'} ${c.name.padEnd(18)} ${String(c.seconds).padStart(5)}s  ${c.detail}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  lines.push(r.adjustments.length ? `  ${r.adjustments.length} rehearsal-only adjustments (never in what real machines get): ${r.adjustments.map((a) => a.id).join(', ')}` : '  no rehearsal-only adjustments: the machines ran exactly what was rendered');
  return lines.join('\n') + '\n';
}
