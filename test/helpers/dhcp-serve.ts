// Slipway's DHCP server (or its rival check) as a process of its own, so a test can run
// it inside a network namespace (`ip netns exec <ns> node dhcp-serve.ts '<json>'`): a
// socket lives in the namespace of the process that opens it.
//
//   {"serve": {...ServeRequest}}  start the server on the lab spec (examples/lab.yaml, plus
//                                 `machines`); prints {"event":"ready"}, then pino's JSON log
//                                 lines; on SIGTERM prints {"event":"metrics","text":...}
//                                 and exits 0 after closing.
//   {"rival": {...RivalOptions}}  run detectRivalDhcp once; prints {"event":"rival",...}.
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Registry } from 'prom-client';
import { SpecInventory } from '../../src/serve/inventory.ts';
import { detectRivalDhcp, dhcpConfigFromSpec, startDhcpServer, type DhcpServerOptions, type RivalOptions } from '../../src/serve/dhcp/index.ts';
import type { Machine } from '../../src/spec/types.ts';
import { haSpec } from './spec.ts';
import { parseCidr } from '../../src/lib/ipv4.ts';

export interface ServeRequest {
  mode: 'full' | 'proxy';
  pool?: { start: string; end: string };
  /** what unknown MACs get (default ignore) */
  unknown?: 'ignore' | 'local';
  stateDir?: string;
  /** machines added to the lab spec (e.g. on another rack) */
  machines?: Machine[];
  leaseSeconds?: number;
  loader?: 'ipxe' | 'pxelinux';
  /** a wider subnet than the lab's /24 (CIDR), for storms larger than 250 clients */
  subnet?: string;
  /** pino level (default debug, so tests can read drop reasons) */
  logLevel?: string;
}

const line = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

async function serve(r: ServeRequest): Promise<void> {
  const spec = haSpec();
  spec.provisioner.dhcp.mode = r.mode;
  if (r.pool) spec.provisioner.dhcp.pool = r.pool;
  else delete spec.provisioner.dhcp.pool;
  spec.machines.push(...(r.machines ?? []));
  if (r.subnet) spec.provisioner.dhcp.subnet = parseCidr(r.subnet)!;
  const cfg = dhcpConfigFromSpec(spec)!;
  const registry = new Registry();
  const opts: DhcpServerOptions = {
    ...cfg,
    inventory: new SpecInventory(spec, { unknown: r.unknown ?? 'ignore' }),
    registry,
    log: pino({ level: r.logLevel ?? 'debug', base: undefined }, process.stdout),
    ...(r.stateDir ? { stateDir: r.stateDir } : {}),
    ...(r.leaseSeconds ? { leaseSeconds: r.leaseSeconds } : {}),
    ...(r.loader ? { loader: r.loader } : {}),
  };
  const server = await startDhcpServer(opts);
  line({ event: 'ready', address: server.address, proxyAddress: server.proxyAddress });
  process.once('SIGTERM', () => {
    void (async () => {
      line({ event: 'metrics', text: await registry.metrics() });
      await server.close();
      process.exit(0);
    })();
  });
}

async function rival(o: RivalOptions): Promise<void> {
  line({ event: 'rival', ...(await detectRivalDhcp(o)) });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const req = JSON.parse(process.argv[2] ?? '{}') as { serve?: ServeRequest; rival?: RivalOptions };
  const run = req.serve ? serve(req.serve) : req.rival ? rival(req.rival) : Promise.reject(new Error('give {"serve":…} or {"rival":…}'));
  run.catch((e: Error) => {
    console.error(e.stack);
    process.exit(2);
  });
}
