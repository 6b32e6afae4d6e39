// `slipway serve`: one process serving the rendered cluster over DHCP, TFTP and HTTP.
// It renders the cluster file in memory on start (and again on SIGHUP: a bad file is
// reported and the previous one keeps being served), and keeps machine states in the
// embedded store under the state directory.
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { parseClusterFile } from '../spec/parse.ts';
import { formatProblem } from '../spec/problems.ts';
import type { Spec } from '../spec/types.ts';
import { readApplyRecords, rotateMachineToken, stageSecrets } from '../secrets/store.ts';
import { buildPlan } from '../plan/plan.ts';
import { planTree } from '../render/tree.ts';
import { Lifecycle } from '../lifecycle/lifecycle.ts';
import { SqliteStore } from '../store/sqlite.ts';
import { newRegistry } from './metrics.ts';
import { ensureFdLimit } from './fdlimit.ts';
import type { Logger } from './log.ts';
import { SpecInventory, type Inventory } from './inventory.ts';
import { Site } from './site.ts';
import { Assets } from './http/assets.ts';
import { readPins, type PinNote, type PinSource } from './pins.ts';
import type { AssetPins } from '../plan/types.ts';
import { startTftpServer } from './tftp/server.ts';
import { startDhcpServer, dhcpConfigFromSpec, detectRivalDhcp, type DhcpServer, type DhcpPorts } from './dhcp/index.ts';
import { stageTftpRoot } from './tftp-root.ts';
import { startNtpServer, type NtpServer } from './ntp/server.ts';
import { bootAnswer } from './boot-answers.ts';
import { enlistScript } from './enlist.ts';
import { bootUrls } from '../plan/phases/pxe/boot.ts';
import { givenOf, machineFiles, saveGiven } from '../render/given.ts';
import { coreRoutes, startHttpServer, type Handler, type HttpServer } from './http/server.ts';
import { apiRoutes, DISCOVERED_MAX, DISCOVERED_TTL_MS } from './http/api.ts';
import { renderOffThread } from './render-worker.ts';
import { reprovisionWindow } from './window.ts';
import { ACTIVITY_JOURNAL, Activity, readJournal } from './activity.ts';
import type { PowerControl, ServeContext } from './context.ts';
import { consoleRoutes } from './http/console.ts';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { normalizeMac } from '../lib/mac.ts';

/** The operator's API token: created on first start, 0600 in the state directory. */
export async function ensureApiToken(stateDir: string): Promise<string> {
  const file = join(stateDir, 'api-token');
  try {
    const t = (await readFile(file, 'utf8')).trim();
    if (t) return t;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = randomBytes(32).toString('base64url');
  await writeFile(file, token + '\n', { mode: 0o600, flag: 'wx' });
  return token;
}

export interface ServeOptions {
  file: string;
  stateDir: string;
  assetsDir?: string;
  /** address the servers bind (default all) */
  bind?: string;
  /** the provisioning network's interface (DHCP replies and rival detection) */
  interface?: string;
  /** overrides of the cluster file's/standard ports, for tests and unprivileged runs */
  httpPort?: number;
  tftpPort?: number;
  ntpPort?: number;
  dhcpPorts?: Partial<DhcpPorts>;
  /** what PXE clients are handed: iPXE (default) or PXELINUX over TFTP (guide 01) */
  loader: 'ipxe' | 'pxelinux';
  /** skip the start-up check for another DHCP server on the segment */
  noRivalCheck?: boolean;
  /** what unknown MACs get; `enlist`: the installer in inventory mode (issue 18, enlist.ts) */
  unknown: 'ignore' | 'local' | 'enlist';
  /** after enlisting, the machine powers off (default) or waits */
  enlistThen?: 'poweroff' | 'wait';
  /** seconds a machine may stay in one state before it fails (0 = never) */
  timeoutSeconds: number;
  log: Logger;
  /** extra HTTP handlers tried before the core routes (API, console) */
  handlers?: (ctx: ServeContext) => Handler[];
  /**
   * Opened after the cluster file checked out and before anything binds a port, so its
   * failure is reported at once: more routes tried before the core ones, closed with
   * serve. The CLI plugs `serve --bundle`'s registry and assets in here (serve knows no
   * bundle: layers import downward only).
   */
  extension?: (log: Logger) => Promise<ServeExtension>;
  /** issue 18: machines' BMCs for the API's power action (the CLI plugs power/ in) */
  power?: PowerControl;
}

export interface ServeExtension {
  handlers: Handler[];
  /** the digests of the binaries and OS image it serves, which machines are rendered for (before the assets directory's) */
  pins?: PinSource;
  close(): Promise<void>;
}

export interface Serving extends ServeContext {
  http: HttpServer;
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export class InvalidClusterFile extends Error {}

/** PXELINUX asks for pxelinux.cfg/01-<mac>: install menu, or LOCALBOOT once installed. */
function pxelinuxMenu(path: string, site: () => Site, inventory: Inventory, lifecycle: Lifecycle): Buffer | undefined {
  const m = /^pxelinux\.cfg\/01-([0-9a-f]{2}(?:-[0-9a-f]{2}){5})$/i.exec(path);
  if (!m) {
    const file = path === 'pxelinux.cfg/default' ? site().file('pxe/pxelinux.cfg/default') : undefined;
    return file === undefined ? undefined : Buffer.from(file);
  }
  const answer = bootAnswer('pxelinux', m[1]!, inventory.getByMac(m[1]!));
  if (answer.kind === 'none') return undefined;
  if (answer.kind === 'local') return Buffer.from(answer.body);
  if (answer.kind !== 'install') return undefined; // enlistment is iPXE's only
  lifecycle.observe(answer.machine.name, 'booting', 'tftp', { detail: { path } });
  return Buffer.from(site().pxelinuxConfig(answer.machine.mac)!);
}

/**
 * Time for the machines (their TLS fails on a clock years off). A host that already runs
 * an NTP server on the port keeps it: the machines get time from that one instead.
 */
async function startNtp(address: string, port: number, registry: Registry, log: Logger): Promise<NtpServer | undefined> {
  try {
    return await startNtpServer({ address, port, registry, log });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    log.warn({ address, port }, 'another NTP server already answers on this address: machines get their time from it, not from slipway serve');
    return undefined;
  }
}

/** Guide 03's Q&A: a second DHCP server on the segment breaks installs in confusing ways. */
async function warnAboutRivals(serverIp: string, mode: 'full' | 'proxy', ports: Partial<DhcpPorts> | undefined, log: Logger): Promise<void> {
  const report = await detectRivalDhcp({ ours: [serverIp], localAddress: serverIp, timeoutMs: 3000, ports });
  if (report.error) log.warn({ err: report.error }, 'could not check for other DHCP servers');
  // In proxy mode the site's own DHCP server is expected to offer addresses; only another
  // boot server (a ProxyDHCP offer, or an offer naming a boot file) competes with us.
  const rivals = mode === 'proxy' ? report.rivals.filter((r) => r.proxy || r.bootFile) : report.rivals;
  if (!rivals.length) log.info({ checkedFor: report.mac }, 'no other DHCP server answered on the segment');
  for (const r of rivals)
    log.warn({ serverId: r.serverId, offered: r.yiaddr, proxy: r.proxy }, `ANOTHER DHCP SERVER IS ANSWERING ON THIS SEGMENT (${r.serverId}): machines may boot from it instead of Slipway`);
}

async function readSpec(file: string, log: Logger): Promise<Spec> {
  const { spec, problems } = parseClusterFile(await readFile(file, 'utf8'), file);
  for (const p of problems) (p.severity === 'error' ? log.error.bind(log) : log.warn.bind(log))(formatProblem(p));
  if (!spec) throw new InvalidClusterFile(`${file} is invalid (${problems.filter((p) => p.severity === 'error').length} errors)`);
  return spec;
}

async function renderSite(spec: Spec, stateDir: string, pins: AssetPins, log: Logger): Promise<Site> {
  // committed only once the whole render succeeded (a reload with a bad file changes nothing)
  const staged = await stageSecrets(stateDir, spec, { log: (msg) => log.info(msg) });
  const site = new Site(spec, planTree(buildPlan(spec, staged.secrets, { pins })), staged.secrets, pins);
  await staged.commit();
  return site;
}

export async function startServe(opts: ServeOptions): Promise<Serving> {
  const { log } = opts;
  // HTTP and TFTP are sized from the open-file limit, so neither runs the other out of descriptors
  const fds = await ensureFdLimit(log);
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  const firstSpec = await readSpec(opts.file, log);
  const extension = await opts.extension?.(log);
  // The assets directory, shared by the pins and the HTTP routes (one digest cache).
  const dirAssets = opts.assetsDir ? new Assets(opts.assetsDir) : undefined;
  const pinSources = [extension?.pins, dirAssets].filter((x): x is PinSource => !!x);
  const pinsNow = async () => {
    const notes: PinNote[] = [];
    const pins = await readPins(pinSources, notes);
    for (const n of notes) log[n.level](n.data ?? {}, n.msg);
    return pins;
  };
  let site = await renderSite(firstSpec, opts.stateDir, await pinsNow(), log);
  const store = new SqliteStore(join(opts.stateDir, 'serve.db'));
  const registry = newRegistry();
  const names = (s: Spec) => s.machines.map((m) => m.name);
  const lifecycle = new Lifecycle(store, names(site.spec), { timeoutSeconds: opts.timeoutSeconds });
  const makeInventory = () =>
    new SpecInventory(site.spec, {
      unknown: opts.unknown,
      actionFor: (m) => lifecycle.bootAction(m.name),
      whyLocal: (m) => lifecycle.localReason(m.name),
      onSeen: (mac, via, machine, detail) => {
        if (!machine) {
          // Grouped into the loop turn's commit; at debug: a storm of unknown MACs would
          // otherwise write a line per packet (`slipway machines` lists them).
          store.recordDiscovered(mac, via, detail);
          log.debug({ mac, via }, 'unknown machine seen');
        } else if (via === 'dhcp') lifecycle.observe(machine.name, 'dhcp', 'dhcp', { detail });
      },
    });
  let inventory = makeInventory();
  // issue 18: an unknown machine gets an address only from the pool (or another server's, in proxy mode)
  if (opts.unknown === 'enlist' && firstSpec.provisioner.dhcp.mode === 'full' && !firstSpec.provisioner.dhcp.pool)
    log.warn('--unknown enlist without provisioner.dhcp.pool: unknown machines get no address from this server, so cannot enlist');
  // Whatever replaces the site (a reload, a reprovision's new token) runs one at a time.
  let swapping: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = swapping.then(fn, fn);
    swapping = run.catch(() => {});
    return run;
  };
  const reprovision = (name: string, by: string) =>
    exclusive(async () => {
      // Its provisioning window first (a bootstrap token of its own, created in the cluster
      // and recorded; refused, nothing changed, when the running cluster cannot take it),
      // then its report token (on disk), then the render carrying both, then the state: by
      // the time the machine may fetch its configuration again, it has them.
      const base = site;
      const window = await reprovisionWindow({ spec: base.spec, secrets: base.secrets, stateDir: opts.stateDir, name, state: (n) => lifecycle.reached(n) });
      if (window) log.info({ machine: name, token: window.token.id, expires: window.token.expires, deleted: window.removed }, 'provisioning window: a bootstrap token of its own, created in the cluster');
      for (const w of window?.warnings ?? []) log.warn({ machine: name }, w);
      const token = await rotateMachineToken(opts.stateDir, name);
      // what apply (or remove) recorded since the last render: the machine's bootstrap
      // token for this window (the one it had was used, and deleted from the cluster), an
      // etcd join; without them it would install with credentials the cluster refuses
      const { windowTokens: _w, etcdJoins: _j, ...rest } = base.secrets;
      const secrets = { ...rest, machineTokens: { ...base.secrets.machineTokens, [name]: token }, ...(await readApplyRecords(opts.stateDir)) };
      site = new Site(base.spec, await renderOffThread(base.spec, secrets, base.pins), secrets, base.pins);
      return { event: lifecycle.reprovision(name, by), ...(window ? { window: window.token } : {}) };
    });
  // apply's latest runs, from the state's journal: they outlive a restart of serve
  const activity = new Activity();
  try {
    const journal = readJournal(opts.stateDir);
    activity.restore(journal.events);
    if (journal.skipped) log.warn({ skipped: journal.skipped, file: join(opts.stateDir, ACTIVITY_JOURNAL) }, 'skipped journal lines that are not activity events');
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'could not read the activity journal: earlier day-2 runs are not shown');
  }
  const ctx: ServeContext = { site: () => site, inventory: () => inventory, lifecycle, store, registry, log, stateDir: opts.stateDir, reprovision, power: opts.power, activity, file: opts.file, reload: () => serving.reload() };
  // Unknown MACs age out, and their number is capped (anyone on the segment can make up MACs).
  const pruneDiscovered = () => {
    const gone = store.pruneDiscovered(new Date(Date.now() - DISCOVERED_TTL_MS).toISOString(), DISCOVERED_MAX);
    if (gone) log.info({ forgotten: gone }, 'forgot unknown MACs not seen for a while');
    // enlisted facts too (the file's machines' kept: adopted ones may not have installed yet)
    const factsGone = store.pruneFacts(DISCOVERED_MAX, site.spec.machines.map((m) => normalizeMac(m.mac)));
    if (factsGone) log.info({ forgotten: factsGone }, 'forgot the facts of the least recently enlisted unknown MACs');
  };
  pruneDiscovered();
  const pruner = setInterval(pruneDiscovered, 10 * 60_000);
  pruner.unref();
  // Loaders are also served over HTTP at /assets/ipxe/ (UEFI HTTP boot fetches ipxe.efi).
  const tftpRoot = await stageTftpRoot(opts.stateDir, opts.assetsDir, log);
  const loaders = new Assets(tftpRoot, 'ipxe/');
  const assets = dirAssets ?? loaders;
  if (assets !== loaders) assets.fallback = loaders;
  const operatorToken = await ensureApiToken(opts.stateDir);
  const handlers = [
    apiRoutes(ctx, { operatorToken, machineTokens: () => site.machineTokens }),
    consoleRoutes(),
    ...(opts.handlers?.(ctx) ?? []),
    ...(extension?.handlers ?? []),
    coreRoutes({ site: ctx.site, inventory: ctx.inventory, lifecycle, assets, log, registry, ready: () => ready,
      ...(opts.unknown === 'enlist' ? { enlistScript: (mac: string) => {
        const u = bootUrls(site.spec);
        return enlistScript(ctx, mac, { kernel: u.kernel, initrd: u.initrd, enlistUrl: `${u.base}/api/v1/enlist`, then: opts.enlistThen ?? 'poweroff' });
      } } : {}),
      configServed: (name) => saveGiven(opts.stateDir, name, givenOf(machineFiles(site.tree, name))) })];
  /** /readyz answers 200 once TFTP and DHCP serve too (HTTP comes up first) */
  let ready = false;
  const http = await startHttpServer({ address: opts.bind, port: opts.httpPort ?? site.spec.provisioner.httpPort, handlers, log, registry, maxConnections: fds.httpConnections });
  log.info({ port: http.port, machines: site.spec.machines.length }, 'http serving');

  // DHCP and TFTP ask the current inventory through this, so a reload needs no restart
  // for machine changes; address plans (subnet, pool, mode) restart the DHCP server.
  const liveInventory: Inventory = {
    getByMac: (mac) => inventory.getByMac(mac),
    getByIp: (ip) => inventory.getByIp(ip),
    seen: (mac, via, detail) => inventory.seen(mac, via, detail),
  };
  const tftp = await startTftpServer({
    root: tftpRoot,
    // The provisioner's own address: Node cannot tell which local address a datagram came
    // in on, so on a multi-homed host replies must leave from the address clients asked.
    address: opts.bind ?? site.spec.provisioner.address,
    port: opts.tftpPort ?? 69,
    resolve: (path) => pxelinuxMenu(path, () => site, liveInventory, lifecycle),
    inventory: liveInventory,
    log: log.child({ svc: 'tftp' }),
    registry,
    maxTransfers: fds.tftpTransfers,
  });
  const ntp = await startNtp(opts.bind ?? site.spec.provisioner.address, opts.ntpPort ?? 123, registry, log.child({ svc: 'ntp' }));
  const startDhcp = async (): Promise<DhcpServer | undefined> => {
    const cfg = dhcpConfigFromSpec(site.spec);
    if (!cfg) {
      log.info('dhcp: mode off (use the exported dhcpd.conf, kea-dhcp4.json or dnsmasq.conf)');
      return undefined;
    }
    // Check the segment before answering on it: afterwards our own server would answer
    // the probe and record its made-up MAC as a discovered machine.
    if (!opts.noRivalCheck) await warnAboutRivals(cfg.serverIp, cfg.mode, opts.dhcpPorts, log);
    // Always 0.0.0.0: a socket bound to a unicast address never hears the broadcasts of
    // clients that have no address yet (the server picks the outgoing interface itself).
    return startDhcpServer({ ...cfg, loader: opts.loader, inventory: liveInventory, stateDir: opts.stateDir, ports: opts.dhcpPorts, registry, log: log.child({ svc: 'dhcp' }) });
  };
  let dhcp = await startDhcp();
  ready = true;

  const timer = opts.timeoutSeconds ? setInterval(() => lifecycle.checkTimeouts(), Math.min(opts.timeoutSeconds * 250, 10_000)) : undefined;
  timer?.unref();

  const serving: Serving = {
    ...ctx,
    http,
    reload: () => exclusive(async () => {
      try {
        // the assets are read again too: a reload is how changed binaries or a new OS image reach the renders
        const next = await renderSite(await readSpec(opts.file, log), opts.stateDir, await pinsNow(), log);
        const addressPlanChanged = JSON.stringify(dhcpConfigFromSpec(next.spec)) !== JSON.stringify(dhcpConfigFromSpec(site.spec));
        site = next;
        lifecycle.setMachines(names(site.spec));
        inventory = makeInventory();
        if (addressPlanChanged) {
          await dhcp?.close();
          dhcp = await startDhcp();
        }
        log.info({ machines: site.spec.machines.length }, 'cluster file reloaded');
        return true;
      } catch (e) {
        log.error({ err: (e as Error).message }, 'reload failed: still serving the previous cluster file');
        return false;
      }
    }),
    async close() {
      if (timer) clearInterval(timer);
      clearInterval(pruner);
      await Promise.all([http.close(), tftp.close(), dhcp?.close(), ntp?.close()]);
      await extension?.close();
      store.close();
    },
  };
  return serving;
}
