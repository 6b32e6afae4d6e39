// The provisioning states a machine record holds: the store's vocabulary (it persists
// them), below the lifecycle, whose rules (lifecycle/states.ts) say how a machine moves.
//
//   unknown → discovered → dhcp → booting → config-fetched → installing → installed
//           → joined → ready                      (any) → failed      failed/any → unknown (reprovision)
export const STATES = ['unknown', 'discovered', 'dhcp', 'booting', 'config-fetched', 'installing', 'installed', 'joined', 'ready'] as const;
export type ProgressState = (typeof STATES)[number];
export type State = ProgressState | 'failed';

export const isState = (s: string): s is State => s === 'failed' || (STATES as readonly string[]).includes(s);
