// A DHCP segment for tests and benchmarks: a server namespace holding a bridge (the
// "switch", with the provisioner's address on it) and any number of host namespaces,
// each with an eth0 plugged into that bridge. Slipway's server, a rival or site DHCP
// server, relays and clients each get a namespace of their own, so every one of them
// binds its ports without stepping on another, and broadcasts reach them all.
//
//   const lab = DhcpLab.create('10.20.30.2/24');
//   const cli = lab.host('cli', { mac: '52:54:00:20:30:11' });   // no address: a DHCP client
//   ...
//   await lab.close();   // every process, then every namespace
import { Netns } from './netns.ts';

export class DhcpLab {
  readonly srv: Netns;
  readonly hosts = new Map<string, Netns>();
  private ports = 0;

  private constructor(srv: Netns) {
    this.srv = srv;
  }

  /** The server namespace, with bridge br0 carrying `cidr` (the provisioner's address). */
  static create(cidr: string): DhcpLab {
    const srv = Netns.create('slipway-dhcp');
    try {
      srv.addBridge('br0');
      srv.addAddress('br0', cidr);
    } catch (e) {
      void srv.close();
      throw e;
    }
    return new DhcpLab(srv);
  }

  /**
   * A host on the segment: namespace with eth0 bridged to br0, optionally with a MAC, an
   * address and a default route (so a probe's limited broadcast has a way out).
   * `bridged: false` gives a bare namespace the lab still cleans up.
   */
  host(name: string, opts: { mac?: string; address?: string; defaultRoute?: boolean; bridged?: boolean } = {}): Netns {
    const ns = Netns.create(`slipway-${name}`.slice(0, 20));
    this.hosts.set(name, ns);
    // an unbridged host is still closed with the lab; the caller wires it (e.g. behind a relay)
    if (opts.bridged === false) return ns;
    const port = `p${this.ports++}`;
    this.srv.addVeth(port, 'eth0', ns);
    this.srv.setMaster(port, 'br0');
    if (opts.mac) this.setMac(ns, opts.mac);
    if (opts.address) ns.addAddress('eth0', opts.address);
    if (opts.defaultRoute) ns.ip('route', 'add', 'default', 'dev', 'eth0');
    return ns;
  }

  /** Give a host's eth0 another MAC (the link is briefly down). */
  setMac(ns: Netns, mac: string): void {
    ns.ip('link', 'set', 'eth0', 'down');
    ns.ip('link', 'set', 'eth0', 'address', mac);
    ns.up('eth0');
  }

  async close(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((h) => h.close()));
    await this.srv.close();
  }
}
