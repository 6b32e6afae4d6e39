// apply's progress, beyond its own lines (issue 17): each step is also posted to the
// `slipway serve` running with the same state directory (POST /api/v1/activity with the
// operator's token in <state>/api-token), so `slipway status --watch` and the web console
// show it while it runs. Best effort: with no serve (or another one's token), apply says
// so once and goes on printing; a post never holds a step up (they go one at a time in
// the background, and the run waits at most a few seconds for them at its end).
//
// Every line also goes to the state's journal (<state>/activity.jsonl, serve/activity.ts),
// serve or not: the record of what day 2 did, which serve shows again after a restart.
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ACTIVITY_JOURNAL, JOURNAL_MAX_BYTES, journalLine } from '../serve/activity.ts';

export type ProgressKind = 'start' | 'plan' | 'machine' | 'health' | 'done' | 'failed' | 'line' | 'end';

export interface Progress {
  /** a line apply prints, posted with its kind and machine */
  say(kind: ProgressKind, text: string, machine?: string): void;
  /** posted only (a line already printed: the plan) */
  tell(kind: ProgressKind, text: string, machine?: string): void;
  /** the run is over: the last line, then the posts still queued (a few seconds at most) */
  end(ok: boolean, text: string): Promise<void>;
}

const HEARTBEAT_MS = 20_000;
const POST_TIMEOUT_MS = 3_000;

/** Posts to serve at `server`; `print` is apply's own output (every line goes there first). */
export function serveProgress(o: { stateDir: string; server: string; print: (line: string) => void; warn: (line: string) => void; journalMaxBytes?: number }): Progress {
  const run = `apply-${new Date().toISOString().replace(/[^0-9]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
  let token: string | undefined;
  try {
    token = readFileSync(join(o.stateDir, 'api-token'), 'utf8').trim() || undefined;
  } catch {
    token = undefined; // serve never ran with this state: nobody to tell
  }
  let off = !token;
  // the journal: appended line by line (O_APPEND), rotated once past its size
  const journalFile = join(o.stateDir, ACTIVITY_JOURNAL);
  let journalOff = false;
  const journal = (body: { kind: ProgressKind; text: string; machine?: string; ok?: boolean }) => {
    if (journalOff) return;
    try {
      try {
        if (statSync(journalFile).size > (o.journalMaxBytes ?? JOURNAL_MAX_BYTES)) renameSync(journalFile, `${journalFile}.1`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      appendFileSync(journalFile, journalLine({ run, command: 'apply', ...body, at: new Date().toISOString() }), { mode: 0o600 });
    } catch (e) {
      journalOff = true;
      o.warn(`apply: cannot write the journal ${journalFile} (${(e as Error).message}): these lines are only here`);
    }
  };
  let queue: Promise<void> = Promise.resolve();
  const post = (body: Record<string, unknown>) => {
    if (off) return;
    queue = queue.then(async () => {
      if (off) return;
      try {
        const res = await fetch(`${o.server}/api/v1/activity`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ run, command: 'apply', ...body }),
          signal: AbortSignal.timeout(POST_TIMEOUT_MS),
        });
        await res.text();
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
      } catch (e) {
        off = true;
        o.warn(`apply: progress not shown in serve at ${o.server} (${(e as Error).message}): only here`);
      }
    });
  };
  const beat = setInterval(() => post({ kind: 'heartbeat', text: '' }), HEARTBEAT_MS);
  beat.unref();
  return {
    say(kind, text, machine) {
      o.print(text);
      journal({ kind, text, ...(machine ? { machine } : {}) });
      post({ kind, text, ...(machine ? { machine } : {}) });
    },
    tell(kind, text, machine) {
      journal({ kind, text, ...(machine ? { machine } : {}) });
      post({ kind, text, ...(machine ? { machine } : {}) });
    },
    async end(ok, text) {
      clearInterval(beat);
      o.print(text);
      journal({ kind: 'end', text, ok });
      post({ kind: 'end', text, ok });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([queue, new Promise<void>((r) => (timer = setTimeout(r, 2 * POST_TIMEOUT_MS)))]);
      clearTimeout(timer);
    },
  };
}
