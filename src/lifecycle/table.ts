// The machines as a table, as `slipway status` and a rehearsal's progress print them:
// one place, so both show the lifecycle the same way.
import type { State } from '../store/states.ts';

export interface MachineRow {
  name: string;
  mac: string;
  ip: string;
  roles: string[];
  state: State;
  since?: string;
  reason?: string;
  lastEvent?: { to: string; source: string; reason?: string; at: string };
}

export function elapsed(since: string | undefined, now = Date.now()): string {
  if (!since) return '-';
  const s = Math.max(0, Math.round((now - Date.parse(since)) / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function table(ms: MachineRow[], now = Date.now()): string {
  const rows = [['NAME', 'MAC', 'IP', 'ROLES', 'STATE', 'ELAPSED', 'LAST EVENT']];
  for (const m of ms) {
    const ev = m.lastEvent ? `${m.lastEvent.source}: ${m.lastEvent.to}${m.lastEvent.reason ? ` (${m.lastEvent.reason})` : ''}` : '-';
    rows.push([m.name, m.mac, m.ip, m.roles.join(','), m.state, elapsed(m.since, now), ev]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
