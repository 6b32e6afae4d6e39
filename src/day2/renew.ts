// `slipway certs renew`: re-issues leaf certificates in the state directory (new keys,
// new not-after, same CA), through the same reconciliation render uses, so every other
// secret stays byte-identical and a refusal (a CA asked for, an unknown id) writes
// nothing. Delivering the new files to the machines is `apply`'s job.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Spec } from '../spec/types.ts';
import { certList } from '../secrets/certlist.ts';
import { certPath } from '../secrets/pki.ts';
import { loadOrCreateSecrets } from '../secrets/store.ts';

export interface Renewed {
  id: string;
  before: Date;
  notAfter: Date;
}

async function notAfter(pki: string, id: string): Promise<Date | undefined> {
  try {
    return new X509Certificate(await readFile(certPath(pki, id), 'utf8')).validToDate;
  } catch {
    return undefined;
  }
}

export async function renewCertificates(stateDir: string, spec: Spec, which: readonly string[] | 'all', log: (s: string) => void, now = Date.now()): Promise<{ pki: string; renewed: Renewed[] }> {
  const pki = join(stateDir, 'pki');
  const leaves = certList(spec).filter((d) => !d.isCA).map((d) => d.id as string);
  const ids = which === 'all' ? leaves : [...new Set(which)];
  // Only an existing PKI is renewed: a state directory without one is the wrong --state.
  const before = new Map<string, Date>();
  for (const id of ids) {
    const d = await notAfter(pki, id);
    if (d) before.set(id, d);
  }
  if (!(await notAfter(pki, 'ca'))) throw new Error(`${stateDir} holds no PKI (no ${certPath(pki, 'ca')}): is it this cluster's state directory (--state)?`);
  await loadOrCreateSecrets(stateDir, spec, { renew: new Set(ids), log, now });
  const renewed: Renewed[] = [];
  for (const id of ids) renewed.push({ id, before: before.get(id) ?? new Date(0), notAfter: (await notAfter(pki, id))! });
  return { pki, renewed };
}
