// The one narrow interface the protocol servers use to ask "what does this MAC get?"
// (Tinkerbell Smee's GetByMac). DHCP, TFTP and HTTP know nothing of clusters; the
// inventory knows the cluster file's machines and, through a state source, whether a
// machine still has to be installed or should boot from its disk.
import type { Machine, Spec } from '../spec/types.ts';
import { normalizeMac } from '../lib/mac.ts';

/** What a machine's next network boot does. */
export type BootAction = 'install' | 'local' | 'ignore' | 'enlist';
export type Protocol = 'dhcp' | 'tftp' | 'http';

export interface Lookup {
  /** the cluster file's machine with this MAC; undefined for an unknown MAC */
  machine?: Machine;
  action: BootAction;
  /** for a known machine told to boot locally: why (the loader shows it) */
  why?: string;
}

export interface Inventory {
  getByMac(mac: string): Lookup;
  /** the machine with this IP (HTTP requests arrive by address) */
  getByIp(ip: string): Machine | undefined;
  /** a protocol saw this MAC (known or not): unknown ones become discovered machines */
  seen(mac: string, via: Protocol, detail?: Record<string, unknown>): void;
}

export interface InventoryOptions {
  /** what unknown MACs get: nothing, "boot from your local disk", or the installer in inventory mode (issue 18) */
  unknown: 'ignore' | 'local' | 'enlist';
  /** whether a known machine still has to be installed (default: always install) */
  actionFor?: (m: Machine) => 'install' | 'local';
  /** why a known machine boots locally (default "<name> is installed") */
  whyLocal?: (m: Machine) => string;
  onSeen?: (mac: string, via: Protocol, machine: Machine | undefined, detail?: Record<string, unknown>) => void;
}


export class SpecInventory implements Inventory {
  private readonly byMac = new Map<string, Machine>();
  private readonly byIp = new Map<string, Machine>();
  private readonly opts: InventoryOptions;

  constructor(spec: Spec, opts: InventoryOptions) {
    this.opts = opts;
    for (const m of spec.machines) {
      this.byMac.set(m.mac, m);
      this.byIp.set(m.ip, m);
    }
  }

  getByMac(mac: string): Lookup {
    const machine = this.byMac.get(normalizeMac(mac));
    if (!machine) return { action: this.opts.unknown };
    const action = this.opts.actionFor?.(machine) ?? 'install';
    return action === 'local' ? { machine, action, why: this.opts.whyLocal?.(machine) } : { machine, action };
  }

  getByIp(ip: string): Machine | undefined {
    return this.byIp.get(ip.replace(/^::ffff:/, ''));
  }

  seen(mac: string, via: Protocol, detail?: Record<string, unknown>): void {
    this.opts.onSeen?.(normalizeMac(mac), via, this.byMac.get(normalizeMac(mac)), detail);
  }
}
