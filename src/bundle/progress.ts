// Progress for `bundle create`: a bar per download while a person watches (cli-progress
// on a terminal), and one line per finished item otherwise (CI logs, tests), so a log
// shows what was fetched, from where, and what was reused from the cache.
import cliProgress from 'cli-progress';

export interface Bar {
  /** `total` once it is known (a download's Content-Length) */
  update(done: number, total?: number): void;
  done(note?: string): void;
  fail(message: string): void;
}

export interface Progress {
  start(label: string, total: number | undefined, note?: string): Bar;
  log(line: string): void;
  stop(): void;
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

export function progressFor(stream: NodeJS.WriteStream, quiet = false): Progress {
  if (quiet) return { start: () => ({ update() {}, done() {}, fail() {} }), log() {}, stop() {} };
  if (!stream.isTTY) return lineProgress(stream);
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: ' {bar} {percentage}% | {label} | {sizes}',
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
      barsize: 24,
    },
    cliProgress.Presets.shades_classic,
  );
  return {
    start(label, total, note) {
      let t = total && total > 0 ? total : 1;
      const bar = multi.create(t, 0, { label, sizes: note ?? (total ? `0 / ${mib(total)}` : '') });
      return {
        update(done, newTotal) {
          if (newTotal && newTotal > 0 && newTotal !== t) {
            t = total = newTotal;
            bar.setTotal(t);
          }
          bar.update(Math.min(done, t), { sizes: total ? `${mib(done)} / ${mib(total)}` : mib(done) });
        },
        done(n) {
          bar.update(t, { sizes: n ?? (total ? mib(total) : 'done') });
        },
        fail(message) {
          bar.update({ sizes: `FAILED: ${message}` });
        },
      };
    },
    log: (line) => multi.log(line.endsWith('\n') ? line : line + '\n'),
    stop: () => multi.stop(),
  };
}

function lineProgress(stream: NodeJS.WritableStream): Progress {
  const write = (s: string) => stream.write(s.endsWith('\n') ? s : s + '\n');
  return {
    start(label, total) {
      let last = 0;
      return {
        update(done) {
          last = done;
        },
        done(note) {
          if (note === 'cached') write(`  cached  ${label}`);
          else write(`  ok      ${label}${note ? ` (${note})` : last || total ? ` (${mib(last || total || 0)})` : ''}`);
        },
        fail(message) {
          write(`  FAILED  ${label}: ${message}`);
        },
      };
    },
    log: write,
    stop() {},
  };
}
