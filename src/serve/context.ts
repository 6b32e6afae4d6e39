// What the parts of a running `slipway serve` share (the API, the console, extensions):
// its own module so serve.ts, which builds it, and the routes, which read it, do not
// import each other.
import type { Registry } from 'prom-client';
import type { Lifecycle } from '../lifecycle/lifecycle.ts';
import type { Store, StoredEvent } from '../store/store.ts';
import type { Inventory } from './inventory.ts';
import type { Logger } from './log.ts';
import type { Site } from './site.ts';
import type { Machine } from '../spec/types.ts';
import type { Activity } from './activity.ts';

export interface ServeContext {
  site: () => Site;
  inventory: () => Inventory;
  lifecycle: Lifecycle;
  store: Store;
  registry: Registry;
  log: Logger;
  stateDir: string;
  /**
   * The operator's reprovision: when the cluster runs, a provisioning window (a bootstrap
   * token of its own, created in the cluster; serve/window.ts: throws WindowError, nothing
   * changed, when it cannot be); a new report token for the machine (saved, and carried
   * by its next configuration; the old one is refused from then on); then back to the
   * start, so its next network boot installs again.
   */
  reprovision(name: string, by: string): Promise<{ event: StoredEvent | undefined; window?: { id: string; expires: string } }>;
  /** issue 17: day-2 progress apply posts (activity.ts), told to SSE clients */
  activity: Activity;
  /** issue 18: a machine's BMC (power/, plugged in by the CLI: serve knows no driver); absent: no power control */
  power?: PowerControl;
  /** issue 18: the cluster file (the console's adopt edits it) and serve's re-read of it (SIGHUP's) */
  file?: string;
  reload?: () => Promise<boolean>;
}

/** What the API's power action asks: one action on one machine's BMC, never a throw. */
export type PowerControl = (machine: Machine, action: 'status' | 'on' | 'off' | 'cycle' | 'reset') => Promise<{ ok: true; result: string } | { ok: false; kind: string; error: string }>;
