// `node bench/power.bench.ts`: BMC operations per second, `slipway power status --all`
// (the CLI, as an operator runs it) against ipmitool itself run in parallel on the same
// BMCs. The BMCs are OpenIPMI ipmi_sim instances in a namespace of the bench's own, as
// in test/power.ipmi.test.ts; every answer is checked ("off" for every machine) before
// its time counts. Env: BMCS=n (default 8), RUNS=n (default 3). Needs root, ipmi_sim
// and ipmitool.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Netns } from '../test/helpers/netns.ts';
import { BIN } from '../test/helpers/cli.ts';
import { bigClusterFile } from '../test/helpers/spec.ts';
import { haveIpmiSim, haveIpmitool, SimBmc } from '../test/helpers/ipmi.ts';
import { printTable } from './print.ts';

const N = Number(process.env.BMCS ?? 8);
const RUNS = Number(process.env.RUNS ?? 3);
if (process.getuid?.() !== 0 || !haveIpmiSim || !haveIpmitool) {
  console.log('skipped: needs root, ipmi_sim (Debian openipmi) and ipmitool');
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'slipway-power-bench-'));
const ns = Netns.create('slipway-pwb');
const sims: SimBmc[] = [];
try {
  ns.addDummy('bmc0');
  const password = randomBytes(8).toString('hex');
  writeFileSync(join(dir, 'bmc.pw'), `${password}\n`, { mode: 0o600 });
  const addr = (i: number) => `10.78.${i >> 8}.${(i & 255) + 10}`;
  for (let i = 0; i < N; i++) {
    ns.addAddress('bmc0', `${addr(i)}/16`);
    sims.push(new SimBmc(ns, { name: `bmc${i}`, listen: [[addr(i), 623]], username: 'admin', password, machine: 'exec sleep 600', dir }));
  }
  await Promise.all(sims.map((s) => s.start()));
  let i = 0;
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, bigClusterFile(N).replace(/roles: \[([^\]]*)\]\}/g, (_, roles: string) => `roles: [${roles}], bmc: {address: ${addr(i++)}, username: admin, passwordFile: bmc.pw, protocol: ipmi}}`));

  const rows = [['run', 'what', 'BMCs', 'seconds', 'ops/s']];
  const time = async (what: string, run: number, fn: () => Promise<void>) => {
    const t0 = performance.now();
    await fn();
    const s = (performance.now() - t0) / 1000;
    rows.push([String(run), what, String(N), s.toFixed(2), (N / s).toFixed(1)]);
  };
  for (let run = 1; run <= RUNS; run++) {
    await time('slipway power status --all (--parallel 8)', run, async () => {
      const r = await ns.exec(process.execPath, [BIN, 'power', '-f', file, 'status', '--all', '--parallel', '8'], { timeoutMs: 120_000 });
      const off = r.stdout.split('\n').filter((l) => / off /.test(l)).length;
      if (r.code !== 0 || off !== N) throw new Error(`slipway power: exit ${r.code}, ${off} of ${N} off:\n${r.out}`);
    });
    await time(`ipmitool chassis power status, ${N} at once`, run, async () => {
      const rs = await Promise.all(sims.map((_, k) => ns.exec('ipmitool', ['-I', 'lanplus', '-C', '3', '-H', addr(k), '-U', 'admin', '-E', 'chassis', 'power', 'status'], { env: { PATH: process.env.PATH, IPMI_PASSWORD: password } })));
      const bad = rs.filter((r) => !/Chassis Power is off/.test(r.stdout));
      if (bad.length) throw new Error(`ipmitool: ${bad.map((r) => r.out).join('\n')}`);
    });
  }
  printTable(rows);
  console.log('slipway runs one ipmitool per BMC (plus its own start-up: Node, the cluster file, one password read per BMC);');
  console.log('the difference between the rows is what the CLI costs above the tool itself.');
} finally {
  for (const s of sims) await s.close();
  await ns.close();
  rmSync(dir, { recursive: true, force: true });
}
