// Which driver speaks to a BMC (one entry per protocol: a Redfish driver is one more
// line), and running one operation on many machines so that one bad BMC never stops
// the others: each machine gets its own result, ok or a named error.
import { ERROR_LABEL, PowerError, type Bmc, type DriverOptions, type PowerDriver, type PowerErrorKind } from './driver.ts';
import { IpmiDriver } from './ipmi.ts';

const DRIVERS: Record<Bmc['protocol'], (bmc: Bmc, opts: DriverOptions) => PowerDriver> = {
  ipmi: (bmc, opts) => new IpmiDriver(bmc, opts),
};

export function driverFor(bmc: Bmc, opts: DriverOptions = {}): PowerDriver {
  return DRIVERS[bmc.protocol](bmc, opts);
}

export type Outcome<T> = { machine: string; ok: true; value: T; ms: number } | { machine: string; ok: false; kind: PowerErrorKind; error: string; ms: number };

/** fn on every machine, at most `parallel` at a time; never rejects. Results in input order. */
export async function forEach<T>(machines: string[], parallel: number, fn: (machine: string) => Promise<T>): Promise<Outcome<T>[]> {
  const out: Outcome<T>[] = new Array(machines.length);
  let next = 0;
  const worker = async () => {
    while (next < machines.length) {
      const i = next++;
      const machine = machines[i]!;
      const t0 = Date.now();
      try {
        out[i] = { machine, ok: true, value: await fn(machine), ms: Date.now() - t0 };
      } catch (e) {
        const kind = e instanceof PowerError ? e.kind : 'failed';
        out[i] = { machine, ok: false, kind, error: (e as Error).message, ms: Date.now() - t0 };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, machines.length)) }, worker));
  return out;
}

export const errorLabel = (k: PowerErrorKind): string => ERROR_LABEL[k];
