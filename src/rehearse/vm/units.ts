// What the VM report says of each machine's units: every unit Slipway rendered for it,
// and its state as the machine's systemd tells it over the serial console.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasRole, type Machine, type Spec } from '../../spec/types.ts';
import { UNITS } from '../../plan/paths.ts';
import type { RehearsalMachine } from '../engine.ts';
import type { UnitState } from '../report.ts';

export const readdirSorted = (dir: string) => readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));

/** The units Slipway rendered for a machine (and the OS's haproxy/keepalived it configures). */
export function renderedUnits(out: string, m: Machine, spec: Spec): { unit: string; binary?: string }[] {
  const dir = join(out, 'machines', m.name, 'root', UNITS.slice(1));
  const list: { unit: string; binary?: string }[] = readdirSorted(dir)
    .filter((e) => e.isFile() && e.name.endsWith('.service') && !e.name.includes('@'))
    .map((e) => ({ unit: e.name, binary: /^ConditionFileIsExecutable=(\S+)$/m.exec(readFileSync(join(dir, e.name), 'utf8'))?.[1] }));
  if (spec.controlPlane.vip && hasRole(m, 'control-plane')) list.push({ unit: 'haproxy.service' }, { unit: 'keepalived.service' });
  return list;
}

/** Each unit's state on the machine: active, failed, not-started (its binary is absent), or systemd's own word. */
export async function unitStates(vm: RehearsalMachine, list: { unit: string; binary?: string }[]): Promise<UnitState[]> {
  try {
    const props = 'ActiveState,SubState,Result,ConditionResult';
    const text = await vm.sh(`for u in ${list.map((u) => u.unit).join(' ')}; do echo "U $u" $(systemctl show -p ${props} $u); done`, 60_000);
    const got = new Map(text.split('\n').filter((l) => l.startsWith('U ')).map((l) => {
      const [, unit, ...kv] = l.trim().split(/\s+/);
      const p = Object.fromEntries(kv.map((x) => x.split('=') as [string, string]));
      return [unit!, { active: p.ActiveState ?? '?', sub: p.SubState ?? '?', result: p.Result ?? '?', condition: p.ConditionResult ?? '?' }];
    }));
    return list.map(({ unit, binary }): UnitState => {
      const g = got.get(unit);
      if (!g) return { unit, state: 'unknown', detail: 'no answer from the machine' };
      if (g.condition === 'no') return { unit, state: 'not-started', detail: binary ? `${binary} absent: the provisioner does not offer it` : 'a start condition failed' };
      // a one-shot or finished script that ended well
      if (g.active === 'inactive' && g.result === 'success') return { unit, state: 'done' };
      if (g.active === 'active' || g.active === 'failed') return { unit, state: g.active, detail: g.active === 'failed' ? g.result : undefined };
      return { unit, state: g.active, detail: `${g.sub}${g.result !== 'success' ? `, ${g.result}` : ''}` };
    });
  } catch (e) {
    return list.map(({ unit }) => ({ unit, state: 'unknown', detail: (e as Error).message.split('\n')[0]! }));
  }
}
