// A simulated boot storm: STORM_MACHINES machines (default 1,000) network-boot from one
// `slipway serve` at once, at most STORM_CONCURRENCY (default 100) in flight. Each does
// what a UEFI machine's firmware and iPXE do: a relayed DHCP DORA for its MAC, TFTP
// snponly.efi, HTTP /ipxe/mac/<mac>.ipxe then /ipxe/<name>.ipxe, then its Ignition from
// its own address (test/helpers/storm-driver.ts checks every answer). Reports the time
// until every machine has its Ignition, per-step p50/p99, failures, and the server's peak
// RSS (VmHWM). serve runs at its default log level with a live SSE client (the console's
// /api/v1/events stream, curl -N) attached for the whole storm; its event count is
// reported. Figures, not assertions.
//
// Topology (all in test namespaces; nothing touches the root namespace):
//   hub (Lab): br0 10.20.30.2 running `slipway serve`; the machines' /24s via 10.20.30.1
//   rack:      eth0 10.20.30.1/24 on br0 (the router); every machine IP as a /32 on mach0
// So the machines are a rack behind a router: the provisioner sees their IPs but no
// neighbour entry for them (Ignition is then checked by source IP alone), and each
// machine's DHCP goes through a relay (giaddr = its own address).
//
// Run (as root): node bench/storm.bench.ts
//   STORM_DHCP_TIMEOUT_MS (default 1000) and STORM_DHCP_ATTEMPTS (default 4): the client's DHCP
//   retransmission; STORM_METRICS=1 prints the server's DHCP/TFTP counters after the storm.
//   STORM_MACHINES=2000 STORM_CONCURRENCY=200 node bench/storm.bench.ts
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from '../test/helpers/serve.ts';
import { Netns } from '../test/helpers/netns.ts';
import { bigClusterFile } from '../test/helpers/spec.ts';
import { percentile } from '../test/helpers/dhcp-load.ts';
import type { MachineResult, Step, StormMachine, StormRequest } from '../test/helpers/storm-driver.ts';

const HELPERS = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'helpers');
const NODE = process.execPath;
const SERVER = '10.20.30.2';
const ROUTER = '10.20.30.1';
const HTTP_PORT = 8080;
const LOADER = 'snponly.efi';
const STEPS: Step[] = ['dhcp', 'tftp', 'script', 'config'];

export interface StormBenchResult {
  machines: number;
  concurrency: number;
  served: number;
  failures: { name: string; step: Step; why: string }[];
  seconds: number;
  steps: Record<Step, { p50: number; p99: number; max: number }>;
  machineP50: number;
  machineP99: number;
  rssIdleMiB: number;
  rssPeakMiB: number;
  startSeconds: number;
  /** events the live SSE client received during the storm */
  sseEvents: number;
}

/** The machines of bigClusterFile(n), as that file names and addresses them. */
function stormMachines(n: number): StormMachine[] {
  const yaml = bigClusterFile(n);
  return [...yaml.matchAll(/\{name: ([a-z0-9-]+), mac: "([0-9a-f:]+)", ip: ([0-9.]+)\/\d+/g)].map((m) => ({ name: m[1]!, mac: m[2]!, ip: m[3]! }));
}

function procKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

export async function benchStorm(n: number, concurrency: number, dhcp: { timeoutMs?: number; attempts?: number } = {}): Promise<StormBenchResult> {
  const machines = stormMachines(n);
  if (machines.length !== n) throw new Error(`parsed ${machines.length} machines from the cluster file, expected ${n}`);
  const t0 = performance.now();
  const lab = Lab.create(bigClusterFile(n));
  let rack: Netns | undefined;
  try {
    // the default log level, as a user starts it (STORM_LOG_LEVEL=warn for the quieter variant)
    await lab.start(process.env.STORM_LOG_LEVEL ? ['--log-level', process.env.STORM_LOG_LEVEL] : []);
    const startSeconds = (performance.now() - t0) / 1000;
    // A live console client: the operator's SSE stream of events, attached for the whole storm.
    const sse = lab.hub.spawn('curl', ['-sSN', '-H', `Authorization: Bearer ${lab.apiToken()}`, `http://${SERVER}:${HTTP_PORT}/api/v1/events`]);
    let sseEvents = 0;
    let sseTail = '';
    sse.stdout?.setEncoding('utf8').on('data', (d: string) => {
      const text = sseTail + d;
      const lines = text.split('\n');
      sseTail = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('data:')) sseEvents++;
    });
    const pid = lab.serve!.pid!;
    const tftpSize = statSync(join(lab.state, 'tftp', LOADER)).size;

    // the rack behind its router
    rack = Netns.create('slipway-storm');
    lab.hub.addVeth('rack0', 'eth0', rack);
    lab.hub.setMaster('rack0', 'br0');
    rack.addAddress('eth0', `${ROUTER}/24`);
    // ARP from the router's own address, as a real router's would be (not from a machine's)
    await rack.exec('sysctl', ['-q', '-w', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv4.conf.eth0.arp_announce=2'], { timeoutMs: 5_000 });
    rack.addDummy('mach0');
    const batch = join(lab.dir, 'rack.ip');
    writeFileSync(batch, machines.map((m) => `address add ${m.ip}/32 dev mach0\n`).join(''));
    rack.ip('-batch', batch);
    // The lab's bridge carries the cluster's whole /16 on-link, so the machines' /24s get
    // more specific routes through the router (10.20.30.0/24, the lab's own, must hold none).
    const nets = [...new Set(machines.map((m) => m.ip.split('.').slice(0, 3).join('.')))];
    if (nets.includes('10.20.30')) throw new Error('machine addresses reach 10.20.30.0/24, the lab segment itself: use fewer machines');
    for (const net of nets) lab.hub.ip('route', 'add', `${net}.0/24`, 'via', ROUTER);

    const rssIdleMiB = procKiB(pid, 'VmRSS') / 1024;
    const req: StormRequest = { server: SERVER, httpPort: HTTP_PORT, tftpFile: LOADER, tftpSize, concurrency, machines, ...(dhcp.timeoutMs ? { dhcpTimeoutMs: dhcp.timeoutMs } : {}), ...(dhcp.attempts ? { dhcpAttempts: dhcp.attempts } : {}) };
    const r = await rack.exec(NODE, [join(HELPERS, 'storm-driver.ts')], { input: JSON.stringify(req), timeoutMs: 600_000 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.code !== 0 || !line.startsWith('{')) throw new Error(`storm driver failed (exit ${r.code}): ${r.out.slice(-3000)}\nserve log:\n${lab.log.slice(-3000)}`);
    const out = JSON.parse(line) as { elapsedMs: number; results: MachineResult[] };
    if (lab.serve!.exitCode !== null) throw new Error(`serve died during the storm (exit ${lab.serve!.exitCode}):\n${lab.log.slice(-3000)}`);
    const rssPeakMiB = procKiB(pid, 'VmHWM') / 1024;
    if (sse.exitCode !== null) throw new Error(`the SSE client was disconnected during the storm (exit ${sse.exitCode})`);
    await new Promise((r) => setTimeout(r, 1500)); // events are committed within a loop turn, synced within 1 s
    const eventsSeen = sseEvents;
    await lab.hub.kill(sse);
    // the provisioner must know the rack only through its router: no neighbour entry for a machine
    const neighbours = lab.hub.ip('neigh', 'show', 'dev', 'br0').split('\n').filter((l) => l.trim() && !l.startsWith(`${ROUTER} `));
    if (neighbours.length) console.error(`warning: the hub has neighbour entries besides the router (the rack is not purely routed):\n${neighbours.slice(0, 5).join('\n')}`);

    const ok = out.results.filter((x) => !x.failed);
    const step = (s: Step) => {
      const xs = out.results.map((x) => x.ms[s]).filter((v): v is number => v !== undefined);
      return { p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs) };
    };
    const perMachine = ok.map((x) => STEPS.reduce((a, s) => a + (x.ms[s] ?? 0), 0));
    const failures = out.results.filter((x) => x.failed).map((x) => ({ name: x.name, ...x.failed! }));
    if (failures.length || process.env.STORM_METRICS) {
      // the server's own view of the storm: DHCP drops and replies, TFTP retransmissions
      const m = await lab.hub.exec('curl', ['-fsS', '-m', '5', `http://${SERVER}:${HTTP_PORT}/metrics`], { timeoutMs: 10_000 });
      console.error(m.stdout.split('\n').filter((l) => /^slipway_(dhcp_(dropped|replies|requests)_total|tftp_[a-z_]*(retrans|timeout|error|transfers)[a-z_]*)\b/.test(l)).join('\n'));
      // UDP the kernel dropped before serve read it (RcvbufErrors), and the rack's side
      const udp = async (ns: Netns) => {
        const l = (await ns.exec('cat', ['/proc/net/snmp'], { timeoutMs: 5_000 })).stdout.split('\n').filter((x) => x.startsWith('Udp:'));
        const [k, v] = [l[0]!.split(/\s+/), l[1]!.split(/\s+/)];
        return k.map((name, i) => `${name}=${v[i]}`).slice(1).join(' ');
      };
      console.error(`hub  UDP: ${await udp(lab.hub)}\nrack UDP: ${await udp(rack)}`);
      console.error(`serve log tail:\n${lab.log.slice(-2000)}`);
    }
    return {
      machines: n,
      concurrency,
      served: ok.length,
      failures,
      // until the last machine had its Ignition (the driver's clock)
      seconds: Math.max(0, ...ok.map((x) => x.doneAtMs ?? 0)) / 1000,
      steps: Object.fromEntries(STEPS.map((s) => [s, step(s)])) as StormBenchResult['steps'],
      machineP50: percentile(perMachine, 50),
      machineP99: percentile(perMachine, 99),
      rssIdleMiB,
      rssPeakMiB,
      startSeconds,
      sseEvents: eventsSeen,
    };
  } finally {
    await rack?.close();
    await lab.close();
  }
}

export function formatStorm(r: StormBenchResult): string {
  const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');
  const out = [
    `Boot storm: ${r.machines} machines behind a relay/router, ${r.concurrency} at once: DHCP DORA, TFTP ${LOADER}, iPXE scripts (MAC, machine), Ignition`,
    `serve started (cluster file of ${r.machines} machines, default log level) in ${r.startSeconds.toFixed(1)} s; a live SSE client on /api/v1/events received ${r.sseEvents} events`,
    '',
    '| machines | served | failures | all served in | machine p50 | machine p99 | serve RSS idle | serve peak RSS |',
    '|---------:|-------:|---------:|--------------:|------------:|------------:|---------------:|---------------:|',
    `| ${r.machines} | ${r.served} | ${r.failures.length} | ${r.seconds.toFixed(2)} s | ${ms(r.machineP50)} ms | ${ms(r.machineP99)} ms | ${r.rssIdleMiB.toFixed(0)} MiB | ${r.rssPeakMiB.toFixed(0)} MiB |`,
    '',
    '| step                            | p50 ms | p99 ms | max ms |',
    '|---------------------------------|-------:|-------:|-------:|',
  ];
  const label: Record<Step, string> = { dhcp: 'DHCP DORA (relayed)', tftp: `TFTP ${LOADER} (blksize 1468)`, script: 'HTTP iPXE scripts (2 GETs)', config: 'HTTP Ignition' };
  for (const s of STEPS) out.push(`| ${label[s].padEnd(31)} | ${ms(r.steps[s].p50).padStart(6)} | ${ms(r.steps[s].p99).padStart(6)} | ${ms(r.steps[s].max).padStart(6)} |`);
  if (r.failures.length) {
    const byWhy = new Map<string, number>();
    for (const f of r.failures) byWhy.set(`${f.step}: ${f.why}`, (byWhy.get(`${f.step}: ${f.why}`) ?? 0) + 1);
    out.push('', 'failures:');
    for (const [why, count] of [...byWhy].sort((a, b) => b[1] - a[1]).slice(0, 10)) out.push(`  ${count} × ${why}`);
  }
  return out.join('\n');
}

if (import.meta.main) {
  const r = await benchStorm(Number(process.env.STORM_MACHINES ?? 1000), Number(process.env.STORM_CONCURRENCY ?? 100), {
    ...(process.env.STORM_DHCP_TIMEOUT_MS ? { timeoutMs: Number(process.env.STORM_DHCP_TIMEOUT_MS) } : {}),
    ...(process.env.STORM_DHCP_ATTEMPTS ? { attempts: Number(process.env.STORM_DHCP_ATTEMPTS) } : {}),
  });
  console.log(formatStorm(r));
  if (r.failures.length) process.exitCode = 1;
}
