// The lab half of the rehearsal's console forwarder (see console.ts): started inside the
// hub namespace, it listens on a unix socket (a path, so not bound to a namespace) and
// pipes every connection to the provisioner's HTTP address, which only the hub can reach.
//
//   ip netns exec <hub> setpriv --pdeathsig KILL node forward.ts SOCKET HOST PORT
//
// Prints "ready" once listening. SIGTERM/SIGINT close it and remove the socket; the
// kernel kills it (pdeathsig) if the rehearsal dies first. Nothing here can crash on a
// peer's reset: every error just closes that one connection.
import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';

/** Connections at once; more are refused (a browser opens a handful). */
export const MAX_CONNECTIONS = 64;
/** A connection with no traffic either way for this long is closed (the event stream pings every 15 s). */
export const IDLE_MS = 120_000;

/** Pipe `a` and `b` both ways; an error, a timeout or either end closing closes both. */
export function splice(a: Socket, b: Socket, idleMs = IDLE_MS): void {
  const done = () => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.on('error', done);
    s.on('close', done);
    s.setTimeout(idleMs, done);
  }
  a.pipe(b);
  b.pipe(a);
}

/** Remove `path` if it is a socket (left by a forwarder that was killed); anything else is an error. */
export function removeSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  rmSync(path, { force: true });
}

function main(argv: string[]): void {
  const [socketPath, host, portText] = argv;
  const port = Number(portText);
  if (!socketPath || !host || !Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write('usage: forward.ts SOCKET HOST PORT\n');
    process.exit(2);
  }
  removeSocket(socketPath);
  const open = new Set<Socket>();
  const server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    const upstream = connect({ host, port });
    splice(client, upstream);
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.on('error', (e) => {
    process.stderr.write(`forward: ${e.message}\n`);
    process.exit(1);
  });
  const stop = () => {
    server.close();
    for (const s of open) s.destroy();
    rmSync(socketPath, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  server.listen(socketPath, () => {
    chmodSync(socketPath, 0o600);
    process.stdout.write('ready\n');
  });
}

if (import.meta.main) main(process.argv.slice(2));
