// What the provisioner heard of a VM's install, from its events (GET /api/v1/machines/NAME):
// the installer's steps (scripts/os-image/init reports `installing` with detail.step disk,
// write (repeated with its percent), grow, ignition, then `installed` with step reboot),
// and whether the installed system came up from the disk after that and reported itself.
import type { LabRun } from '../engine.ts';

/** An event as the API lists it (the fields used here). */
export interface MachineEvent {
  to: string;
  source: string;
  reason?: string;
  detail?: { step?: unknown; [k: string]: unknown };
}

/** The machine's newest events (up to the API's page of 100), oldest first; undefined when the API did not answer. */
export async function machineEvents(r: LabRun, name: string): Promise<MachineEvent[] | undefined> {
  return (await r.lab.api<{ events?: MachineEvent[] }>(`/api/v1/machines/${name}`, r.token))?.events;
}

/** The installer's event: `installed` with step reboot (the installed system's own `installed` has no step). */
const installerDone = (e: MachineEvent) => e.to === 'installed' && e.detail?.step === 'reboot';

/**
 * The installer's steps as it reported them, in order, repeats collapsed ("write" comes
 * every ~10 %): its `installing` events' steps, then "installed" for its last report.
 */
export function installerSteps(events: MachineEvent[]): string[] {
  const steps: string[] = [];
  for (const e of events) {
    if (e.source !== 'machine') continue;
    const step = installerDone(e) ? 'installed' : e.to === 'installing' && typeof e.detail?.step === 'string' ? e.detail.step : undefined;
    if (step && steps.at(-1) !== step) steps.push(step);
  }
  return steps;
}

/** The order the installer must report its steps in. */
export const INSTALL_STEPS = ['disk', 'write', 'grow', 'ignition', 'installed'] as const;

/** Did the machine report, from its installed system, after the installer's reboot (installed again, joined, ready, or failed)? */
export function systemReported(events: MachineEvent[]): boolean {
  const i = events.findIndex(installerDone);
  return i >= 0 && events.slice(i + 1).some((e) => e.source === 'machine');
}
