// Slipway's DHCP server, in three layers (Tinkerbell Smee's shape): packet.ts (the wire
// format), policy.ts (what to answer), server.ts (sockets, metrics, logs), with leases.ts
// (who holds which address) and rival.ts (is another DHCP server on the segment?).
export { startDhcpServer, dhcpConfigFromSpec, replyTarget, DEFAULT_PORTS, LEASES_FILE, type DhcpServer, type DhcpServerOptions, type DhcpPorts } from './server.ts';
export { detectRivalDhcp, type RivalOptions, type RivalOffer, type RivalReport } from './rival.ts';
export { MemoryLeaseStore, SqliteLeaseStore, type Lease, type LeaseStore, type Pool } from './leases.ts';
export { handle, bootFor, describeClient, type Decision, type DhcpMode, type PolicyContext, type Via } from './policy.ts';
export { decode, encode, DhcpParseError, MessageType, Opt, type Packet } from './packet.ts';
