// The `slipway` command: a thin edge over the pure core. Exit codes: 0 success,
// 1 the input is invalid or the operation failed, 2 usage error.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseClusterFile, hasErrors, locateProblems } from '../spec/parse.ts';
import { formatProblem } from '../spec/problems.ts';
import { ClusterFileSchema } from '../spec/schema.ts';
import { EXAMPLES, type ExampleShape } from '../spec/examples.ts';
import { provisionerURL, type Spec } from '../spec/types.ts';
import { AdditionConflict, buildPlan, originPath } from '../plan/plan.ts';
import { planTree } from '../render/tree.ts';
import { readTree, writeTreeAtomic } from '../render/write.ts';
import { diffTrees } from '../render/diff.ts';
import { stageSecrets, previewSecrets } from '../secrets/store.ts';
import type { AssetPins, Plan } from '../plan/types.ts';
import { Assets } from '../serve/http/assets.ts';
import { readPins, type PinNote } from '../serve/pins.ts';

class UsageError extends Error {}
/** `plan` found changes to make (as `terraform plan -detailed-exitcode` does, on a code of its own). */
const EXIT_CHANGES = 3;

const USAGE = `Usage: slipway <command> [options]

Commands:
  validate -f FILE                 check a cluster file; every problem as FILE:LINE:COL: path: message
  render   -f FILE -o DIR [--state DIR] [--assets DIR]
                                   write every machine's files, Ignition, cloud-config, install.env
                                   and PXE configs; --assets: pin the binaries (bin/) and OS image
                                   (os/) found there by sha256, as serve does from what it serves
  plan     -f FILE -o DIR [--state DIR] [--assets DIR]
                                   show what render would add, change or remove (writes nothing);
                                   exit 0 when there is no change, 3 when there are changes
  serve    -f FILE [--interface IF] [--state DIR] [--assets DIR] [--bind ADDR]
           [--http-port N] [--unknown ignore|local|enlist] [--enlist-then poweroff|wait]
           [--timeout SECONDS] [--loader ipxe|pxelinux] [--no-rival-check] [--bundle BUNDLE.tar]
                                   serve the machines over DHCP, TFTP and HTTP until stopped;
                                   SIGHUP re-reads the cluster file; --bundle serves its binaries
                                   and OS image under /assets/ and its images as a registry at /v2/;
                                   --unknown enlist: unknown MACs (from the pool) boot the installer,
                                   which reports their NICs, disks, CPU, memory, DMI and BMC address,
                                   then powers off (or waits); nothing is written to their disks
  status   -f FILE [--watch] [--server URL] [--state DIR] [--timeout SECONDS]
                                   machines and their states from a running serve; --watch follows
                                   live until all are ready or failed (and a running apply until it
                                   ends); exit 0 only when all are ready
  power    -f FILE status|on|off|cycle|reset NAME...|--all [--parallel N]
                                   power machines through their BMCs (machines[].bmc, IPMI): a table,
                                   one row per machine; exit 0 only when every machine succeeded
  provision -f FILE NAME...|--all [--parallel N] [--server URL] [--state DIR] [--timeout SECONDS]
                                   through their BMCs: next boot from the network (once), marked for
                                   (re)provisioning in the running serve, power cycled; then followed
                                   until ready or failed; exit 0 only when all are ready
  machines -f FILE [--discovered] [--history] [-o table|json] [--server URL] [--state DIR]
                                   from a running serve: the file's machines and states, and the MACs
                                   it saw network-boot that the file does not name (--discovered: only those),
                                   with the facts the enlisted ones reported (--history: every report
                                   kept, the last 20 per MAC, each with its time and source)
  adopt    -f FILE MAC --name NAME --roles ROLE[,ROLE...] [--ip IP[/PREFIX]] [--server URL] [--state DIR]
           [--bmc-username USER (--bmc-password-file F | --bmc-password-env VAR)] [--no-facts]
                                   add a machine to the cluster file (comments and layout kept; ip
                                   defaults to the next free address; from the facts it enlisted with,
                                   its install disk by a stable /dev/disk/by-id name and its BMC address,
                                   a comment without --bmc-username);
                                   refused, the file untouched, for a MAC already adopted, a name in use
                                   or a file it would invalidate
  rehearse -f FILE [--engine containers|vm] [--binaries DIR] [--keep] [--report FILE.json]
           [--timeout SECONDS] [--fault MACHINE=wrong-mac|failing-unit ...] [--no-kubernetes]
           [--console-port PORT | --no-console]
                                   (root) the whole cluster on a private lab network: containers
                                   (default) boots each machine as a systemd-nspawn container with
                                   real Kubernetes binaries and runs the checks; vm network-boots
                                   each as a QEMU VM through DHCP, iPXE and Ignition (--no-kubernetes:
                                   serve no Kubernetes binaries, their units are reported not
                                   started); the web console follows it at 127.0.0.1:PORT; exit 0
                                   only when every check is ok or not-run for a stated reason
  schema                           print the cluster file's JSON Schema
  init     [--shape single|ha]     print a commented example cluster file
  image    build [-o DIR] [--mirror URL] [-q]
                                   (root) build Slipway's node OS (Debian 12, from Debian's archive
                                   or the mirror) once per set of inputs, cached; print its files,
                                   sizes, sha256 and package count; -o copies the image's files
                                   (vmlinuz, initrd.img, disk.img.zst, os.json, MANIFEST) into DIR
  bundle   create -f FILE -o BUNDLE.tar [--mirror URL | --mirror FROM=URL ...]
           [--platform OS/ARCH ... | --all-platforms] [--os-image DIR]
           [--concurrency N] [--keep-parts] [--dry-run [--json]]
                                   download and check everything the cluster needs into one tar,
                                   with the OS image (--os-image, else the cached build: built
                                   when absent if root) under os/ (resumable: verified downloads
                                   stay in BUNDLE.tar.parts/)
  bundle   inspect BUNDLE.tar [--json]
                                   list a bundle's files and images
  bundle   verify BUNDLE.tar       re-check every digest; exit 1 naming each bad entry
  etcd     snapshot -f FILE -o FILE.db [--state DIR]
                                   a consistent etcd snapshot over TLS from the provisioner (0600,
                                   atomic); prints its revision, key count, hash and sha256
  etcd     status FILE.db          what etcdctl snapshot status says of a snapshot; refuses other files
  etcd     restore -f FILE --from FILE.db [--state DIR] [--yes]
                                   disaster recovery over SSH: every member restored from the snapshot
                                   (previous data kept beside it), etcd and the control plane restarted
                                   and waited for; without --yes only says what it would do
  certs    check -f FILE [--state DIR] [--window DAYS]
                                   the certificates the machines serve (apiserver, etcd, kubelet, the
                                   VIP), hold (files and kubeconfigs, over SSH) and the state holds:
                                   not-after, days left, CA; exit 1 when one is within DAYS (default
                                   30), expired or unreadable
  certs    renew -f FILE [--state DIR] (ID ... | --all) [--yes [--assets DIR]]
                                   re-issue leaf certificates in the state (never a CA); --yes then
                                   delivers them with apply (its rolling order, --assets as apply's)
  apply    -f FILE [--state DIR] [--assets DIR] [--dry-run] [--yes] [--health-timeout SECONDS]
           [--token-ttl HOURS] [--server URL]
                                   deliver the file's changes to installed machines over SSH (the
                                   provisioner's key, host keys pinned at install): changed files
                                   replaced atomically, their units restarted, control-plane/etcd
                                   machines one at a time, each healthy before the next; stops at
                                   the first failure (run again to continue); --dry-run: the plan.
                                   An etcd member added (member add; it starts with existing state)
                                   or removed (drain, delete Node, member remove) first, one per run;
                                   machines left to serve get their own bootstrap token
                                   (spec.pki.bootstrapTokenValidityHours, 24 h by default; --token-ttl
                                   overrides it); each step also shown by the running serve (status
                                   --watch, the console; --server URL if not the file's provisioner)
  drain    NAME -f FILE [--state DIR] [--timeout SECONDS]
                                   cordon and drain a worker (PodDisruptionBudgets respected)
  remove   NAME -f FILE [--state DIR] [--server URL] [--timeout SECONDS]
                                   drain a worker, delete its Node, have serve reprovision it

Exit codes: 0 ok, 1 invalid input or failure, 2 usage error, 3 plan has changes.
State (CAs, keys, tokens) lives in --state, default .slipway/ beside the cluster file.`;

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : s + '\n');

function args<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function need(v: unknown, flag: string): string {
  if (typeof v !== 'string' || v === '') throw new UsageError(`missing ${flag}`);
  return v;
}

/** Read and check a cluster file; prints its problems; returns the Spec or exits 1. */
async function load(file: string): Promise<Spec | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { spec, problems } = parseClusterFile(text, file);
  for (const p of problems) err(formatProblem(p));
  return hasErrors(problems) ? undefined : spec;
}

const stateDirFor = (file: string, state: unknown) => (typeof state === 'string' ? state : join(dirname(resolve(file)), '.slipway'));
const fileOpts = { file: { type: 'string', short: 'f' } } as const;
const renderOpts = { ...fileOpts, out: { type: 'string', short: 'o' }, state: { type: 'string' }, assets: { type: 'string' } } as const;

/**
 * The digests machines are rendered for, from --assets DIR (what serve would offer from
 * it); without it, nothing is pinned and the installer refuses to write a disk.
 */
async function renderPins(dir: string | undefined): Promise<AssetPins | undefined> {
  if (!dir) {
    err('note: no --assets DIR: the binaries and the OS image are not pinned by sha256 in this render (slipway serve pins them from what it serves)');
    return undefined;
  }
  const notes: PinNote[] = [];
  const pins = await readPins([new Assets(dir)], notes);
  for (const n of notes) if (n.level !== 'info') err(`${n.level}: ${n.msg}`);
  return pins;
}

/** -f FILE -o DIR [--state DIR] [--assets DIR], shared by render and plan; undefined when the file is invalid. */
async function renderInputs(argv: string[]): Promise<{ spec: Spec; file: string; dir: string; stateDir: string; pins?: AssetPins } | undefined> {
  const a = args(argv, renderOpts);
  const file = need(a.file, '-f FILE');
  const dir = need(a.out, '-o DIR');
  const spec = await load(file);
  return spec && { spec, file, dir, stateDir: stateDirFor(file, a.state), pins: await renderPins(a.assets) };
}

/** A file the operator adds that Slipway also renders (issue 20): said at the entry's FILE:LINE:COL, exit 1, nothing written. */
class Refused extends Error {}
async function planOrConflict(file: string, plan: () => Plan): Promise<Plan> {
  try {
    return plan();
  } catch (e) {
    if (!(e instanceof AdditionConflict)) throw e;
    const [p] = locateProblems(await readFile(file, 'utf8'), file, [{ severity: 'error', path: originPath(e.origin), message: e.message.slice(e.origin.length + 2), ...(e.also ? { also: originPath(e.also) } : {}) }]);
    err(formatProblem(p!));
    throw new Refused();
  }
}

/** `power` and `provision` (cli/power.ts; issue 18) */
async function powerEntry(cmd: 'power' | 'provision', argv: string[]): Promise<number> {
  const { powerCli, PowerUsage } = await import('./power.ts');
  try {
    return await powerCli(cmd, argv, { load, out, err, stateDir: stateDirFor, server: provisionerURL });
  } catch (e) {
    if (e instanceof PowerUsage) throw new UsageError(e.message);
    throw e;
  }
}

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  async validate(argv) {
    const file = need(args(argv, fileOpts).file, '-f FILE');
    const spec = await load(file);
    if (!spec) return 1;
    // issue 20: the operator's additions against every file Slipway renders, as render and
    // plan check them. The plan needs secrets: made in memory for a state directory that
    // does not exist (nothing is read or written), with the fastest key algorithm, as no
    // path depends on it.
    if (spec.additions) {
      const throwaway = join(tmpdir(), `slipway-validate-${randomUUID()}`, 'state');
      const secrets = await previewSecrets(throwaway, { ...spec, pki: { ...spec.pki, keyAlgorithm: 'ecdsa-p256' } });
      await planOrConflict(file, () => buildPlan(spec, secrets));
    }
    out(`${file}: valid (${spec.machines.length} machines, Kubernetes ${spec.kubernetesVersion})`);
    return 0;
  },

  async render(argv) {
    const r = await renderInputs(argv);
    if (!r) return 1;
    const { spec, dir } = r;
    // The whole plan first, the state directory after: a file that cannot be rendered
    // must not leave a CA or tokens behind (a CA is never replaced silently later).
    const staged = await stageSecrets(r.stateDir, spec, { log: err });
    const tree = planTree(await planOrConflict(r.file, () => buildPlan(spec, staged.secrets, { pins: r.pins })));
    await staged.commit();
    await writeTreeAtomic(dir, tree);
    out(`rendered ${spec.machines.length} machines (${tree.size} files) into ${dir}`);
    return 0;
  },

  async plan(argv) {
    const r = await renderInputs(argv);
    if (!r) return 1;
    const { spec, dir } = r;
    const secrets = await previewSecrets(r.stateDir, spec);
    const changes = diffTrees(await readTree(dir), planTree(await planOrConflict(r.file, () => buildPlan(spec, secrets, { pins: r.pins }))));
    if (changes.length === 0) {
      out(`no changes: ${dir} is up to date`);
      return 0;
    }
    const sign = { add: '+', change: '~', remove: '-' } as const;
    for (const c of changes) out(`${sign[c.kind]} ${c.path}${c.detail ? ` (${c.detail})` : ''}${c.secret ? ' [secret]' : ''}${c.origin ? ` [${c.origin}]` : ''}`);
    const count = (k: string) => changes.filter((c) => c.kind === k).length;
    out(`plan: ${count('add')} to add, ${count('change')} to change, ${count('remove')} to remove`);
    return EXIT_CHANGES;
  },

  async serve(argv) {
    const a = args(argv, {
      ...fileOpts,
      state: { type: 'string' },
      assets: { type: 'string' },
      interface: { type: 'string' },
      bind: { type: 'string' },
      'http-port': { type: 'string' },
      unknown: { type: 'string' },
      'enlist-then': { type: 'string' },
      timeout: { type: 'string' },
      'log-level': { type: 'string' },
      loader: { type: 'string' },
      'no-rival-check': { type: 'boolean' },
      bundle: { type: 'string' },
    });
    const file = need(a.file, '-f FILE');
    const bundle = a.bundle;
    const unknown = a.unknown ?? 'ignore';
    if (unknown !== 'ignore' && unknown !== 'local' && unknown !== 'enlist') throw new UsageError('--unknown must be ignore, local or enlist');
    const enlistThen = a['enlist-then'] ?? 'poweroff';
    if (enlistThen !== 'poweroff' && enlistThen !== 'wait') throw new UsageError('--enlist-then must be poweroff or wait');
    if (a['enlist-then'] !== undefined && unknown !== 'enlist') throw new UsageError('--enlist-then needs --unknown enlist');
    const loader = a.loader ?? 'ipxe';
    if (loader !== 'ipxe' && loader !== 'pxelinux') throw new UsageError('--loader must be ipxe or pxelinux');
    const num = (v: string | undefined, flag: string) => {
      if (v === undefined) return undefined;
      if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a number`);
      return Number(v);
    };
    const { startServe, InvalidClusterFile } = await import('../serve/serve.ts');
    const { newLogger } = await import('../serve/log.ts');
    const log = newLogger({ level: a['log-level'] ?? 'info' });
    let serving;
    try {
      serving = await startServe({
        file,
        stateDir: stateDirFor(file, a.state),
        assetsDir: a.assets,
        bind: a.bind,
        interface: a.interface,
        httpPort: num(a['http-port'], '--http-port'),
        unknown,
        enlistThen,
        loader,
        noRivalCheck: a['no-rival-check'] ?? false,
        // the bundle's registry and assets plug into serve from here: serve knows no bundle
        extension: bundle ? async (l) => (await import('../bundle/serve.ts')).serveBundle(bundle, l) : undefined,
        // issue 18: the API's power action, through the same drivers as `slipway power`
        power: (await import('./power.ts')).servePowerControl,
        timeoutSeconds: num(a.timeout, '--timeout') ?? 3600,
        log,
      });
    } catch (e) {
      if (e instanceof InvalidClusterFile) return 1;
      throw e;
    }
    const s = serving;
    process.on('SIGHUP', () => void s.reload());
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        log.info({ signal: sig }, 'stopping');
        resolve();
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
    await s.close();
    return 0;
  },

  async status(argv) {
    const a = args(argv, { ...fileOpts, watch: { type: 'boolean' }, server: { type: 'string' }, state: { type: 'string' }, 'token-file': { type: 'string' }, timeout: { type: 'string' } });
    const file = need(a.file, '-f FILE');
    const spec = await load(file);
    if (!spec) return 1;
    const { status, defaultTokenFile } = await import('./status.ts');
    const timeout = a.timeout === undefined ? 0 : Number(a.timeout);
    if (!Number.isFinite(timeout) || timeout < 0) throw new UsageError('--timeout must be a number of seconds');
    return status({
      server: a.server ?? provisionerURL(spec),
      tokenFile: a['token-file'] ?? defaultTokenFile(stateDirFor(file, a.state)),
      watch: a.watch ?? false,
      out: process.stdout,
      timeoutSeconds: timeout,
    });
  },

  async power(argv) {
    return powerEntry('power', argv);
  },

  async provision(argv) {
    return powerEntry('provision', argv);
  },

  async machines(argv) {
    const a = args(argv, { ...fileOpts, discovered: { type: 'boolean' }, history: { type: 'boolean' }, output: { type: 'string', short: 'o' }, server: { type: 'string' }, state: { type: 'string' }, 'token-file': { type: 'string' } });
    const file = need(a.file, '-f FILE');
    const output = a.output ?? 'table';
    if (output !== 'table' && output !== 'json') throw new UsageError('-o must be table or json');
    const spec = await load(file);
    if (!spec) return 1;
    const { machinesCommand } = await import('./machines.ts');
    return machinesCommand({ server: a.server ?? provisionerURL(spec), tokenFile: a['token-file'] ?? join(stateDirFor(file, a.state), 'api-token'), discoveredOnly: a.discovered ?? false, history: a.history ?? false, output }, out);
  },

  async adopt(argv) {
    const { adoptCli, AdoptUsage, AdoptRefused } = await import('./adopt.ts');
    try {
      return await adoptCli(argv, out);
    } catch (e) {
      if (e instanceof AdoptUsage) throw new UsageError(e.message);
      if (e instanceof AdoptRefused) {
        err(`slipway adopt: ${e.message}`);
        return 1;
      }
      throw e;
    }
  },

  async rehearse(argv) {
    const a = args(argv, { ...fileOpts, engine: { type: 'string' }, binaries: { type: 'string' }, keep: { type: 'boolean' }, report: { type: 'string' }, timeout: { type: 'string' }, fault: { type: 'string', multiple: true }, 'no-kubernetes': { type: 'boolean' }, 'console-port': { type: 'string' }, 'no-console': { type: 'boolean' } });
    const file = need(a.file, '-f FILE');
    const engine = a.engine ?? 'containers';
    if (engine !== 'containers' && engine !== 'vm') throw new UsageError('--engine must be containers or vm');
    const noKubernetes = a['no-kubernetes'] ?? false;
    if (noKubernetes && engine !== 'vm') throw new UsageError('--no-kubernetes goes with --engine vm (the containers engine rehearses Kubernetes itself)');
    if (noKubernetes && a.binaries) throw new UsageError('--binaries and --no-kubernetes exclude each other');
    const consolePort = a['console-port'] === undefined ? 0 : Number(a['console-port']);
    if (!Number.isInteger(consolePort) || consolePort < 0 || consolePort > 65535) throw new UsageError('--console-port must be a port number (0: any free one)');
    if (a['no-console'] && a['console-port'] !== undefined) throw new UsageError('--console-port and --no-console exclude each other');
    const timeout = a.timeout === undefined ? 900 : Number(a.timeout);
    if (!Number.isInteger(timeout) || timeout <= 0) throw new UsageError('--timeout must be a whole number of seconds');
    const spec = await load(file);
    if (!spec) return 1;
    const { rehearse, parseFaults } = await import('./rehearse.ts');
    let faults;
    try {
      faults = parseFaults(a.fault ?? [], spec, engine);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    return rehearse({ file: resolve(file), spec, engine, binaries: a.binaries && resolve(a.binaries), keep: a.keep ?? false, reportFile: a.report, timeoutSeconds: timeout, faults, noKubernetes, consolePort: a['no-console'] ? false : consolePort, out, err });
  },

  async bundle(argv) {
    const { bundleCommand, BundleUsage } = await import('../bundle/cli.ts');
    try {
      return await bundleCommand(argv, { out, err, load, stderr: process.stderr, uid: process.getuid?.() ?? 0 });
    } catch (e) {
      if (e instanceof BundleUsage) throw new UsageError(e.message);
      throw e;
    }
  },

  async image(argv) {
    const { imageCommand, ImageUsage } = await import('../image/cli.ts');
    try {
      return await imageCommand(argv, { out, err, uid: process.getuid?.() ?? 0 });
    } catch (e) {
      if (e instanceof ImageUsage) throw new UsageError(e.message);
      throw e;
    }
  },

  async etcd(argv) {
    const { etcdCommand, Day2Usage } = await import('./day2.ts');
    try {
      return await etcdCommand(argv, { out, err, load, stateDirFor });
    } catch (e) {
      if (e instanceof Day2Usage) throw new UsageError(e.message);
      throw e;
    }
  },

  async apply(argv) {
    const { applyCommand, ApplyUsage } = await import('./apply.ts');
    try {
      return await applyCommand(argv, { out, err, load, stateDirFor, pins: renderPins, plan: planOrConflict });
    } catch (e) {
      if (e instanceof ApplyUsage) throw new UsageError(e.message);
      throw e;
    }
  },

  async drain(argv) {
    const { nodeCommand, ApplyUsage } = await import('./apply.ts');
    try {
      return await nodeCommand('drain', argv, { out, err, load, stateDirFor, pins: renderPins, plan: planOrConflict });
    } catch (e) {
      if (e instanceof ApplyUsage) throw new UsageError(e.message);
      throw e;
    }
  },

  async remove(argv) {
    const { nodeCommand, ApplyUsage } = await import('./apply.ts');
    try {
      return await nodeCommand('remove', argv, { out, err, load, stateDirFor, pins: renderPins, plan: planOrConflict });
    } catch (e) {
      if (e instanceof ApplyUsage) throw new UsageError(e.message);
      throw e;
    }
  },

  async certs(argv) {
    const { certsCommand, Day2Usage } = await import('./day2.ts');
    try {
      return await certsCommand(argv, { out, err, load, stateDirFor, apply: (a) => COMMANDS.apply!(a) });
    } catch (e) {
      if (e instanceof Day2Usage) throw new UsageError(e.message);
      throw e;
    }
  },

  async schema(argv) {
    args(argv, {});
    out(JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', ...ClusterFileSchema }, null, 2));
    return 0;
  },

  async init(argv) {
    const shape = (args(argv, { shape: { type: 'string' } }).shape ?? 'ha') as string;
    if (!(shape in EXAMPLES)) throw new UsageError(`--shape must be one of: ${Object.keys(EXAMPLES).join(', ')}`);
    out(EXAMPLES[shape as ExampleShape]);
    return 0;
  },
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  const run = COMMANDS[cmd];
  try {
    if (!run) throw new UsageError(`unknown command "${cmd}"`);
    if (rest.includes('-h') || rest.includes('--help')) {
      out(USAGE);
      return 0;
    }
    return await run(rest);
  } catch (e) {
    if (e instanceof Refused) return 1;
    if (e instanceof UsageError) {
      err(`slipway: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    err(`slipway ${cmd}: ${(e as Error).message}`);
    return 1;
  }
}

