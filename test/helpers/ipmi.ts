// A real BMC for the tests: OpenIPMI's ipmi_sim (Debian openipmi) answering IPMI v2.0
// LAN (RMCP+) on addresses inside a test's network namespace, with a chassis-control
// script that really starts and stops a process standing for the machine (a shell
// command, run in its own session so that power off ends all of it) and records the
// boot device it was told. ipmitool is the peer every result is checked against.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Netns } from './netns.ts';

export const haveIpmiSim = existsSync('/usr/bin/ipmi_sim');
export const haveIpmitool = existsSync('/usr/bin/ipmitool');

export interface SimBmcOptions {
  /** the BMC's name (ipmi_sim's state lives under dir/<name>) */
  name: string;
  /** addresses and ports it answers on, e.g. [['10.77.0.10', 623]] (at most 4) */
  listen: [string, number][];
  username: string;
  /** at most 20 bytes (IPMI v2.0 passwords) */
  password: string;
  /** the user's highest privilege (default admin) */
  privilege?: 'operator' | 'admin';
  /** the machine: a shell command, started on power on, ended (its whole session) on power off */
  machine: string;
  dir: string;
  /** where a VM's BMC device (QEMU ipmi-bmc-extern) connects: ipmi_sim's "VM" serial codec on the system interface */
  vmSerial?: [string, number];
}

function chassisScript(dir: string, machine: string): string {
  // ipmi_sim calls: <script> <device> get power|boot ... / set power 0|1 / set reset 1 / set boot pxe|default|...
  return `#!/bin/sh
D=${dir}
echo "$(date +%s.%N) $*" >> $D/chassis.log
shift
op=$1; shift
running() { [ -f $D/machine.pid ] && kill -0 "$(cat $D/machine.pid)" 2>/dev/null; }
start() { setsid sh -c ${shq(machine)} </dev/null >>$D/machine.log 2>&1 & echo $! > $D/machine.pid; echo "$(date +%s.%N) start $!" >> $D/chassis.log; }
stop() {
  if running; then
    pid=$(cat $D/machine.pid)
    kill -TERM -$pid 2>/dev/null
    i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL -$pid 2>/dev/null
    echo "$(date +%s.%N) stop $pid" >> $D/chassis.log
  fi
  rm -f $D/machine.pid
}
case "$op" in
get)
  for p in "$@"; do case $p in
    power) if running; then echo power:1; else echo power:0; fi;;
    boot) echo "boot:$(cat $D/boot 2>/dev/null || echo default)";;
    *) echo "Invalid parameter: $p"; exit 1;;
  esac; done;;
set)
  while [ -n "$1" ]; do case $1 in
    power) if [ "$2" = 1 ]; then running || start; else stop; fi;;
    reset) if running; then stop; start; fi;;
    boot) echo "$2" > $D/boot;;
    *) echo "Invalid parameter: $1"; exit 1;;
  esac; shift 2; done;;
*) echo "Unknown operation: $op"; exit 1;;
esac
`;
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export class SimBmc {
  readonly opts: SimBmcOptions;
  readonly dir: string;
  child?: ChildProcess;
  output = '';
  private readonly ns: Netns;

  constructor(ns: Netns, opts: SimBmcOptions) {
    this.ns = ns;
    this.opts = opts;
    this.dir = join(opts.dir, opts.name);
  }

  /** Start ipmi_sim; resolves once ipmitool gets an answer from the first address. */
  async start(): Promise<void> {
    const { dir, opts } = this;
    mkdirSync(join(dir, 'state'), { recursive: true, mode: 0o700 });
    const script = join(dir, 'chassis');
    writeFileSync(script, chassisScript(dir, opts.machine), { mode: 0o700 });
    chmodSync(script, 0o700);
    // lan.conf holds the password, as a real BMC's user table does: 0600, in the test's own directory
    writeFileSync(
      join(dir, 'lan.conf'),
      [
        `name "${opts.name}"`,
        'set_working_mc 0x20',
        '  startlan 1',
        ...opts.listen.map(([a, p]) => `    addr ${a} ${p}`),
        '    priv_limit admin',
        '    allowed_auths_callback md5',
        '    allowed_auths_user md5',
        '    allowed_auths_operator md5',
        '    allowed_auths_admin md5',
        '    guid a123456789abcdefa123456789abcdef',
        '  endlan',
        `  chassis_control "${script} 0x20"`,
        ...(opts.vmSerial ? [`  serial 15 ${opts.vmSerial[0]} ${opts.vmSerial[1]} codec VM`] : []),
        `  user 2 true "${opts.username}" "${opts.password}" ${opts.privilege ?? 'admin'} 10 md5`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    writeFileSync(join(dir, 'sim.emu'), 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n');
    this.child = this.ns.spawn('ipmi_sim', ['-c', join(dir, 'lan.conf'), '-f', join(dir, 'sim.emu'), '-s', join(dir, 'state'), '-n'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000));
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    const [addr, port] = opts.listen[0]!;
    for (let i = 0; i < 50; i++) {
      if (this.child.exitCode !== null) throw new Error(`ipmi_sim ${opts.name} exited ${this.child.exitCode}: ${this.output}`);
      const r = await this.ipmitool(addr, port, ['chassis', 'power', 'status'], 3_000);
      if (r.code === 0) return;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`ipmi_sim ${opts.name} did not answer on ${addr}:${port} within ~20 s: ${this.output}`);
  }

  /** The peer: ipmitool itself, from the namespace, with this BMC's credentials. */
  ipmitool(addr: string, port: number, command: string[], timeoutMs = 15_000) {
    return this.ns.exec('ipmitool', ['-I', 'lanplus', '-C', '3', '-L', this.opts.privilege === 'operator' ? 'OPERATOR' : 'ADMINISTRATOR', '-H', addr, '-p', String(port), '-U', this.opts.username, '-E', '-N', '1', '-R', '2', ...command], {
      timeoutMs,
      env: { PATH: process.env.PATH, IPMI_PASSWORD: this.opts.password },
    });
  }

  /** What ipmitool says of the chassis power: 'on' or 'off'. */
  async peerPower(): Promise<string> {
    const [addr, port] = this.opts.listen[0]!;
    const r = await this.ipmitool(addr, port, ['chassis', 'power', 'status']);
    const m = /Chassis Power is (on|off)/.exec(r.stdout);
    if (!m) throw new Error(`ipmitool chassis power status: ${r.out}`);
    return m[1]!;
  }

  /** The machine process's pid while it runs. */
  machinePid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dir, 'machine.pid'), 'utf8'));
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  }

  /** The boot device the BMC was last told (ipmi_sim's chassis "set boot"). */
  bootDevice(): string {
    try {
      return readFileSync(join(this.dir, 'boot'), 'utf8').trim();
    } catch {
      return 'default';
    }
  }

  chassisLog(): string {
    try {
      return readFileSync(join(this.dir, 'chassis.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** End the machine (its whole session, by its pid) and ipmi_sim. */
  async close(): Promise<void> {
    const pid = this.machinePid();
    if (pid) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (this.child) await this.ns.kill(this.child);
  }
}

/**
 * `yaml` (a cluster file) with a `bmc:` entry for each named machine (ipmi, user admin),
 * each with a fresh random password in its own 0600 file in `dir`; the passwords, by machine.
 */
export function clusterWithBmcs<N extends string>(yaml: string, dir: string, addresses: Record<N, string>): { yaml: string; passwords: Record<N, string> } {
  const passwords = {} as Record<N, string>;
  const entries = new Map<string, string>();
  for (const [name, address] of Object.entries(addresses) as [N, string][]) {
    passwords[name] = randomBytes(8).toString('hex');
    writeFileSync(join(dir, `${name}.pw`), `${passwords[name]}\n`, { mode: 0o600 });
    entries.set(name, `{address: ${address}, username: admin, passwordFile: ${join(dir, `${name}.pw`)}, protocol: ipmi}`);
  }
  const out = yaml.replace(/^(\s+)- name: (\S+)\n/gm, (line, indent: string, name: string) => (entries.has(name) ? `${line}${indent}  bmc: ${entries.get(name)}\n` : line));
  return { yaml: out, passwords };
}
