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
import { loadOrCreateSecrets } from '../secrets/store.ts';
import { buildPlan } from '../plan/plan.ts';
import { planTree } from '../render/tree.ts';
import { Lifecycle } from '../lifecycle/lifecycle.ts';
import { SqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { newRegistry } from './metrics.ts';
import type { Logger } from './log.ts';
import { SpecInventory, type Inventory } from './inventory.ts';
import { Site } from './site.ts';
import { Assets } from './http/assets.ts';
import { coreRoutes, startHttpServer, type Handler, type HttpServer } from './http/server.ts';
import { apiRoutes } from './http/api.ts';
import { consoleRoutes } from './http/console.ts';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';

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
  /** what unknown MACs get */
  unknown: 'ignore' | 'local';
  /** seconds a machine may stay in one state before it fails (0 = never) */
  timeoutSeconds: number;
  log: Logger;
  /** extra HTTP handlers tried before the core routes (API, console) */
  handlers?: (ctx: ServeContext) => Handler[];
}

export interface ServeContext {
  site: () => Site;
  inventory: () => Inventory;
  lifecycle: Lifecycle;
  store: Store;
  registry: Registry;
  log: Logger;
  stateDir: string;
}

export interface Serving extends ServeContext {
  http: HttpServer;
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export class InvalidClusterFile extends Error {}

async function renderSite(file: string, stateDir: string, log: Logger): Promise<Site> {
  const { spec, problems } = parseClusterFile(await readFile(file, 'utf8'), file);
  for (const p of problems) (p.severity === 'error' ? log.error.bind(log) : log.warn.bind(log))(formatProblem(p));
  if (!spec) throw new InvalidClusterFile(`${file} is invalid (${problems.filter((p) => p.severity === 'error').length} errors)`);
  const secrets = await loadOrCreateSecrets(stateDir, spec, { log: (msg) => log.info(msg) });
  return new Site(spec, planTree(buildPlan(spec, secrets)), secrets.machineTokens);
}

export async function startServe(opts: ServeOptions): Promise<Serving> {
  const { log } = opts;
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  let site = await renderSite(opts.file, opts.stateDir, log);
  const store = new SqliteStore(join(opts.stateDir, 'serve.db'));
  const registry = newRegistry();
  const names = (s: Spec) => s.machines.map((m) => m.name);
  const lifecycle = new Lifecycle(store, names(site.spec), { timeoutSeconds: opts.timeoutSeconds });
  const makeInventory = () =>
    new SpecInventory(site.spec, {
      unknown: opts.unknown,
      actionFor: (m) => lifecycle.bootAction(m.name),
      onSeen: (mac, via, machine, detail) => {
        if (!machine) {
          store.recordDiscovered(mac, via, detail);
          log.info({ mac, via }, 'unknown machine seen');
        } else if (via === 'dhcp') lifecycle.observe(machine.name, 'dhcp', 'dhcp', { detail });
      },
    });
  let inventory = makeInventory();
  const ctx: ServeContext = { site: () => site, inventory: () => inventory, lifecycle, store, registry, log, stateDir: opts.stateDir };
  const assets = opts.assetsDir ? new Assets(opts.assetsDir) : undefined;
  const operatorToken = await ensureApiToken(opts.stateDir);
  const handlers = [
    apiRoutes(ctx, { operatorToken, machineTokens: () => site.machineTokens }),
    consoleRoutes(),
    ...(opts.handlers?.(ctx) ?? []),
    coreRoutes({ site: ctx.site, inventory: ctx.inventory, lifecycle, assets, log, registry })];
  const http = await startHttpServer({ address: opts.bind, port: opts.httpPort ?? site.spec.provisioner.httpPort, handlers, log, registry });
  log.info({ port: http.port, machines: site.spec.machines.length }, 'http serving');

  const timer = opts.timeoutSeconds ? setInterval(() => lifecycle.checkTimeouts(), Math.min(opts.timeoutSeconds * 250, 10_000)) : undefined;
  timer?.unref();

  return {
    ...ctx,
    http,
    async reload() {
      try {
        site = await renderSite(opts.file, opts.stateDir, log);
        lifecycle.setMachines(names(site.spec));
        inventory = makeInventory();
        log.info({ machines: site.spec.machines.length }, 'cluster file reloaded');
        return true;
      } catch (e) {
        log.error({ err: (e as Error).message }, 'reload failed: still serving the previous cluster file');
        return false;
      }
    },
    async close() {
      if (timer) clearInterval(timer);
      await http.close();
      store.close();
    },
  };
}
