// Slow HTTP clients for tests (a slowloris): opens `count` connections, sends each an
// unfinished request head and never finishes it. Run it inside a test network namespace:
//
//   ip netns exec <ns> node test/helpers/slow-http.ts '{"host":"10.20.30.2","port":8080,"count":1100}'
//
// Prints a JSON Status line every 200 ms, and a last one when every connection has been
// closed by the server or `maxMs` has passed (then it exits). Bounded: at most `count`
// connections, at most 64 connecting at once, no reconnects.
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface SlowRequest {
  host: string;
  port: number;
  count: number;
  /** exit after this long whatever happened (default 120 s) */
  maxMs?: number;
}

export interface Status {
  /** connections started */
  started: number;
  /** handshakes completed */
  connected: number;
  /** connections the server closed (or reset), counted once each */
  closed: number;
  /** of those, how many got "HTTP/1.1 408" first */
  got408: number;
  /** connects that failed outright (refused, unreachable) */
  failed: number;
  /** open now */
  open: number;
  done: boolean;
}

export function run(req: SlowRequest, report: (s: Status) => void): Promise<Status> {
  const s: Status = { started: 0, connected: 0, closed: 0, got408: 0, failed: 0, open: 0, done: false };
  const sockets = new Set<Socket>();
  let connecting = 0;
  return new Promise((resolve) => {
    const finish = () => {
      clearInterval(tick);
      clearTimeout(bound);
      s.done = true;
      for (const c of sockets) c.destroy();
      report(s);
      resolve(s);
    };
    const settled = () => s.started === req.count && connecting === 0 && s.open === 0;
    const next = () => {
      while (s.started < req.count && connecting < 64) {
        s.started++;
        connecting++;
        let established = false;
        let ended = false;
        let first = true;
        const c = connect({ host: req.host, port: req.port });
        sockets.add(c);
        c.on('connect', () => {
          established = true;
          connecting--;
          s.connected++;
          s.open++;
          // no blank line: the head is never complete
          c.write('GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: 1\r\n');
          next();
        });
        c.on('data', (d: Buffer) => {
          if (first && d.toString('latin1').startsWith('HTTP/1.1 408')) s.got408++;
          first = false;
        });
        c.on('error', () => {});
        c.on('close', () => {
          sockets.delete(c);
          if (ended) return;
          ended = true;
          if (established) {
            s.open--;
            s.closed++;
          } else {
            connecting--;
            s.failed++;
            next();
          }
          if (settled()) finish();
        });
      }
    };
    const tick = setInterval(() => report(s), 200);
    const bound = setTimeout(finish, req.maxMs ?? 120_000);
    next();
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const req = JSON.parse(process.argv[2] ?? '{}') as SlowRequest;
  void run(req, (s) => console.log(JSON.stringify(s))).then(() => process.exit(0));
}
