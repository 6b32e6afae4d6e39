// The one way Slipway reaches an installed machine after `serve` let it go: the real
// OpenSSH client (ssh(1)), as root, with the provisioner's own key (<state>/ssh/provisioner)
// and only the host key pinned when the machine reported `installed` — never the user's
// ~/.ssh/config, agent or known_hosts.
//
// Exported, stable (day2/ builds on them):
//   SshMachine              { name, address, port?, hostKey }: where and whom to trust
//   SshTransport            new SshTransport({ keyFile, connectTimeoutS?, workDir?, timeoutMs?, ssh? })
//     .run(m, argv | { script }, { timeoutMs?, input?, check? }) → RunResult
//         argv: each word quoted for the remote shell; { script }: sent to `sh -s` on stdin.
//         check (default true): a non-zero exit throws SshError 'command-failed'.
//     .putFiles(m, PutFile[], { timeoutMs? }) → void
//         every file written beside its target, checked by sha256, then all renamed
//         into place (each rename atomic); on any failure nothing is renamed and the
//         temporaries are removed.
//     .close()   removes the known_hosts files it wrote
//   PutFile                 { path (absolute), mode, owner? ('root:root'), contents, link? }
//   RunResult               { code, stdout, stderr }
//   SshError                .kind: 'unreachable' | 'host-key-mismatch' | 'auth-refused'
//                           | 'timeout' | 'command-failed'; .machine; message names both
//   shellQuote(word)        one word for a POSIX shell
//   knownHostsLine(m)       the known_hosts line the transport trusts for m
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SshMachine {
  /** the cluster file's name: the alias its pinned key is filed under */
  name: string;
  address: string;
  port?: number;
  /** the pinned host key: "ssh-ed25519 AAAA..." */
  hostKey: string;
}

export interface PutFile {
  /** absolute path on the machine */
  path: string;
  mode: number;
  /** chown's USER:GROUP; root:root when unset */
  owner?: string;
  contents: string | Buffer;
  /** a symbolic link to this absolute target instead (mode, owner and contents unused) */
  link?: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type SshErrorKind = 'unreachable' | 'host-key-mismatch' | 'auth-refused' | 'timeout' | 'command-failed';

export class SshError extends Error {
  readonly kind: SshErrorKind;
  readonly machine: string;
  readonly result?: RunResult;
  constructor(kind: SshErrorKind, machine: string, message: string, result?: RunResult) {
    super(`${machine}: ${message}`);
    this.name = 'SshError';
    this.kind = kind;
    this.machine = machine;
    this.result = result;
  }
}

export const shellQuote = (w: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

export const knownHostsLine = (m: SshMachine): string => `${m.name} ${m.hostKey.trim().split(/\s+/).slice(0, 2).join(' ')}`;

/** What ssh's own exit 255 means, read from its stderr (OpenSSH's wording). */
export function classifySshFailure(stderr: string): { kind: Exclude<SshErrorKind, 'command-failed' | 'timeout'>; why: string } | undefined {
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|No (?:ED25519 )?host key is known/i.test(stderr))
    return { kind: 'host-key-mismatch', why: 'its SSH host key is not the one pinned when it was installed (a reinstalled machine, or someone else at its address): apply stops; reprovision it if it was reinstalled' };
  if (/Permission denied|Too many authentication failures/i.test(stderr)) return { kind: 'auth-refused', why: "the machine refused the provisioner's SSH key (is it in root's authorized_keys?)" };
  const net = stderr.match(/(Connection refused|Connection timed out|No route to host|Network is unreachable|Could not resolve hostname[^\n]*|Connection closed by[^\n]*|Connection reset[^\n]*|Operation timed out)/i);
  if (net) return { kind: 'unreachable', why: `unreachable over SSH (${net[1]!.trim()})` };
  return undefined;
}

export interface SshTransportOptions {
  /** the provisioner's private key file */
  keyFile: string;
  /** seconds ssh waits for the TCP connection (ConnectTimeout); default 10 */
  connectTimeoutS?: number;
  /** where to write known_hosts files; a private temporary directory when unset */
  workDir?: string;
  /** default per-command limit; default 120 s */
  timeoutMs?: number;
  /** the client to run, default ['ssh']; e.g. ['ip', 'netns', 'exec', NS, 'ssh'] to reach a lab */
  ssh?: string[];
}

export class SshTransport {
  private readonly opts: SshTransportOptions;
  private readonly dir: string;
  private readonly ownDir: boolean;

  constructor(opts: SshTransportOptions) {
    this.opts = opts;
    this.ownDir = !opts.workDir;
    this.dir = opts.workDir ?? mkdtempSync(join(tmpdir(), 'slipway-ssh-'));
  }

  /** Removes the known_hosts files (and the directory, when the transport made it). */
  close(): void {
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }

  private args(m: SshMachine): string[] {
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+/.test(m.hostKey.trim())) throw new SshError('host-key-mismatch', m.name, `no valid host key pinned (${JSON.stringify(m.hostKey.slice(0, 40))})`);
    const known = join(this.dir, `known_hosts.${m.name.replace(/[^A-Za-z0-9_.-]/g, '_')}`);
    writeFileSync(known, knownHostsLine(m) + '\n', { mode: 0o600 });
    return [
      '-F', '/dev/null', // none of the invoking user's ssh_config
      '-i', this.opts.keyFile,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'IdentityAgent=none',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${known}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'UpdateHostKeys=no',
      '-o', `HostKeyAlias=${m.name}`,
      '-o', 'HostKeyAlgorithms=ssh-ed25519',
      '-o', `ConnectTimeout=${this.opts.connectTimeoutS ?? 10}`,
      '-o', 'ServerAliveInterval=5',
      '-o', 'ServerAliveCountMax=3',
      '-o', 'LogLevel=ERROR',
      '-p', String(m.port ?? 22),
      '-l', 'root',
      m.address,
      '--',
    ];
  }

  /** Runs argv (quoted for the remote shell) or a script (on `sh -s`'s stdin) as root on m. */
  run(m: SshMachine, cmd: string[] | { script: string }, o: { timeoutMs?: number; input?: string | Buffer; check?: boolean } = {}): Promise<RunResult> {
    const remote = Array.isArray(cmd) ? cmd.map(shellQuote).join(' ') : 'sh -s';
    const input = Array.isArray(cmd) ? o.input : cmd.script;
    if (!Array.isArray(cmd) && o.input !== undefined) throw new Error('run: a script is its own input');
    const timeoutMs = o.timeoutMs ?? this.opts.timeoutMs ?? 120_000;
    const [bin, ...pre] = this.opts.ssh ?? ['ssh'];
    const args = [...pre, ...this.args(m), remote];
    return new Promise((resolve, reject) => {
      const child = spawn(bin!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => err.push(d));
      child.stdin.on('error', () => {}); // the far end may close early; its exit says why
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new SshError('unreachable', m.name, `could not run ssh: ${e.message} (install openssh-client)`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const r: RunResult = { code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
        if (timedOut) return reject(new SshError('timeout', m.name, `no answer within ${Math.round(timeoutMs / 1000)} s (${Array.isArray(cmd) ? cmd.join(' ') : 'script'}); what it was doing may still be running there`, r));
        if (code === 255) {
          const c = classifySshFailure(r.stderr);
          if (c) return reject(new SshError(c.kind, m.name, c.why, r));
          // 255 is also a remote command's own exit status; ssh says nothing then
          if (r.stderr.trim() && !r.stdout) return reject(new SshError('unreachable', m.name, `ssh failed: ${lastLine(r.stderr)}`, r));
        }
        if (r.code !== 0 && o.check !== false) return reject(new SshError('command-failed', m.name, `${Array.isArray(cmd) ? cmd.join(' ') : 'script'} exited ${r.code}: ${lastLine(r.stderr) || lastLine(r.stdout)}`, r));
        resolve(r);
      });
      child.stdin.end(input ?? '');
    });
  }

  /**
   * Writes every file beside its target (owner and mode set before its content is
   * checked), checks each by sha256, then renames them all into place. A failure before
   * the renames removes the temporaries and leaves every target as it was.
   */
  async putFiles(m: SshMachine, files: PutFile[], o: { timeoutMs?: number } = {}): Promise<void> {
    if (!files.length) return;
    await this.run(m, { script: putScript(files) }, { timeoutMs: o.timeoutMs });
  }
}

const lastLine = (s: string): string => s.trim().split('\n').filter(Boolean).pop() ?? '';

/** The POSIX sh script putFiles sends (exported for tests: it is what the machine runs). */
export function putScript(files: PutFile[]): string {
  const tag = createHash('sha256').update(String(Date.now()) + Math.random()).digest('hex').slice(0, 12);
  const lines = ['set -eu', 'umask 077', 'tmps=""', `trap 'rm -f $tmps' EXIT`];
  const renames: string[] = [];
  files.forEach((f, i) => {
    // plain characters only, so no name ever needs quoting in the script (nor in $tmps)
    if (!/^(\/[A-Za-z0-9_@%+=:,.-]+)+$/.test(f.path) || f.path.split('/').some((p) => p === '..' || p === '.')) throw new Error(`putFiles: ${JSON.stringify(f.path)} is not an absolute path of plain characters`);
    const owner = f.owner ?? 'root:root';
    if (!/^[a-z_][a-z0-9_-]*:[a-z_][a-z0-9_-]*$/.test(owner)) throw new Error(`putFiles: ${f.path}: owner ${JSON.stringify(owner)} is not USER:GROUP`);
    const dir = f.path.slice(0, f.path.lastIndexOf('/')) || '/';
    const tmp = `${dir === '/' ? '' : dir}/.slipway-${tag}-${i}`;
    if (f.link !== undefined) {
      if (!/^(\/[A-Za-z0-9_@%+=:,.-]+)+$/.test(f.link)) throw new Error(`putFiles: ${f.path}: link target ${JSON.stringify(f.link)} is not an absolute path of plain characters`);
      lines.push(`mkdir -p ${dir}`, `tmps="$tmps ${tmp}"`, `ln -s ${f.link} ${tmp}`);
      renames.push(`mv -fT ${tmp} ${f.path}`);
      return;
    }
    const data = typeof f.contents === 'string' ? Buffer.from(f.contents, 'utf8') : f.contents;
    const sum = createHash('sha256').update(data).digest('hex');
    const b64 = data.toString('base64').match(/.{1,76}/g) ?? [];
    lines.push(
      `mkdir -p ${shellQuote(dir)}`,
      `tmps="$tmps ${shellQuote(tmp)}"`,
      `base64 -d > ${shellQuote(tmp)} <<'SLIPWAY_EOF'`,
      ...b64,
      'SLIPWAY_EOF',
      `chown ${owner} ${shellQuote(tmp)}`,
      `chmod ${f.mode.toString(8).padStart(4, '0')} ${shellQuote(tmp)}`,
      `echo '${sum}  '${shellQuote(tmp)} | sha256sum -c --quiet - >/dev/null`,
    );
    renames.push(`mv -fT ${shellQuote(tmp)} ${shellQuote(f.path)}`);
  });
  // everything staged and checked: on disk before the renames make it real
  lines.push('sync', ...renames, 'tmps=""', 'sync');
  return lines.join('\n') + '\n';
}
