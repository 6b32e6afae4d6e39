// The child of test/store.group-commit.test.ts: records DHCP-like traffic through the real
// Lifecycle and SqliteStore (group commit: one transaction per loop turn) and prints, as
// they happen, what it would acknowledge: each event its listeners hear (what SSE clients
// and the console are shown), and each durable() that resolved with the MACs and machines
// recorded before it. The parent kills it with SIGKILL mid-run and checks the database.
//   node group-commit-child.ts DB MACHINES
import { writeSync } from 'node:fs';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { Lifecycle } from '../../src/lifecycle/lifecycle.ts';

const [db, count] = [process.argv[2]!, Number(process.argv[3])];
const names = Array.from({ length: count }, (_, i) => `m${i}`);
const store = new SqliteStore(db);
const lc = new Lifecycle(store, names);
// writeSync: the line is out before anything else happens, as an SSE frame would be
const say = (o: unknown) => writeSync(1, JSON.stringify(o) + '\n');
lc.on('event', (e) => say({ told: e.id, machine: e.machine, to: e.to }));
const steps = ['dhcp', 'booting', 'installing', 'installed'] as const;
let turn = 0;
const tick = () => {
  // a burst per loop turn, as a socket's packets arrive: several machines move, unknown MACs are seen
  const macs: string[] = [];
  const moved: string[] = [];
  for (let k = 0; k < 7; k++) {
    const i = (turn * 7 + k) % count;
    const step = steps[Math.floor((turn * 7 + k) / count) % steps.length]!;
    if (lc.observe(names[i]!, step, 'dhcp')) moved.push(`${names[i]}:${step}`);
    const mac = `02:00:00:${(turn >> 8 & 255).toString(16).padStart(2, '0')}:${(turn & 255).toString(16).padStart(2, '0')}:${k.toString(16).padStart(2, '0')}`;
    store.recordDiscovered(mac, 'dhcp');
    macs.push(mac);
  }
  if (turn % 3 === 0) void store.durable().then(() => say({ durable: turn, macs, moved }));
  turn++;
  if (turn < 100_000) setImmediate(tick);
};
tick();
