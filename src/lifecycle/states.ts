// The provisioning state machine's rules (the states themselves are store/states.ts: the
// store persists them). A machine only moves forward through STATES; `failed` (with a
// reason) is reachable from any state; the operator's `reprovision` is the one way back
// to the start.
import { STATES, type State } from '../store/states.ts';

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
