// What Slipway asks of a machine's BMC, whatever protocol it speaks. A driver is one
// module (ipmi.ts today; Redfish would be one more beside it) returning this interface;
// drivers.ts picks it from the machine's `bmc.protocol`.
import type { BmcSpec } from '../spec/types.ts';

export type PowerState = 'on' | 'off';
export type PowerAction = 'status' | 'on' | 'off' | 'cycle' | 'reset';
export const POWER_ACTIONS: readonly PowerAction[] = ['status', 'on', 'off', 'cycle', 'reset'];
export type BootDevice = 'pxe' | 'disk';

/**
 * Why a BMC operation failed, in the operator's words:
 * - unreachable: the network said no (no route, nothing listening on the port)
 * - auth: the BMC refused the user name or password
 * - cipher: the BMC does not offer the cipher suite asked for
 * - timeout: nothing answered in time (a BMC that never answers, a host that is not there)
 * - password: the password could not be read here (file gone, environment variable unset)
 * - failed: the BMC answered but refused or failed the command
 */
export type PowerErrorKind = 'unreachable' | 'auth' | 'cipher' | 'timeout' | 'password' | 'failed';

export const ERROR_LABEL: Record<PowerErrorKind, string> = {
  unreachable: 'unreachable',
  auth: 'authentication refused',
  cipher: 'unsupported cipher',
  timeout: 'timeout',
  password: 'password unavailable',
  failed: 'command failed',
};

export class PowerError extends Error {
  readonly kind: PowerErrorKind;
  constructor(kind: PowerErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

export interface PowerDriver {
  status(): Promise<PowerState>;
  on(): Promise<void>;
  off(): Promise<void>;
  /** off, then on (on alone when the machine is off: the BMC refuses a cycle of a machine that is off) */
  cycle(): Promise<void>;
  /** a hard reset of a running machine */
  reset(): Promise<void>;
  /** the device the machine boots from next (once: only the next boot; else until changed) */
  setNextBoot(device: BootDevice, once: boolean): Promise<void>;
}

export interface DriverOptions {
  /** attempts per operation for errors worth retrying (timeout, unreachable); at least 1 */
  attempts?: number;
  /** seconds for one attempt, all of the tool's own retransmissions included */
  attemptTimeoutSeconds?: number;
  /** the environment passwords are read from (passwordEnv); default process.env */
  env?: NodeJS.ProcessEnv;
}

/** A BMC as a driver sees it: where, who, how the password is found. */
export type Bmc = BmcSpec & { machine: string };
