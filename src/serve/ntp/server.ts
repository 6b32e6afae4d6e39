// serve's SNTP server (RFC 4330 §5): answers every client request with the provisioner's
// clock. It is a reference for machines on an isolated provisioning network, so it says
// what it is: an undisciplined local clock at stratum 10 (as ntpd's LOCAL driver and
// chrony's `local stratum 10` announce one), which timesyncd and chrony accept and which
// loses to any better server a site configures (spec.ntp.servers).
import { createSocket, type Socket } from 'node:dgram';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { counter } from '../metrics.ts';
import { encodeReply, parseRequest, type ServerClock } from './packet.ts';

export const LOCAL_CLOCK: ServerClock = { stratum: 10, precision: -10, referenceId: '127.127.1.1' };

export interface NtpServerOptions {
  address?: string;
  port: number;
  log: Logger;
  registry: Registry;
  /** Unix ms, fractional; tests move it */
  now?: () => number;
}

export interface NtpServer {
  port: number;
  close(): Promise<void>;
}

/** Wall-clock time with sub-millisecond resolution (Date.now() alone steps in whole ms). */
const preciseNow = () => performance.timeOrigin + performance.now();

export async function startNtpServer(opts: NtpServerOptions): Promise<NtpServer> {
  const now = opts.now ?? preciseNow;
  const requests = counter(opts.registry, 'slipway_ntp_requests_total', 'SNTP datagrams, by outcome', ['outcome']);
  const sock: Socket = createSocket({ type: 'udp4', reuseAddr: false });
  sock.on('message', (msg, rinfo) => {
    const received = now();
    const req = parseRequest(msg);
    if ('drop' in req) {
      requests.inc({ outcome: req.drop });
      return;
    }
    requests.inc({ outcome: 'answered' });
    sock.send(encodeReply(req, LOCAL_CLOCK, received, now()), rinfo.port, rinfo.address, (err) => {
      if (err) opts.log.debug({ err: err.message, to: rinfo.address }, 'ntp reply not sent');
    });
  });
  sock.on('error', (err) => opts.log.error({ err: err.message }, 'ntp socket error'));
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(opts.port, opts.address, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  const port = sock.address().port;
  opts.log.info({ port, address: opts.address ?? '0.0.0.0' }, 'ntp serving');
  return {
    port,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
