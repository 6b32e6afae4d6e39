// The open-file limit (RLIMIT_NOFILE) and how serve shares it out. Every HTTP connection,
// TFTP transfer and open file is a descriptor; when the process runs out (EMFILE) the
// kernel refuses the next accept or socket for whoever asks first, health checks and
// TFTP included. So serve sizes its own limits from the soft limit at start: TFTP and
// HTTP each get a bounded share, and a fixed reserve stays for everything else.
//
// Node itself raises the soft limit to the hard one at start (node.cc, PlatformInit;
// checked with `prlimit --nofile=1024:4096 node`: 4096), so the soft limit is normally
// the hard one already. Node has no setrlimit API; when the two still differ (an
// embedder that skips that step), util-linux's prlimit(1) raises it on this process.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Logger } from './log.ts';

export interface NofileLimit {
  soft: number;
  hard: number;
}

/**
 * Descriptors kept out of every share: stdio, the event loop's own (epoll, eventfd,
 * signalfd), the listening and DHCP sockets, both SQLite databases with their -wal and
 * -shm files (serve.db, the lease worker's), the bundle tar, /proc reads for the ARP
 * table and /metrics, the rival-DHCP probe. A running serve holds ~35 (measured in
 * test/serve.fd-limit.test.ts); the rest is slack.
 */
export const FIXED_FDS = 96;
/** Connections from the provisioner itself (loopback) admitted past the HTTP cap: local health checks. */
export const LOCAL_RESERVE = 8;
/** TFTP's default concurrency (tftp/server.ts) when descriptors are plenty. */
const TFTP_MAX = 1000;
/** Below this serve warns: a boot storm needs more than the default 1,024. */
export const RECOMMENDED_NOFILE = 8192;

export interface FdBudget extends NofileLimit {
  /** concurrent HTTP connections before new ones shed idle ones or are refused */
  httpConnections: number;
  /** concurrent TFTP transfers before "Server busy" */
  tftpTransfers: number;
}

/**
 * How `soft` descriptors are shared. An HTTP connection streaming an asset holds two
 * (socket + file), a TFTP transfer two (its socket + a streamed file), so each is costed
 * at two. TFTP gets at most a quarter of what is left after the fixed reserve (1,000
 * transfers at most), HTTP the rest minus the loopback reserve.
 * 1,024 → 340 HTTP connections, 116 TFTP transfers.
 */
export function fdBudget(limit: NofileLimit): FdBudget {
  // "unlimited" cannot really be (the kernel caps at fs.nr_open, 1,048,576 by default)
  const avail = Math.max(0, Math.min(limit.soft, 1 << 20) - FIXED_FDS);
  const tftpTransfers = Math.max(1, Math.min(TFTP_MAX, Math.floor(avail / 8)));
  const httpConnections = Math.max(1, Math.floor((avail - 2 * tftpTransfers) / 2) - LOCAL_RESERVE);
  return { ...limit, httpConnections, tftpTransfers };
}

/** "Max open files  1024  4096  files" from /proc/<pid>/limits; "unlimited" reads as Infinity. */
export function parseNofile(limits: string): NofileLimit | undefined {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  if (!m) return undefined;
  const n = (s: string) => (s === 'unlimited' ? Infinity : Number(s));
  const soft = n(m[1]!);
  const hard = n(m[2]!);
  return Number.isNaN(soft) || Number.isNaN(hard) ? undefined : { soft, hard };
}

export async function readNofile(file = '/proc/self/limits'): Promise<NofileLimit | undefined> {
  try {
    return parseNofile(await readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function run(cmd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 5_000 }, (err, _stdout, stderr) => resolve(err ? (stderr.trim() || err.message) : undefined));
  });
}

/**
 * The soft limit raised to the hard one when they differ, then the budget for what is
 * in effect. Never fails: without /proc it assumes Linux's default 1,024; a failed
 * raise or a low limit is a warning that says what to do.
 */
export async function ensureFdLimit(log: Logger, opts: { limitsFile?: string; prlimit?: string } = {}): Promise<FdBudget> {
  const file = opts.limitsFile ?? '/proc/self/limits';
  let limit = await readNofile(file);
  if (!limit) {
    log.warn({ file }, 'cannot read the open-file limit: assuming 1024');
    return fdBudget({ soft: 1024, hard: 1024 });
  }
  if (limit.soft < limit.hard && Number.isFinite(limit.hard)) {
    const err = await run(opts.prlimit ?? 'prlimit', ['--pid', String(process.pid), `--nofile=${limit.hard}:${limit.hard}`]);
    const now = await readNofile(file);
    if (err || !now || now.soft < limit.hard)
      log.warn({ soft: limit.soft, hard: limit.hard, err }, `could not raise the open-file limit to ${limit.hard} with prlimit (util-linux): run serve with LimitNOFILE=${limit.hard} (examples/slipway-serve.service) or 'ulimit -n ${limit.hard}'`);
    else log.info({ from: limit.soft, to: now.soft }, 'raised the open-file soft limit to the hard limit');
    limit = now ?? limit;
  }
  const budget = fdBudget(limit);
  const fields = { soft: limit.soft, hard: limit.hard, httpConnections: budget.httpConnections, tftpTransfers: budget.tftpTransfers };
  if (limit.soft < RECOMMENDED_NOFILE)
    log.warn(fields, `open-file limit ${limit.soft} is low: HTTP is capped at ${budget.httpConnections} connections and TFTP at ${budget.tftpTransfers} transfers; raise it with LimitNOFILE=${RECOMMENDED_NOFILE} or more (examples/slipway-serve.service)`);
  else log.info(fields, 'open-file limit');
  return budget;
}
