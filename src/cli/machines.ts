// `slipway machines -f FILE [--discovered] [-o table|json]` (issue 18): what a running
// serve knows: the file's machines with their states, and (--discovered: only them) the
// MACs it saw network-boot that the file does not name, to adopt (`slipway adopt`).
// The discovered list is read a page at a time, as the API hands it out. --history: each
// MAC's facts as it reported them over time (the last 20: enlistments, installed reports).
import { readFile } from 'node:fs/promises';
import { table, type MachineRow } from '../lifecycle/table.ts';
import type { Discovered, StoredFacts } from '../store/store.ts';
import type { Facts } from '../serve/enlist.ts';

/** A discovered MAC as the API lists it: with the facts it enlisted with, if it did. */
export type DiscoveredWithFacts = Discovered & { facts?: StoredFacts & { facts: Facts } };

export class MachinesUsage extends Error {}

export interface MachinesOptions {
  server: string;
  tokenFile: string;
  discoveredOnly: boolean;
  /** each MAC's facts reports, newest first, from /api/v1/facts/{mac} */
  history?: boolean;
  output: 'table' | 'json';
}

/** A MAC's facts reports, newest first (the last 20 serve keeps). */
export async function fetchHistory(server: string, token: string, mac: string): Promise<(StoredFacts & { facts: Facts })[]> {
  const res = await fetch(`${server}/api/v1/facts/${mac}`, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) });
  if (res.status === 401) throw new Error(`${server} refused the API token`);
  if (!res.ok) throw new Error(`${server}/api/v1/facts/${mac}: HTTP ${res.status}`);
  return ((await res.json()) as { history: (StoredFacts & { facts: Facts })[] }).history;
}

/** Every discovered MAC, following the API's pages (bounded: at most 100 pages). */
export async function fetchAll(server: string, token: string): Promise<{ machines: MachineRow[]; discovered: DiscoveredWithFacts[] }> {
  const get = async (q: string) => {
    const res = await fetch(`${server}/api/v1/machines${q}`, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) });
    if (res.status === 401) throw new Error(`${server} refused the API token`);
    if (!res.ok) throw new Error(`${server}/api/v1/machines: HTTP ${res.status}`);
    return (await res.json()) as { machines: MachineRow[]; discovered: DiscoveredWithFacts[]; discoveredNext?: string };
  };
  let page = await get('');
  const machines = page.machines;
  const discovered = [...page.discovered];
  for (let i = 0; page.discoveredNext && i < 100; i++) {
    page = await get(`?after=${encodeURIComponent(page.discoveredNext)}`);
    discovered.push(...page.discovered);
  }
  return { machines, discovered };
}

const GIB = 1024 ** 3;
/** "QEMU Standard PC (Q35), 2 CPUs, 1.0 GiB" */
export function hardware(f: Facts): string {
  const product = [f.dmi.vendor, f.dmi.product].filter(Boolean).join(' ');
  return `${product || 'unknown product'}${f.dmi.serial ? ` #${f.dmi.serial}` : ''}, ${f.cpu.count} CPU${f.cpu.count === 1 ? '' : 's'}, ${(f.memoryBytes / GIB).toFixed(1)} GiB`;
}
/** "/dev/vda 4.0 GiB" per disk */
export function disks(f: Facts): string {
  return f.disks.map((d) => `${d.path} ${(d.size / GIB).toFixed(1)} GiB${d.serial ? ` ${d.serial}` : ''}`).join('; ') || 'none';
}

export async function machinesCommand(opts: MachinesOptions, out: (s: string) => void): Promise<number> {
  let token: string;
  try {
    token = (await readFile(opts.tokenFile, 'utf8')).trim();
  } catch {
    throw new Error(`cannot read the API token ${opts.tokenFile} (slipway serve creates it on first start)`);
  }
  const { machines, discovered } = await fetchAll(opts.server, token);
  // --history: asked only for the MACs that reported facts (the rest have none)
  const history = new Map<string, (StoredFacts & { facts: Facts })[]>();
  if (opts.history)
    for (const mac of [...(opts.discoveredOnly ? [] : machines.filter((m) => (m as MachineRow & { facts?: unknown }).facts).map((m) => m.mac)), ...discovered.filter((d) => d.facts).map((d) => d.mac)])
      history.set(mac, await fetchHistory(opts.server, token, mac));
  const withHistory = <T extends { mac: string }>(x: T) => (opts.history ? { ...x, factsHistory: history.get(x.mac) ?? [] } : x);
  if (opts.output === 'json') {
    out(JSON.stringify(opts.discoveredOnly ? { discovered: discovered.map(withHistory) } : { machines: machines.map(withHistory), discovered: discovered.map(withHistory) }, null, 2));
    return 0;
  }
  if (!opts.discoveredOnly) out(table(machines));
  const rows = [['MAC', 'SEEN VIA', 'FIRST SEEN', 'LAST SEEN', 'ENLISTED', 'HARDWARE', 'DISKS', 'BMC']];
  for (const d of discovered) {
    const f = d.facts?.facts;
    rows.push([d.mac, d.via, d.firstSeen, d.lastSeen, d.facts?.at ?? '-', f ? hardware(f) : '-', f ? disks(f) : '-', f?.bmc?.address || '-']);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  out(`${opts.discoveredOnly ? '' : '\n'}discovered (not in the file; adopt with slipway adopt -f FILE MAC --name NAME --roles ROLES):\n` + rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n'));
  if (opts.history) {
    const lines = [...history].flatMap(([mac, h]) => h.map((f) => `${mac}  ${f.at}  ${f.source.padEnd(9)}  ${hardware(f.facts)}; disks ${disks(f.facts)}${f.facts.bmc?.address ? `; bmc ${f.facts.bmc.address}` : ''}`));
    out(`\nfacts history (newest first, the last 20 per MAC):\n${lines.join('\n') || '(none)'}`);
  }
  return 0;
}
