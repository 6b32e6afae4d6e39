// An RMCP presence ping (ASF, DMTF DSP0136), used only to say why ipmitool heard nothing:
// on a connected UDP socket the kernel reports "no route" and ICMP "port unreachable"
// (unreachable), while a host that is not there or a BMC that drops everything stays
// silent (timeout). 12 bytes out, nothing parsed beyond the message type.
import dgram from 'node:dgram';

export type PingResult = 'answers' | 'refused' | 'no-route' | 'silent';

const ASF_IANA = [0x00, 0x00, 0x11, 0xbe];
// RMCP: version 6, reserved, sequence 0xff (no RMCP ack), class ASF; ASF: IANA, type 0x80 presence ping, tag, reserved, length 0
const PING = Buffer.from([0x06, 0x00, 0xff, 0x06, ...ASF_IANA, 0x80, 0x01, 0x00, 0x00]);
const PONG = 0x40;

export function rmcpPing(host: string, port: number, timeoutMs: number): Promise<PingResult> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    let done = false;
    const finish = (r: PingResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(again);
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(r);
    };
    const timer = setTimeout(() => finish('silent'), timeoutMs);
    let again: NodeJS.Timeout | undefined;
    const classify = (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ENETUNREACH' || e.code === 'EHOSTUNREACH' || e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' ? 'no-route' : 'silent');
    sock.on('error', classify);
    sock.on('message', (m) => {
      if (m.length >= 9 && m[3] === 0x06 && m[8] === PONG) finish('answers');
    });
    sock.connect(port, host, (e?: Error) => {
      if (e) return classify(e as NodeJS.ErrnoException);
      const send = () => sock.send(PING, (se) => se && classify(se as NodeJS.ErrnoException));
      send();
      // a second ping collects the ICMP error the first one caused, if any
      again = setInterval(send, Math.max(100, Math.floor(timeoutMs / 4)));
    });
  });
}
