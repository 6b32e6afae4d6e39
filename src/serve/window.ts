// serve's reprovision opens the machine's provisioning window (kube/windows.ts) when the
// cluster runs: another control-plane machine has joined (its kubelet bootstrapped through
// an apiserver), so the apiserver takes tokens and apply may have retired the install
// token. Before that (the first install, a bring-up where no control plane ever came up,
// or the only control-plane machine being reprovisioned) there is no cluster to ask, and
// the machine installs with the token its render already has, which nothing has retired.
import { hasRole, type Spec } from '../spec/types.ts';
import type { Secrets } from '../secrets/types.ts';
import { apiserverPort } from '../plan/phases/control-plane.ts';
import { hasJoined } from '../lifecycle/states.ts';
import type { State } from '../store/states.ts';
import { KubeClient } from '../kube/client.ts';
import { openWindow, type OpenedWindow } from '../kube/windows.ts';

/**
 * The apiservers serve may ask, best first: the VIP, then each joined control-plane machine's
 * own (not `except`'s). `state` is how far each got (lifecycle reached(): one failed after it
 * joined still serves).
 */
export function apiEndpoints(spec: Spec, state: (name: string) => State, except: string): string[] {
  const own = spec.machines.filter((m) => m.name !== except && hasRole(m, 'control-plane') && hasJoined(state(m.name))).map((m) => `https://${m.ip}:${apiserverPort(spec)}`);
  if (!own.length) return [];
  return [...(spec.controlPlane.vip ? [`https://${spec.controlPlane.vip}:${spec.controlPlane.port}`] : []), ...own];
}

export class WindowError extends Error {}

/**
 * A fresh bootstrap token for `name`, in the cluster and recorded, when the cluster runs;
 * undefined when it does not. Throws WindowError (nothing recorded) when the cluster runs
 * but its API cannot create the token: a machine reprovisioned then would install with a
 * token the cluster refuses, and never join.
 */
export async function reprovisionWindow(o: { spec: Spec; secrets: Secrets; stateDir: string; name: string; state: (name: string) => State; timeoutMs?: number }): Promise<OpenedWindow | undefined> {
  const endpoints = apiEndpoints(o.spec, o.state, o.name);
  if (!endpoints.length) return undefined;
  const api = new KubeClient({ endpoints, ca: o.secrets.certs.ca.cert, client: o.secrets.certs.admin, timeoutMs: o.timeoutMs ?? 5_000 });
  try {
    return await openWindow({ stateDir: o.stateDir, spec: o.spec, name: o.name, api });
  } catch (e) {
    throw new WindowError(
      `the cluster runs (control-plane machines joined), but its bootstrap token could not be created: ${(e as Error).message}. ` +
        `Without one it would install with a token the cluster refuses (used or retired), and not join: bring an apiserver back, then reprovision again`,
    );
  }
}
