// Structured logs: JSON lines when stderr is not a terminal (collectors read them),
// short readable lines when a person is watching.
import pino, { type Logger } from 'pino';

export type { Logger };

export function newLogger(opts: { level?: string; pretty?: boolean; destination?: NodeJS.WritableStream } = {}): Logger {
  const pretty = opts.pretty ?? process.stderr.isTTY === true;
  const dest = opts.destination ?? process.stderr;
  if (!pretty) return pino({ level: opts.level ?? 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, dest as pino.DestinationStream);
  // Readable lines without a transport worker: "12:00:01 INFO dhcp offer mac=… ip=…"
  const write = (line: string) => {
    const o = JSON.parse(line) as Record<string, unknown>;
    const { time, level, msg, ...rest } = o;
    const t = typeof time === 'string' ? time.slice(11, 19) : '';
    const lv = pino.levels.labels[level as number]?.toUpperCase() ?? String(level);
    const kv = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
    dest.write(`${t} ${lv.padEnd(5)} ${String(msg ?? '')}${kv ? ' ' + kv : ''}\n`);
  };
  return pino({ level: opts.level ?? 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, { write } as pino.DestinationStream);
}
