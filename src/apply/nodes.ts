// Taking a worker out of the cluster: cordon and drain it (kubectl's eviction API, so
// PodDisruptionBudgets are respected), delete its Node, and have serve reprovision the
// machine. kubectl runs on a control-plane machine over SSH, with that machine's own
// admin.conf and kubectl (both rendered there), so the provisioner needs neither.
import { rm } from 'node:fs/promises';
import { hasRole, type Machine } from '../spec/types.ts';
import { givenPath } from '../render/given.ts';
import type { SshTransport } from './ssh.ts';
import type { Target, Targets } from './targets.ts';

const KUBECTL = ['/opt/bin/kubectl', '--kubeconfig', '/etc/kubernetes/admin.conf'];

/** Why `name` may not be drained or removed as a worker; undefined when it may. */
export function workerRefusal(machines: Machine[], name: string): string | undefined {
  const m = machines.find((x) => x.name === name);
  if (!m) return `${name} is not a machine of the cluster file`;
  if (hasRole(m, 'control-plane') || hasRole(m, 'etcd'))
    return `${name} is a ${m.roles.filter((r) => r !== 'worker').join(' and ')} machine: drain and remove take workers only; a control-plane/etcd machine leaves by the membership steps (docs/day2.md) [rule workers-only]`;
  return undefined;
}

/** The control-plane machine kubectl runs on: the first reachable one in file order. */
export function kubectlHost(targets: Targets): Target | undefined {
  return targets.reachable.find((t) => hasRole(t.machine, 'control-plane'));
}

export async function drainNode(ssh: SshTransport, via: Target, name: string, timeoutS: number, out: (l: string) => void): Promise<void> {
  out(`${name}: cordon and drain (on ${via.machine.name}; PodDisruptionBudgets respected, at most ${timeoutS} s)`);
  const r = await ssh.run(via.ssh, [...KUBECTL, 'drain', name, '--ignore-daemonsets', '--delete-emptydir-data', `--timeout=${timeoutS}s`], { timeoutMs: (timeoutS + 60) * 1000 });
  for (const l of r.stdout.trim().split('\n').filter(Boolean)) out(`${name}:   ${l}`);
}

export async function deleteNode(ssh: SshTransport, via: Target, name: string, out: (l: string) => void): Promise<void> {
  out(`${name}: delete Node`);
  await ssh.run(via.ssh, [...KUBECTL, 'delete', 'node', name, '--ignore-not-found', '--wait=true'], { timeoutMs: 120_000 });
}

/**
 * Asks the running serve to reprovision the machine (its next network boot installs it);
 * serve opens its provisioning window (`window`: the new bootstrap token's id and expiry)
 * when the cluster runs.
 */
export async function reprovision(serverUrl: string, token: string, name: string): Promise<{ window?: { id: string; expires: string } }> {
  const res = await fetch(`${serverUrl}/api/v1/machines/${encodeURIComponent(name)}/reprovision`, { method: 'POST', headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  if (!res.ok) {
    let msg = text.trim().slice(0, 600);
    try {
      msg = (JSON.parse(text) as { error?: string }).error ?? msg;
    } catch {
      // not JSON
    }
    throw new Error(`serve answered ${res.status}: ${msg}`);
  }
  return JSON.parse(text) as { window?: { id: string; expires: string } };
}

/** The machine is no longer configured as it was: apply must not compare it with an old record. */
export const forgetGiven = (stateDir: string, name: string): Promise<void> => rm(givenPath(stateDir, name), { force: true });
