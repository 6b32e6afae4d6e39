// The state directory: the one place Slipway keeps what it cannot recompute. Secrets are
// created on the first render and reused after, which is what makes re-rendering
// byte-identical. Layout (all readable by people, all plain PEM/JSON):
//   <state>/              0700
//   <state>/pki/<id>.crt  0644   one per row of certlist.ts; ids with '/' become folders
//   <state>/pki/<id>.key  0600   PKCS#8
//   <state>/pki/sa.key    0600   service-account signing key; sa.pub 0644 (SPKI)
//   <state>/pki/index.json 0644 definition each leaf was issued from (decides reissues)
//   <state>/tokens.json   0600   bootstrap token, encryption key, machine tokens
//   <state>/ssh/provisioner      0600  the provisioner's SSH key (OpenSSH format; `apply`)
//   <state>/ssh/provisioner.pub  0644  its public line, in every machine's authorized_keys
//   <state>/etcd-joins.json      0600  etcd members added to a running cluster (apply; etcd-joins.ts), read only here
//   <state>/bootstrap-tokens.json 0600 bootstrap tokens per provisioning window (apply; bootstrap-tokens.ts), read only here
import { join } from 'node:path';
import type { Spec } from '../spec/types.ts';
import type { Secrets } from './types.ts';
import { certList } from './certlist.ts';
import { readCa, reconcilePki, readServiceAccountKey, ensureServiceAccount, type LoadedCa, type Log } from './pki.ts';
import { checkTokens, parseTokens, reconcileTokens, formatTokens, newMachineToken, type Tokens } from './tokens.ts';
import { newSshKey, parseSshKey } from './ssh-key.ts';
import { readEtcdJoins } from './etcd-joins.ts';
import { readBootstrapTokens } from './bootstrap-tokens.ts';
import { PUBLIC_MODE, SECRET_MODE, dryRunWriter, diskWriter, othersCanRead, readIfExists, type Writer } from './fs.ts';

export interface StoreOptions {
  log?: Log;
  /** clock in ms since the epoch; tests move it to age certificates */
  now?: number;
  /** leaf certificate ids to reissue even if still good (`slipway certs renew`); never a CA */
  renew?: ReadonlySet<string>;
}

async function reconcileTokenFile(w: Writer, file: string, text: string | undefined, machines: string[], log: Log): Promise<Tokens> {
  const { tokens, changes } = reconcileTokens(parseTokens(text, file), machines, file);
  const next = formatTokens(tokens);
  if (next !== text) {
    await w.write(file, next, SECRET_MODE);
    if (text === undefined) log(`created ${file}`);
    else for (const c of changes) log(`${file}: ${c}`);
  } else if (await w.tighten(file)) {
    log(`${file} was readable by others; set it to 0600`);
  }
  return tokens;
}

/** Where the provisioner's SSH private key lives (`slipway apply` connects with it). */
export const provisionerKeyPath = (stateDir: string): string => join(stateDir, 'ssh', 'provisioner');

/** Created once; never replaced (every installed machine trusts it), a damaged one is refused. */
async function ensureProvisionerKey(w: Writer, file: string, text: string | undefined, log: Log): Promise<string> {
  if (text !== undefined) {
    const { publicKey } = parseSshKey(text, file);
    if ((await readIfExists(`${file}.pub`)) !== publicKey + '\n') await w.write(`${file}.pub`, publicKey + '\n', PUBLIC_MODE);
    if (await w.tighten(file)) log(`${file} was readable by others; set it to 0600`);
    return publicKey;
  }
  const key = newSshKey();
  await w.write(file, key.privateKey, SECRET_MODE);
  await w.write(`${file}.pub`, key.publicKey + '\n', PUBLIC_MODE);
  log(`created ${file} (the provisioner's SSH key)`);
  return key.publicKey;
}

async function reconcileState(w: Writer, stateDir: string, spec: Spec, opts: StoreOptions): Promise<Secrets> {
  const log = opts.log ?? (() => {});
  const now = opts.now ?? Date.now();
  const pki = join(stateDir, 'pki');
  const alg = spec.pki.keyAlgorithm;
  const defs = certList(spec);
  const tokensFile = join(stateDir, 'tokens.json');

  // Everything that must never be replaced is read and checked before anything is
  // written, so a refusal leaves the state directory exactly as it was.
  const cas = new Map<string, LoadedCa>();
  for (const def of defs.filter((d) => d.isCA)) {
    const ca = await readCa(pki, def.id, alg, now, log);
    if (ca) cas.set(def.id, ca);
  }
  const saKey = await readServiceAccountKey(pki, alg);
  const tokensText = await readIfExists(tokensFile);
  checkTokens(parseTokens(tokensText, tokensFile), tokensFile);
  const sshKeyFile = provisionerKeyPath(stateDir);
  const sshKeyText = await readIfExists(sshKeyFile);
  if (sshKeyText !== undefined) parseSshKey(sshKeyText, sshKeyFile);
  const records = await readApplyRecords(stateDir);

  if (await w.privateDir(stateDir)) log(`${stateDir} was readable by others; set it to 0700`);
  await w.privateDir(pki);
  const certs = await reconcilePki(w, pki, defs, cas, alg, now, log, opts.renew);
  const serviceAccount = await ensureServiceAccount(w, pki, saKey, alg, log);
  const tokens = await reconcileTokenFile(w, tokensFile, tokensText, spec.machines.map((m) => m.name), log);
  await w.privateDir(join(stateDir, 'ssh'));
  const provisionerSshKey = await ensureProvisionerKey(w, sshKeyFile, sshKeyText, log);
  return { certs, serviceAccount, ...tokens, provisionerSshKey, ...records };
}

/**
 * What apply records beside the PKI (etcd joins, bootstrap tokens per window) as Secrets
 * fields, each absent when empty; serve's reprovision reads them again the same way.
 */
export async function readApplyRecords(stateDir: string): Promise<Pick<Secrets, 'etcdJoins' | 'windowTokens'>> {
  const [etcdJoins, windowTokens] = await Promise.all([readEtcdJoins(stateDir), readBootstrapTokens(stateDir)]);
  return {
    ...(Object.keys(etcdJoins).length ? { etcdJoins } : {}),
    ...(Object.keys(windowTokens.machines).length || windowTokens.retired.length ? { windowTokens } : {}),
  };
}

/** A Writer that only records, in order, what it would do; `replay` then does it on disk. */
function recordingWriter(): { writer: Writer; replay: () => Promise<void> } {
  const ops: (() => Promise<unknown>)[] = [];
  const writer: Writer = {
    write: async (path, data, mode) => void ops.push(() => diskWriter.write(path, data, mode)),
    remove: async (path) => void ops.push(() => diskWriter.remove(path)),
    prune: async (dir) => void ops.push(() => diskWriter.prune(dir)),
    tighten: async (path) => {
      const is = await othersCanRead(path);
      if (is) ops.push(() => diskWriter.tighten(path));
      return is;
    },
    privateDir: async (dir) => {
      ops.push(() => diskWriter.privateDir(dir));
      return othersCanRead(dir);
    },
  };
  return {
    writer,
    replay: async () => {
      for (const op of ops.splice(0)) await op();
    },
  };
}

export interface StagedSecrets {
  /** what the state directory will hold once committed */
  secrets: Secrets;
  /** write what was created or changed (and print what the log was told); once */
  commit(): Promise<void>;
}

/**
 * The secrets for this cluster file, with nothing written yet: `render` and `serve` build
 * the whole plan from them first and commit only when it succeeded, so a file that cannot
 * be rendered leaves the state directory exactly as it was (a CA, once written, can
 * never be replaced silently, so it must not be written for a render that then fails).
 */
export async function stageSecrets(stateDir: string, spec: Spec, opts: StoreOptions = {}): Promise<StagedSecrets> {
  const { writer, replay } = recordingWriter();
  const said: string[] = [];
  const secrets = await reconcileState(writer, stateDir, spec, { ...opts, log: (msg) => said.push(msg) });
  let done = false;
  return {
    secrets,
    async commit() {
      if (done) return;
      done = true;
      await replay();
      for (const msg of said) opts.log?.(msg);
    },
  };
}

/**
 * The secrets for this cluster file: read from stateDir, with whatever is missing or
 * stale created and saved first. Calling it again with the same spec returns
 * byte-identical Secrets. Throws, changing nothing, rather than replace a CA or the
 * service-account key.
 */
export async function loadOrCreateSecrets(stateDir: string, spec: Spec, opts: StoreOptions = {}): Promise<Secrets> {
  const staged = await stageSecrets(stateDir, spec, opts);
  await staged.commit();
  return staged.secrets;
}

/**
 * What loadOrCreateSecrets would return, without writing anything (for `slipway plan`).
 * Whatever it would create or reissue is generated afresh in memory, so those files
 * show up as changed.
 */
export function previewSecrets(stateDir: string, spec: Spec, opts: StoreOptions = {}): Promise<Secrets> {
  return reconcileState(dryRunWriter, stateDir, spec, opts);
}

/**
 * Gives `machine` a new report token, saved in tokens.json (atomically, 0600) before it
 * is returned. A reprovisioned machine gets it with its next configuration, and anything
 * signed with the old one (a replay of the previous install's reports, whose seq
 * counter restarts on a fresh disk) is refused. Every other secret is kept as it is.
 */
export async function rotateMachineToken(stateDir: string, machine: string): Promise<string> {
  const file = join(stateDir, 'tokens.json');
  const text = await readIfExists(file);
  const raw = parseTokens(text, file);
  checkTokens(raw, file);
  const tokens = raw as Partial<Tokens>;
  if (!tokens.bootstrapToken || !tokens.encryptionKey || !tokens.machineTokens || !Object.hasOwn(tokens.machineTokens, machine))
    throw new Error(`${file} has no report token for ${machine} to replace (render or serve the cluster file first)`);
  const token = newMachineToken();
  await diskWriter.write(file, formatTokens({ ...(tokens as Tokens), machineTokens: { ...tokens.machineTokens, [machine]: token } }), SECRET_MODE);
  return token;
}
