// A minimal DHCPv4 client for tests: sends one DISCOVER dressed as a given kind of
// network-boot client (BIOS PXE, UEFI PXE, UEFI HTTP boot, iPXE) and reports the first
// OFFER. Run it inside a test network namespace (it binds UDP port 68 and broadcasts):
//
//   ip netns exec <ns> node test/helpers/dhcp-probe.ts '{"mac":"52:54:00:..","kind":"bios"}'
//
// prints one JSON line: an Offer, or {"none":true} when nothing answered in time.
// The namespace needs an address and a default route on its link so the limited
// broadcast has a way out; servers answer to the broadcast address (flag set), so the
// address itself does not matter.
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export type ClientKind = 'bios' | 'efi7' | 'efi9' | 'http' | 'ipxe';

export interface ProbeRequest {
  mac: string;
  kind: ClientKind;
  /** overall bound; DISCOVER is re-sent every 500 ms until then */
  timeoutMs?: number;
  /**
   * This client's own address, for the second step of ProxyDHCP: a PXE client that got
   * its address from the main DHCP server and an offer without one from the proxy asks
   * the proxy again, on port 4011, for its boot file (PXE 2.1, section 2.2).
   */
  ciaddr?: string;
}

export interface Offer {
  none?: false;
  /** DHCP message type (2 = OFFER, 5 = ACK) */
  type: number;
  yiaddr: string;
  siaddr: string;
  /** the BOOTP file field, or option 67 when the file field is empty */
  file: string;
  /** option 54 */
  serverId?: string;
  /** option 60, when sent */
  vendorClass?: string;
  /** option 12 */
  hostname?: string;
  /** option 3 */
  router?: string;
  /** first boot server type of a PXE boot menu (option 43, sub-option 9), when sent */
  menuType?: number;
  /** PXE discovery control (option 43, sub-option 6), when sent */
  pxeControl?: number;
  /** the proxy's answer on port 4011, when the offer carried no address and ciaddr was given */
  proxyAck?: Offer | { none: true };
}

const ARCH: Record<ClientKind, number> = { bios: 0, efi7: 7, efi9: 9, http: 16, ipxe: 0 };
const ipBytes = (ip: string) => Buffer.from(ip.split('.').map(Number));

export function packet(req: ProbeRequest, xid: Buffer, type: 1 | 3, extra: [number, Buffer][] = []): Buffer {
  const p = Buffer.alloc(236);
  p[0] = 1; // BOOTREQUEST
  p[1] = 1; // Ethernet
  p[2] = 6;
  xid.copy(p, 4);
  if (type === 1) p.writeUInt16BE(0x8000, 10); // broadcast flag: answer to 255.255.255.255
  if (type === 3 && req.ciaddr) ipBytes(req.ciaddr).copy(p, 12);
  Buffer.from(req.mac.split(':').map((h) => parseInt(h, 16))).copy(p, 28);
  const arch = ARCH[req.kind];
  const a5 = String(arch).padStart(5, '0');
  // what real firmware sends: PXE clients "PXEClient:Arch:xxxxx:UNDI:...", HTTP boot "HTTPClient:..."
  const vendor = req.kind === 'http' ? `HTTPClient:Arch:${a5}:UNDI:003016` : `PXEClient:Arch:${a5}:UNDI:002001`;
  const opts: [number, Buffer][] = [
    [53, Buffer.from([type])],
    [55, Buffer.from([1, 3, 6, 12, 15, 43, 54, 60, 66, 67, 93, 175])],
    [60, Buffer.from(vendor)],
    [93, Buffer.from([arch >> 8, arch & 255])],
    [94, Buffer.from([1, 3, 16])], // client NDI: UNDI 3.16
    [97, Buffer.concat([Buffer.from([0]), Buffer.alloc(16, 0x5a)])], // client machine UUID
    ...extra,
  ];
  if (req.kind === 'ipxe') opts.push([77, Buffer.from('iPXE')], [175, Buffer.from([0xb1, 1, 1])]);
  const parts: Buffer[] = [p, Buffer.from([99, 130, 83, 99])];
  for (const [code, data] of opts) parts.push(Buffer.from([code, data.length]), data);
  parts.push(Buffer.from([255]));
  const pkt = Buffer.concat(parts);
  return pkt.length < 300 ? Buffer.concat([pkt, Buffer.alloc(300 - pkt.length)]) : pkt; // BOOTP minimum
}

const ip4 = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.');
const cstr = (b: Buffer) => {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('latin1');
};

function tlv(b: Buffer, from: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let i = from; i < b.length; ) {
    const code = b[i]!;
    if (code === 255) break;
    if (code === 0) {
      i++;
      continue;
    }
    const len = b[i + 1] ?? 0;
    out.set(code, b.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return out;
}

/** Parse a BOOTREPLY; undefined when it is not one for this xid. */
export function parseReply(b: Buffer, xid: Buffer): Offer | undefined {
  if (b.length < 240 || b[0] !== 2 || Buffer.compare(b.subarray(4, 8), xid) !== 0) return undefined;
  const opts = tlv(b, 240);
  const o67 = opts.get(67);
  const menu = opts.has(43) ? tlv(opts.get(43)!, 0).get(9) : undefined;
  const control = opts.has(43) ? tlv(opts.get(43)!, 0).get(6) : undefined;
  return {
    type: opts.get(53)?.[0] ?? 0,
    yiaddr: ip4(b, 16),
    siaddr: ip4(b, 20),
    file: cstr(b.subarray(108, 236)) || (o67 ? cstr(o67) : ''),
    serverId: opts.has(54) ? ip4(opts.get(54)!, 0) : undefined,
    vendorClass: opts.has(60) ? opts.get(60)!.toString('latin1') : undefined,
    hostname: opts.has(12) ? cstr(opts.get(12)!) : undefined,
    router: opts.has(3) ? ip4(opts.get(3)!, 0) : undefined,
    menuType: menu && menu.length >= 2 ? menu.readUInt16BE(0) : undefined,
    pxeControl: control?.[0],
  };
}

/**
 * Send `pkt` to host:port (re-sent every 500 ms) and resolve with the first reply of
 * message type `want` for this xid, or {none} after timeoutMs.
 */
function exchange(pkt: Buffer, xid: Buffer, host: string, port: number, want: number, timeoutMs: number): Promise<Offer | { none: true }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket({ type: 'udp4', reuseAddr: true });
    let timer: NodeJS.Timeout | undefined;
    let resend: NodeJS.Timeout | undefined;
    const stop = () => {
      clearTimeout(timer);
      clearInterval(resend);
      sock.close();
    };
    sock.on('error', (e) => {
      stop();
      reject(e);
    });
    sock.on('message', (msg) => {
      const reply = parseReply(msg, xid);
      if (reply && reply.type === want) {
        stop();
        resolve(reply);
      }
    });
    sock.bind(68, () => {
      sock.setBroadcast(true);
      const send = () => sock.send(pkt, port, host);
      send();
      resend = setInterval(send, 500);
      timer = setTimeout(() => {
        stop();
        resolve({ none: true });
      }, timeoutMs);
    });
  });
}

export async function probe(req: ProbeRequest): Promise<Offer | { none: true }> {
  const timeoutMs = req.timeoutMs ?? 5_000;
  const xid = randomBytes(4);
  const offer = await exchange(packet(req, xid, 1), xid, '255.255.255.255', 67, 2, timeoutMs);
  if (offer.none || offer.yiaddr !== '0.0.0.0' || !req.ciaddr || !offer.serverId) return offer;
  // ProxyDHCP: ask the proxy for the boot file, naming the first menu item when it sent a menu.
  const extra: [number, Buffer][] = [[54, ipBytes(offer.serverId)]];
  if (offer.menuType !== undefined) extra.push([43, Buffer.from([71, 4, offer.menuType >> 8, offer.menuType & 255, 0, 0, 255])]);
  const xid2 = randomBytes(4);
  offer.proxyAck = await exchange(packet(req, xid2, 3, extra), xid2, offer.serverId, 4011, 5, timeoutMs);
  return offer;
}

/**
 * Every OFFER to one DISCOVER within windowMs (sent once, then every 500 ms): for
 * segments with more than one server, e.g. a DHCP server and a ProxyDHCP server side by
 * side, where the first offer alone says little.
 */
export function offers(req: ProbeRequest, windowMs: number): Promise<Offer[]> {
  const xid = randomBytes(4);
  const pkt = packet(req, xid, 1);
  return new Promise((resolve, reject) => {
    const sock = createSocket({ type: 'udp4', reuseAddr: true });
    const got = new Map<string, Offer>();
    let resend: NodeJS.Timeout | undefined;
    sock.on('error', (e) => {
      clearInterval(resend);
      sock.close();
      reject(e);
    });
    sock.on('message', (msg) => {
      const reply = parseReply(msg, xid);
      if (reply && reply.type === 2) got.set(`${reply.serverId}/${reply.yiaddr}`, reply);
    });
    sock.bind(68, () => {
      sock.setBroadcast(true);
      const send = () => sock.send(pkt, 67, '255.255.255.255');
      send();
      resend = setInterval(send, 500);
      setTimeout(() => {
        clearInterval(resend);
        sock.close();
        resolve([...got.values()]);
      }, windowMs);
    });
  });
}

/** The PXE client's second step on its own: a REQUEST to a ProxyDHCP server's port 4011 (req.ciaddr is the client's address). */
export function askProxy(req: ProbeRequest, serverId: string): Promise<Offer | { none: true }> {
  const xid = randomBytes(4);
  return exchange(packet(req, xid, 3, [[54, ipBytes(serverId)]]), xid, serverId, 4011, 5, req.timeoutMs ?? 5_000);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const req = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest & { windowMs?: number; proxy?: string };
  const run: Promise<unknown> = req.windowMs ? offers(req, req.windowMs) : req.proxy ? askProxy(req, req.proxy) : probe(req);
  run.then(
    (r) => console.log(JSON.stringify(r)),
    (e: Error) => {
      console.error(e.message);
      process.exit(2);
    },
  );
}
