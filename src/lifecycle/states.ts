// The provisioning state machine. A machine only moves forward through STATES;
// `failed` (with a reason) is reachable from any state; the operator's `reprovision`
// is the one way back to the start.
//
//   unknown → discovered → dhcp → booting → config-fetched → installing → installed
//           → joined → ready                      (any) → failed      failed/any → unknown (reprovision)
export const STATES = ['unknown', 'discovered', 'dhcp', 'booting', 'config-fetched', 'installing', 'installed', 'joined', 'ready'] as const;
export type ProgressState = (typeof STATES)[number];
export type State = ProgressState | 'failed';

export const isState = (s: string): s is State => s === 'failed' || (STATES as readonly string[]).includes(s);
const rank = (s: State): number => (s === 'failed' ? -1 : STATES.indexOf(s));

/** May a machine in `from` move to `to` by what the servers or the machine report? */
export function canMove(from: State, to: State): boolean {
  if (to === 'failed') return from !== 'failed';
  if (from === 'failed') return false; // only the operator's reprovision leaves failed
  return rank(to) > rank(from);
}

/** Machines in these states boot from their own disk instead of installing again. */
export const isInstalled = (s: State): boolean => rank(s) >= rank('installed');
export const isTerminal = (s: State): boolean => s === 'ready' || s === 'failed';
