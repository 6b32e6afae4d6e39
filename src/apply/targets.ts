// Which machines day-2 commands may reach, and how: the states and pinned host keys
// `serve` keeps in <state>/serve.db, and the provisioner key in <state>/ssh/.
//
// Exported, stable (day2/ builds on them):
//   machineTargets(stateDir, spec) → { reachable: Target[], notInstalled: {machine, state}[], unpinned: Machine[] }
//   transportFor(stateDir, opts?)  → SshTransport with the provisioner's key
//   serveDbPath(stateDir)
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine, Spec } from '../spec/types.ts';
import type { State } from '../store/states.ts';
import { SqliteStore } from '../store/sqlite.ts';
import { isInstalled, reached } from '../lifecycle/states.ts';
import { provisionerKeyPath } from '../secrets/store.ts';
import { SshTransport, type SshMachine, type SshTransportOptions } from './ssh.ts';

export const serveDbPath = (stateDir: string): string => join(stateDir, 'serve.db');

export interface Target {
  machine: Machine;
  state: State;
  ssh: SshMachine;
}

export interface Targets {
  /** installed (or further), with a pinned host key: apply may reach these */
  reachable: Target[];
  /** not installed yet: serve gives them the current render when they boot */
  notInstalled: { machine: Machine; state: State }[];
  /** installed but no host key pinned (installed before Slipway pinned keys, or the report is missing) */
  unpinned: { machine: Machine; state: State }[];
}

/** Reads serve's store (never creates it): each machine of the file, sorted into reachable or not. */
export function machineTargets(stateDir: string, spec: Spec): Targets {
  const out: Targets = { reachable: [], notInstalled: [], unpinned: [] };
  const db = serveDbPath(stateDir);
  if (!existsSync(db)) {
    for (const machine of spec.machines) out.notInstalled.push({ machine, state: 'unknown' });
    return out;
  }
  const store = new SqliteStore(db);
  try {
    for (const machine of spec.machines) {
      const state = store.get(machine.name)?.state ?? 'unknown';
      const hostKey = store.hostKey(machine.name);
      // A machine that failed after it was installed (a unit failed) still has its pinned
      // key and its system: apply may be what fixes it.
      if (!isInstalled(reached(store, machine.name))) {
        out.notInstalled.push({ machine, state });
        continue;
      }
      if (!hostKey) out.unpinned.push({ machine, state });
      else out.reachable.push({ machine, state, ssh: { name: machine.name, address: machine.ip, hostKey } });
    }
  } finally {
    store.close();
  }
  return out;
}

/** The transport with the provisioner's key from this state directory. */
export function transportFor(stateDir: string, opts: Omit<SshTransportOptions, 'keyFile'> = {}): SshTransport {
  const keyFile = provisionerKeyPath(stateDir);
  if (!existsSync(keyFile)) throw new Error(`${keyFile} does not exist: render or serve this cluster file with --state ${stateDir} first (it creates the provisioner's SSH key)`);
  return new SshTransport({ ...opts, keyFile });
}

/**
 * A machine the file no longer names (an etcd member being removed), reached at `address`
 * with the host key pinned when it was installed; undefined when none was pinned.
 */
export function formerTarget(stateDir: string, name: string, address: string): SshMachine | undefined {
  const db = serveDbPath(stateDir);
  if (!existsSync(db)) return undefined;
  const store = new SqliteStore(db);
  try {
    const hostKey = store.hostKey(name);
    return hostKey ? { name, address, hostKey } : undefined;
  } finally {
    store.close();
  }
}
