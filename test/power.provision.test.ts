// `slipway provision` end to end but for the install itself: the real `slipway serve` in
// a lab namespace, each machine's BMC an ipmi_sim on the lab's bridge whose chassis
// script powers a "machine" (a namespace with the machine's MAC on the bridge) that
// network-boots as far as DHCP and its iPXE script. provision sets the next boot to PXE
// (the BMC's chassis script is told "pxe"), marks the machine for reprovisioning in serve
// (its reprovision event), power-cycles it (a new machine process), and follows it: serve
// sees the machine's DHCP request and iPXE fetch after the cycle. The BMC passwords
// appear nowhere: not in provision's output, serve's log, the API, or the rendered files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, EXAMPLE_HA, slipway } from './helpers/cli.ts';
import { Lab } from './helpers/serve.ts';
import { clusterWithBmcs, haveIpmiSim, haveIpmitool, SimBmc } from './helpers/ipmi.ts';

const isRoot = process.getuid?.() === 0;
const haveUdhcpc = ['/sbin/udhcpc', '/usr/sbin/udhcpc'].some((p) => existsSync(p));
const skip = !isRoot ? 'needs root (network namespaces)' : !haveIpmiSim ? 'missing ipmi_sim (Debian openipmi)' : !haveIpmitool ? 'missing ipmitool (Debian ipmitool)' : !haveUdhcpc ? 'missing udhcpc (Debian udhcpc)' : false;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

test('slipway provision: next boot pxe, reprovision in serve, power cycle through ipmi_sim, followed as the machine network-boots; the password is nowhere', { skip, timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-provision-'));
  const { yaml, passwords: pw } = clusterWithBmcs(readFileSync(EXAMPLE_HA, 'utf8'), dir, { cp1: '10.20.30.201', w1: '10.20.30.202' });
  const lab = Lab.create(yaml);
  const sims: SimBmc[] = [];
  try {
    await lab.start();
    const hosts = { cp1: lab.host('52:54:00:20:30:11', '10.20.30.11'), w1: lab.host('52:54:00:20:30:21', '10.20.30.21') };
    // what the machine does when powered: its firmware's DHCP as a BIOS PXE client, then its iPXE script
    const boot = (name: 'cp1' | 'w1', mac: string) =>
      `ip netns exec ${hosts[name].name} sh -c 'udhcpc -i eth0 -n -q -f -t 5 -T 1 -s /bin/true -V PXEClient:Arch:00000 && curl -sS -m 10 -o /dev/null http://10.20.30.2:8080/ipxe/mac/${mac}.ipxe; exec sleep 600'`;
    for (const [name, addr, mac] of [['cp1', '10.20.30.201', '52-54-00-20-30-11'], ['w1', '10.20.30.202', '52-54-00-20-30-21']] as const) {
      lab.hub.addAddress('br0', `${addr}/24`);
      sims.push(new SimBmc(lab.hub, { name: `bmc-${name}`, listen: [[addr, 623]], username: 'admin', password: pw[name], machine: boot(name, mac), dir }));
    }
    await Promise.all(sims.map((s) => s.start()));
    const [cp1, w1] = sims as [SimBmc, SimBmc];
    // w1 is running already (provision cycles it), cp1 is off (provision powers it on)
    let r = await lab.hub.exec(process.execPath, [BIN, 'power', '-f', lab.file, 'on', 'w1']);
    assert.equal(r.code, 0, r.out);
    const w1Before = w1.machinePid();
    assert.ok(w1Before);

    const t0 = performance.now();
    r = await lab.hub.exec(process.execPath, [BIN, 'provision', '-f', lab.file, '--state', lab.state, '--all', '--timeout', '10'], { timeoutMs: 120_000 });
    const seconds = (performance.now() - t0) / 1000;
    const out = r.out;
    // the machines cannot get further than their iPXE script here: followed, then given up on, exit 1
    assert.equal(r.code, 1, out);
    assert.match(out, /^cp1\s+10\.20\.30\.201:623\s+network boot\s/m);
    assert.match(out, /^w1\s+10\.20\.30\.202:623\s+network boot\s/m);
    assert.match(out, /following 2 machines until every one is ready or failed/);
    for (const m of ['cp1', 'w1']) {
      assert.match(out, new RegExp(`Z ${m} dhcp\\b`), `serve saw ${m}'s DHCP request after the power cycle:\n${out}`);
      assert.match(out, new RegExp(`Z ${m} booting\\b`), `serve saw ${m} fetch its iPXE script:\n${out}`);
    }
    assert.match(out, /gave up following after 10 s/);
    console.log(`# provision --all of 2 machines: ${seconds.toFixed(1)} s (10 s of it following)`);

    // the BMCs: next boot from the network, power on; ipmitool agrees
    for (const s of sims) {
      assert.equal(s.bootDevice(), 'pxe', s.chassisLog());
      assert.equal(await s.peerPower(), 'on');
      assert.ok(s.machinePid());
    }
    assert.notEqual(w1.machinePid(), w1Before, `w1 was power-cycled: ${w1.chassisLog()}`);
    const peerBoot = await cp1.ipmitool('10.20.30.201', 623, ['chassis', 'bootparam', 'get', '5']);
    assert.match(peerBoot.stdout, /Force PXE/, peerBoot.out);

    // serve: each machine's reprovision by the operator, before its DHCP request
    const token = lab.apiToken();
    const api = async (path: string) => (await lab.hub.exec('curl', ['-sS', '-m', '10', '-H', `Authorization: Bearer ${token}`, `http://10.20.30.2:8080${path}`])).stdout;
    for (const m of ['cp1', 'w1']) {
      const view = await api(`/api/v1/machines/${m}`);
      const events = (JSON.parse(view) as { events: { id: number; to: string; reason?: string; source: string }[] }).events;
      const rep = events.filter((e) => e.reason === 'reprovision' && e.source === 'operator').map((e) => e.id);
      const dhcp = events.filter((e) => e.to === 'dhcp').map((e) => e.id);
      assert.ok(rep.length === 1 && dhcp.length >= 1 && Math.max(...dhcp) > rep[0]!, view);
    }

    // the API's power action (operator token): the same drivers, ipmitool agrees
    const power = async (m: string, method: string, body?: string, auth = true) => {
      const args = ['-sS', '-m', '30', '-o', '-', '-w', '\n%{http_code}', '-X', method, ...(auth ? ['-H', `Authorization: Bearer ${token}`] : []), ...(body ? ['-H', 'Content-Type: application/json', '--data-binary', body] : []), `http://10.20.30.2:8080/api/v1/machines/${m}/power`];
      const r = await lab.hub.exec('curl', args, { timeoutMs: 60_000 });
      const lines = r.stdout.trimEnd().split('\n');
      return { status: Number(lines.pop()), body: lines.join('\n') };
    };
    let p = await power('w1', 'POST', '{"action":"off"}');
    assert.equal(p.status, 200, p.body);
    assert.equal((JSON.parse(p.body) as { result: string }).result, 'powered off');
    assert.equal(await w1.peerPower(), 'off');
    assert.equal(w1.machinePid(), undefined);
    p = await power('w1', 'GET');
    assert.deepEqual(JSON.parse(p.body), { machine: 'w1', action: 'status', result: 'off' });
    p = await power('cp1', 'GET');
    assert.equal((JSON.parse(p.body) as { result: string }).result, 'on');
    assert.equal((await power('cp2', 'POST', '{"action":"on"}')).status, 409, 'cp2 has no bmc');
    assert.equal((await power('w1', 'POST', '{"action":"explode"}')).status, 400);
    assert.equal((await power('w1', 'POST', '{"action":"on"}', false)).status, 401);
    assert.equal((await power('nosuch', 'GET')).status, 404);
    assert.equal(await w1.peerPower(), 'off', 'no refused request powered anything');

    // the passwords: nowhere in provision's output, serve's log, the API, or a render of the same file
    const rendered = join(dir, 'out');
    const rr = slipway(['render', '-f', lab.file, '-o', rendered, '--state', lab.state]);
    assert.equal(rr.code, 0, rr.stderr);
    const places: [string, string][] = [
      ['provision output', out],
      ['serve log', lab.log],
      ['API machines', await api('/api/v1/machines')],
      ['API cp1', await api('/api/v1/machines/cp1')],
      ['API events', (await lab.hub.exec('curl', ['-sS', '-m', '3', '-H', `Authorization: Bearer ${token}`, 'http://10.20.30.2:8080/api/v1/events'], { timeoutMs: 10_000 })).stdout],
      ...filesUnder(rendered).map((f): [string, string] => [f, readFileSync(f, 'latin1')]),
    ];
    assert.ok(places.length > 20, `only ${places.length} places read`);
    for (const [where, text] of places) for (const p of Object.values(pw)) assert.ok(!text.includes(p), `a BMC password appears in ${where}`);
  } finally {
    for (const s of sims) await s.close();
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
