// IPMI v2.0 over LAN (RMCP+, "lanplus"), through the field's own tool, ipmitool. The
// password reaches ipmitool only in its environment (-E reads IPMI_PASSWORD): argv is
// readable by every user on the host (ps), the environment only by the same user.
// Errors are sorted into the kinds an operator acts on (driver.ts) from ipmitool's
// verbose messages, and a silent BMC is told from an unreachable one by an RMCP ping.
import { spawn } from 'node:child_process';
import { PowerError, type Bmc, type BootDevice, type DriverOptions, type PowerDriver, type PowerState } from './driver.ts';
import { readPassword } from './password.ts';
import { rmcpPing } from './rmcp.ts';

export const IPMITOOL = 'ipmitool';
/** ipmitool's own retransmissions within one attempt: -R retries, -N seconds apart */
const TOOL_RETRIES = 2;
const TOOL_INTERVAL_S = 1;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  spawnError?: string;
}

/** ipmitool's argv for one command on this BMC: never a password (-E: from the environment). */
export function ipmitoolArgs(bmc: Bmc, command: string[]): string[] {
  return ['-I', 'lanplus', '-H', bmc.address, '-p', String(bmc.port), '-U', bmc.username, '-E', '-C', String(bmc.cipher), '-L', 'OPERATOR', '-N', String(TOOL_INTERVAL_S), '-R', String(TOOL_RETRIES), '-v', ...command];
}

function run(args: string[], password: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    // only what ipmitool needs: IPMITOOL_PASSWORD from the caller's environment would win over ours
    const child = spawn(IPMITOOL, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', IPMI_PASSWORD: password }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr, timedOut, spawnError: (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${IPMITOOL} is not installed (Debian: apt-get install ipmitool)` : e.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

/** The last meaningful line of ipmitool's complaint, for a message. */
function gist(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !/^Loading IANA PEN Registry/.test(l) && !/^Error: Unable to establish IPMI v2/.test(l) && !/^>/.test(l));
  return lines[0] ?? text.trim().split('\n').pop() ?? '';
}

/** Sort a failed run into an error kind; 'silent' means: ask the network (rmcpPing). */
export function classify(r: Run, bmc: Bmc): PowerError | 'silent' {
  const where = `${bmc.machine}: BMC ${bmc.address}:${bmc.port}`;
  const t = r.stderr + '\n' + r.stdout;
  if (r.spawnError) return new PowerError('failed', `${where}: ${r.spawnError}`);
  if (r.timedOut) return new PowerError('timeout', `${where}: no answer within the attempt's time limit`);
  if (/invalid (authentication|integrity|confidentiality) algorithm|no matching cipher suite|unsupported cipher suite|cipher suite \d+ (is )?not supported/i.test(t))
    return new PowerError('cipher', `${where} does not offer cipher suite ${bmc.cipher} (${gist(t)}); set bmc.cipher to one it does (3 or 17)`);
  if (/HMAC is invalid|unauthorized name|invalid name|invalid role|invalid user ?name|password.*(incorrect|invalid)|Authentication (type|failure)|insufficient privilege/i.test(t))
    return new PowerError('auth', `${where} refused user ${JSON.stringify(bmc.username)} or its password (${gist(t)})`);
  if (/Could not open socket|Address lookup for .* failed|Name or service not known/i.test(t)) return new PowerError('unreachable', `${where}: ${gist(t)}`);
  if (/Get Auth Capabilities error|Get Channel Authentication Capabilities|No response|Unable to establish IPMI v2|timeout/i.test(t)) return 'silent';
  return new PowerError('failed', `${where}: ${gist(t) || `ipmitool exited ${r.code}`}`);
}

export class IpmiDriver implements PowerDriver {
  private readonly attempts: number;
  private readonly attemptMs: number;
  private readonly env: NodeJS.ProcessEnv;
  readonly bmc: Bmc;

  constructor(bmc: Bmc, opts: DriverOptions = {}) {
    this.bmc = bmc;
    this.attempts = Math.max(1, Math.min(opts.attempts ?? 3, 10));
    this.attemptMs = (opts.attemptTimeoutSeconds ?? 15) * 1000;
    this.env = opts.env ?? process.env;
  }

  /** One ipmitool command, retried (bounded) while the error is one a retry can cure. */
  private async ipmitool(command: string[]): Promise<string> {
    const password = await readPassword(this.bmc, this.env);
    let last: PowerError | undefined;
    for (let i = 0; i < this.attempts; i++) {
      const r = await run(ipmitoolArgs(this.bmc, command), password, this.attemptMs);
      if (r.code === 0) return r.stdout;
      let e = classify(r, this.bmc);
      if (e === 'silent') {
        const ping = await rmcpPing(this.bmc.address, this.bmc.port, 1500);
        const where = `${this.bmc.machine}: BMC ${this.bmc.address}:${this.bmc.port}`;
        e =
          ping === 'refused' ? new PowerError('unreachable', `${where}: nothing listens there (ICMP port unreachable)`)
          : ping === 'no-route' ? new PowerError('unreachable', `${where}: no route to it`)
          : ping === 'answers' ? new PowerError('timeout', `${where} answers RMCP pings but not IPMI session requests`)
          : new PowerError('timeout', `${where}: no answer (${TOOL_RETRIES + 1} tries ${TOOL_INTERVAL_S} s apart, then an RMCP ping)`);
      }
      last = e;
      // a refused password stays refused (and retries can lock the account); a missing cipher stays missing
      if (e.kind !== 'timeout' && e.kind !== 'unreachable') break;
    }
    const e = last!;
    if (this.attempts > 1 && (e.kind === 'timeout' || e.kind === 'unreachable')) e.message += ` (${this.attempts} attempts)`;
    throw e;
  }

  async status(): Promise<PowerState> {
    const out = await this.ipmitool(['chassis', 'power', 'status']);
    const m = /Chassis Power is (on|off)/i.exec(out);
    if (!m) throw new PowerError('failed', `${this.bmc.machine}: unexpected answer to power status: ${JSON.stringify(out.trim().slice(0, 200))}`);
    return m[1]!.toLowerCase() as PowerState;
  }

  async on(): Promise<void> {
    await this.ipmitool(['chassis', 'power', 'on']);
  }

  async off(): Promise<void> {
    await this.ipmitool(['chassis', 'power', 'off']);
  }

  async cycle(): Promise<void> {
    // IPMI leaves a cycle of a machine that is off undefined (many BMCs refuse it): power on instead
    if ((await this.status()) === 'off') return this.on();
    await this.ipmitool(['chassis', 'power', 'cycle']);
  }

  async reset(): Promise<void> {
    if ((await this.status()) === 'off') throw new PowerError('failed', `${this.bmc.machine}: is off, a reset does nothing: power it on`);
    await this.ipmitool(['chassis', 'power', 'reset']);
  }

  async setNextBoot(device: BootDevice, once: boolean): Promise<void> {
    await this.ipmitool(['chassis', 'bootdev', device === 'pxe' ? 'pxe' : 'disk', ...(once ? [] : ['options=persistent'])]);
  }
}
