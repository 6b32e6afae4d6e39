// The provisioning state machine's rules (the states themselves are store/states.ts: the
// store persists them). A machine only moves forward through STATES; `failed` (with a
// reason) is reachable from any state; the operator's `reprovision` is the one way back
// to the start.
import { STATES, type State } from '../store/states.ts';
import type { Store } from '../store/store.ts';

const rank = (s: State): number => (s === 'failed' ? -1 : STATES.indexOf(s));

/**
 * States whose reports repeat as progress (the installer's "writing image 42%", the
 * installed system's binaries after the installer's `installed`): recorded as events,
 * the state unchanged.
 */
export const PROGRESS_STATES: readonly State[] = ['installing', 'installed'];

/** May a machine in `from` move to `to` by what the servers or the machine report? */
export function canMove(from: State, to: State): boolean {
  if (to === 'failed') return from !== 'failed';
  if (from === 'failed') return false; // only the operator's reprovision leaves failed
  if (from === to) return PROGRESS_STATES.includes(to);
  return rank(to) > rank(from);
}

/** Machines in these states boot from their own disk instead of installing again. */
export const isInstalled = (s: State): boolean => rank(s) >= rank('installed');
/**
 * Machines in these states have been part of the running cluster: their kubelet bootstrapped
 * through an apiserver. A control-plane machine here means there is a cluster to ask.
 */
export const hasJoined = (s: State): boolean => rank(s) >= rank('joined');
export const isTerminal = (s: State): boolean => s === 'ready' || s === 'failed';

/**
 * How far a machine got since its last reprovision: its state, or for `failed` the state
 * it failed in. A unit failing on a joined control-plane machine (OnFailure reports it)
 * leaves its apiserver, etcd member and SSH in the cluster: serve's reprovision window
 * and apply still count it as joined and installed.
 */
export function reached(store: Pick<Store, 'get' | 'recentEvents'>, name: string): State {
  const state = store.get(name)?.state ?? 'unknown';
  if (state !== 'failed') return state;
  // failed is left only by reprovision, so the newest move into it is the one that holds;
  // reports a failed machine keeps sending move nothing and record no event
  const recent = store.recentEvents(name, { limit: 50, maxDetailBytes: 0, withDetail: false }).events;
  for (let i = recent.length - 1; i >= 0; i--) if (recent[i]!.to === 'failed') return recent[i]!.from;
  return state;
}
