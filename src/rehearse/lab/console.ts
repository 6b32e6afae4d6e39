// The rehearsal's web console on the operator's machine. `slipway serve` runs inside the
// lab's hub namespace, so a browser on the host cannot reach it. Two hops, neither of
// which adds an address or a route anywhere:
//
//   browser ──TCP──▶ 127.0.0.1:PORT (this process, host namespace)
//           ──unix socket <run>/console-<random>.sock──▶ forward.ts (in the hub namespace)
//           ──TCP──▶ provisioner address:httpPort (serve)
//
// A unix socket named by a path is reachable from every network namespace, so it is the
// bridge between the two. The forwarder dies with the rehearsal (setpriv --pdeathsig, as
// the VM engine starts QEMU); close() kills it by PID and removes the socket. A client
// that resets its connection only closes that connection.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from './lab.ts';
import { MAX_CONNECTIONS, splice } from './forward.ts';

const FORWARD = fileURLToPath(new URL('./forward.ts', import.meta.url));
/** sun_path is 108 bytes with its terminating NUL */
const MAX_SOCKET_PATH = 107;

export interface ExposedConsole {
  /** http://127.0.0.1:PORT/ */
  url: string;
  port: number;
  /** the forwarder's PID (in the hub namespace) */
  pid: number | undefined;
  /** the unix socket between the two hops */
  socket: string;
  /** Stop listening, close every connection, kill the forwarder, remove the socket. Safe to call twice. */
  close(): Promise<void>;
  /** The same, synchronously, without waiting for the forwarder to exit (`rehearse --keep`: the process is about to end). */
  closeNow(): void;
}

export interface ExposeOptions {
  lab: Lab;
  /** the rehearsal's run directory: the unix socket goes there */
  run: string;
  /** the host port on 127.0.0.1; 0 (the default) picks a free one */
  port?: number;
  log: (line: string) => void;
  /** where the operator's API token is, for the login hint */
  tokenFile?: string;
  /** how long the forwarder may take to listen */
  timeoutMs?: number;
}

/** Start the forwarder in the hub and resolve once it prints "ready". */
function startForwarder(lab: Lab, socket: string, timeoutMs: number): Promise<ChildProcess> {
  const host = lab.spec.provisioner.address;
  const port = String(lab.spec.provisioner.httpPort);
  // setpriv execs node (the PID is the forwarder's) and has the kernel kill it if we die.
  const child = lab.hub.spawn('setpriv', ['--pdeathsig', 'KILL', process.execPath, FORWARD, socket, host, port], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void lab.hub.kill(child);
      reject(new Error(`console forwarder ${why}${err ? `: ${err.trim().slice(-500)}` : ''}`));
    };
    const timer = setTimeout(() => fail(`did not listen within ${timeoutMs} ms`), timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (settled || !out.includes('ready\n')) return;
      settled = true;
      clearTimeout(timer);
      resolve(child);
    });
    child.once('error', (e) => fail(`could not start: ${e.message}`));
    child.once('exit', (code, signal) => fail(`exited ${code ?? signal}`));
  });
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(new Error(e.code === 'EADDRINUSE' ? `127.0.0.1:${port} is already in use (choose another console port)` : `console on 127.0.0.1:${port}: ${e.message}`));
    server.once('error', onError);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.off('error', onError);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}

/** Make the lab's `slipway serve` HTTP (API and web console) reachable at http://127.0.0.1:PORT/ on the host. */
export async function exposeConsole(o: ExposeOptions): Promise<ExposedConsole> {
  const want = o.port ?? 0;
  if (!Number.isInteger(want) || want < 0 || want > 65535) throw new Error(`console port ${want}: not a TCP port`);
  // A name of its own: a second console (another rehearsal, a test) never takes this one's socket.
  const socket = join(o.run, `console-${randomBytes(4).toString('hex')}.sock`);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) throw new Error(`console socket path ${socket} is longer than ${MAX_SOCKET_PATH} bytes`);

  let closed = false;
  const open = new Set<Socket>();
  const server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    splice(client, connect(socket));
  });
  server.maxConnections = MAX_CONNECTIONS;
  // The port first: one that is taken fails before anything is started in the lab.
  const port = await listen(server, want);
  // From here on, errors are logged, never thrown: the console must not end the rehearsal.
  server.on('error', (e) => o.log(`web console: ${e.message}`));
  let forwarder: ChildProcess;
  try {
    forwarder = await startForwarder(o.lab, socket, o.timeoutMs ?? 10_000);
  } catch (e) {
    server.close();
    for (const s of open) s.destroy();
    rmSync(socket, { force: true });
    throw e;
  }
  forwarder.once('exit', (code, signal) => {
    if (!closed) o.log(`web console: the forwarder in ${o.lab.hub.name} exited ${code ?? signal}; the console is unreachable`);
  });

  const stopListening = () => {
    closed = true;
    server.close();
    for (const s of open) s.destroy();
    open.clear();
  };
  const url = `http://127.0.0.1:${port}/`;
  o.log(`web console: ${url} (log in with the API token${o.tokenFile ? ` in ${o.tokenFile}` : ''})`);
  return {
    url,
    port,
    pid: forwarder.pid,
    socket,
    async close() {
      if (!closed) stopListening();
      await o.lab.hub.kill(forwarder);
      rmSync(socket, { force: true });
    },
    closeNow() {
      if (!closed) stopListening();
      if (forwarder.exitCode === null && forwarder.signalCode === null) forwarder.kill('SIGKILL');
      if (existsSync(socket)) rmSync(socket, { force: true });
    },
  };
}
