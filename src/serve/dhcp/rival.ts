// "Is there another DHCP server on this segment?" (guide 03's Q&A asks whether anyone
// checks; two servers answering the same machines is the classic way a PXE install
// boots the wrong thing or gets the wrong address). At start, `slipway serve` sends one
// DHCPDISCOVER from a random, locally administered MAC, dressed as a PXE client so that
// ProxyDHCP servers answer too, and reports every OFFER that is not its own. Bounded:
// it listens for timeoutMs and then stops, whatever happens.
//
// Nothing is taken: the DISCOVER is never followed by a REQUEST, so the other server
// only holds an offer for a MAC that does not exist, for its offer timeout.
//
// Run it before starting Slipway's own DHCP server: otherwise that server sees the
// probe's MAC too (and reports it to the inventory as a machine it saw). In proxy mode
// an address-giving server is expected (it is the site's); the rivals that matter there
// are other ProxyDHCP servers (`proxy`) and servers that hand out a boot file.
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { randomLocalMac } from '../../lib/mac.ts';
import { BOOTREQUEST, BROADCAST_FLAG, LIMITED_BROADCAST, MessageType, Opt, ZERO, chaddrOf, decode, encode, macOf, messageType, optIp, optString, strOpt, type Packet } from './packet.ts';

export interface RivalOptions {
  /** our own server identifiers: offers from these are not rivals */
  ours?: string[];
  /**
   * An address of this host on the segment to check. The DISCOVER is sent from a socket
   * bound to it, so the broadcast leaves through that interface (see server.ts); without
   * it, through the interface of the default route.
   */
  localAddress?: string;
  /** how long to listen for offers (default 3000 ms: ISC dhcpd pings an address for 1 s before offering it) */
  timeoutMs?: number;
  ports?: { server?: number; client?: number };
  /** send option 60 PXEClient so ProxyDHCP servers answer too (default true) */
  asPxeClient?: boolean;
}

export interface RivalOffer {
  /** option 54, else the source address */
  serverId: string;
  /** the packet's source address (a relay's, when relayed) */
  from: string;
  /** the address offered; 0.0.0.0 for a ProxyDHCP offer */
  yiaddr: string;
  proxy: boolean;
  bootFile?: string;
}

export interface RivalReport {
  rivals: RivalOffer[];
  /** the MAC the DISCOVER came from */
  mac: string;
  /** set when the check could not run (port 68 taken by a DHCP client on this host, …) */
  error?: string;
}

function discover(mac: string, xid: number, pxe: boolean): Buffer {
  const options = new Map<number, Buffer>([
    [Opt.MESSAGE_TYPE, Buffer.from([MessageType.DISCOVER])],
    [Opt.PARAM_REQUEST_LIST, Buffer.from([Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS, Opt.SERVER_ID, Opt.VENDOR_CLASS, Opt.TFTP_SERVER, Opt.BOOTFILE, Opt.VENDOR_SPECIFIC])],
  ]);
  if (pxe) {
    options.set(Opt.VENDOR_CLASS, strOpt('PXEClient:Arch:00000:UNDI:002001'));
    options.set(Opt.CLIENT_ARCH, Buffer.from([0, 0]));
    options.set(Opt.CLIENT_NDI, Buffer.from([1, 2, 1]));
  }
  const p: Packet = {
    op: BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid,
    secs: 0,
    flags: BROADCAST_FLAG, // we have no address to be unicast to
    ciaddr: ZERO,
    yiaddr: ZERO,
    siaddr: ZERO,
    giaddr: ZERO,
    chaddr: chaddrOf(mac),
    sname: '',
    file: '',
    options,
  };
  return encode(p);
}

function bind(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.bind(port, address, () => {
      s.setBroadcast(true);
      resolve(s);
    });
  });
}

/** Read an answer to our DISCOVER; undefined for anything else. */
function asRival(msg: Buffer, from: string, xid: number, mac: string): RivalOffer | undefined {
  let p: Packet;
  try {
    p = decode(msg);
  } catch {
    return undefined;
  }
  if (p.op !== 2 || p.xid !== xid || macOf(p) !== mac || messageType(p) !== MessageType.OFFER) return undefined;
  const bootFile = p.file || optString(p, Opt.BOOTFILE);
  return { serverId: optIp(p, Opt.SERVER_ID) ?? from, from, yiaddr: p.yiaddr, proxy: p.yiaddr === ZERO, ...(bootFile ? { bootFile } : {}) };
}

export async function detectRivalDhcp(opts: RivalOptions = {}): Promise<RivalReport> {
  const mac = randomLocalMac();
  const xid = randomBytes(4).readUInt32BE(0);
  const clientPort = opts.ports?.client ?? 68;
  const serverPort = opts.ports?.server ?? 67;
  const ours = new Set(opts.ours ?? []);
  const sockets: Socket[] = [];
  try {
    // Offers come back to 255.255.255.255:68, which only a wildcard-bound socket receives.
    sockets.push(await bind('0.0.0.0', clientPort));
    if (opts.localAddress) sockets.push(await bind(opts.localAddress, clientPort));
  } catch (e) {
    for (const s of sockets) s.close();
    return { rivals: [], mac, error: `cannot listen on UDP port ${clientPort}: ${(e as Error).message}` };
  }
  const found = new Map<string, RivalOffer>();
  for (const s of sockets)
    s.on('message', (msg, rinfo) => {
      const r = asRival(msg, rinfo.address, xid, mac);
      if (r && !ours.has(r.serverId) && !ours.has(r.from)) found.set(`${r.serverId}/${r.yiaddr}`, r);
    });
  const sender = sockets[sockets.length - 1]!;
  let error: string | undefined;
  await new Promise<void>((resolve) => {
    sender.send(discover(mac, xid, opts.asPxeClient ?? true), serverPort, LIMITED_BROADCAST, (err) => {
      if (err) error = `cannot send a DHCPDISCOVER: ${err.message}`;
    });
    setTimeout(resolve, opts.timeoutMs ?? 3000);
  });
  await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return { rivals: [...found.values()], mac, ...(error ? { error } : {}) };
}
