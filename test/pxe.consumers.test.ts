// The PXE exports checked by the programs that consume them: dhcpd -t, kea-dhcp4 -t
// (inside a network namespace that has the interface the config names) and
// dnsmasq --test, for full mode, full mode with a pool, proxy mode and off mode. Then
// the boot policy itself: each DHCP server is started for real in a namespace and asked,
// by a probe dressed as BIOS PXE, UEFI PXE, UEFI HTTP boot and iPXE, what to boot
// (in proxy mode, dnsmasq alone, through the PXE port-4011 step).
// Plus the PXELINUX and iPXE files' names and contents.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { haSpec } from './helpers/spec.ts';
import { Netns } from './helpers/netns.ts';
import type { ClientKind, Offer } from './helpers/dhcp-probe.ts';
import { pxeFiles, pxePhase } from '../src/plan/phases/pxe.ts';
import type { Spec } from '../src/spec/types.ts';
import type { File, PhaseContext } from '../src/plan/types.ts';
import type { Secrets } from '../src/secrets/types.ts';
import { versionProfile } from '../src/catalog/versions.ts';

const PROBE = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'dhcp-probe.ts');
const PROV = '10.20.30.2';
const BASE = `http://${PROV}:8080`;
const POOL = { start: '10.20.30.100', end: '10.20.30.199' };

type Variant = 'full' | 'full-pool' | 'proxy' | 'off';
const VARIANTS: Variant[] = ['full', 'full-pool', 'proxy', 'off'];

function specFor(v: Variant): Spec {
  const s = haSpec();
  s.provisioner.dhcp.mode = v === 'full-pool' ? 'full' : v;
  if (v === 'full-pool') s.provisioner.dhcp.pool = { ...POOL };
  return s;
}

const byPath = (files: File[]) => new Map(files.map((f) => [f.path, f.contents]));
const get = (files: File[], path: string): string => {
  const c = byPath(files).get(path);
  assert.ok(c !== undefined, `no ${path} among ${files.map((f) => f.path).join(', ')}`);
  return c;
};
const hyphen = (mac: string) => mac.replace(/:/g, '-');

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000, env: opts.env });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

let work: string;
const dirs: Partial<Record<Variant, string>> = {};
const rendered: Partial<Record<Variant, File[]>> = {};

before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-pxe-'));
  for (const v of VARIANTS) {
    const files = pxeFiles(specFor(v));
    rendered[v] = files;
    const dir = join(work, v);
    for (const f of files) {
      mkdirSync(dirname(join(dir, f.path)), { recursive: true });
      writeFileSync(join(dir, f.path), f.contents, { mode: f.mode });
    }
    dirs[v] = dir;
  }
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('dhcpd -t', () => {
  for (const v of VARIANTS)
    test(`${v}: dhcpd accepts dhcpd.conf, one host block per machine`, () => {
      const lease = join(work, `dhcpd-${v}.leases`);
      writeFileSync(lease, '');
      const r = run('dhcpd', ['-4', '-t', '-cf', join(dirs[v]!, 'dhcpd.conf'), '-lf', lease]);
      assert.equal(r.code, 0, r.out);
      const conf = get(rendered[v]!, 'dhcpd.conf');
      for (const m of specFor(v).machines) {
        const block = new RegExp(
          `^host ${m.name} \\{\\n  hardware ethernet ${m.mac};\\n  fixed-address ${m.ip.replace(/\./g, '\\.')};\\n  option host-name "${m.name}";\\n\\}$`,
          'm',
        );
        assert.match(conf, block);
      }
      assert.match(conf, /^option arch code 93 = unsigned integer 16;$/m);
      assert.match(conf, new RegExp(`^next-server ${PROV};$`, 'm'));
      if (v === 'full-pool') assert.match(conf, /^  range 10\.20\.30\.100 10\.20\.30\.199;$/m);
      else assert.doesNotMatch(conf, /range /);
    });

  test('control: dhcpd -t rejects a broken file (the check is real)', () => {
    const bad = join(work, 'bad-dhcpd.conf');
    writeFileSync(bad, get(rendered.full!, 'dhcpd.conf').replace('fixed-address 10.20.30.11;', 'fixed-address 10.20.30.11'));
    const lease = join(work, 'bad.leases');
    writeFileSync(lease, '');
    assert.notEqual(run('dhcpd', ['-4', '-t', '-cf', bad, '-lf', lease]).code, 0);
  });
});

describe('kea-dhcp4 -t (in a namespace with the configured interface)', () => {
  let ns: Netns;
  before(() => {
    ns = Netns.create();
    const iface = haSpec().provisioner.dhcp.interface;
    ns.addDummy(iface);
    ns.addAddress(iface, `${PROV}/24`);
  });
  after(() => ns.close());

  for (const v of VARIANTS)
    test(`${v}: Kea accepts kea-dhcp4.json, reservations by hw-address`, async () => {
      const r = await ns.exec('kea-dhcp4', ['-t', join(dirs[v]!, 'kea-dhcp4.json')]);
      assert.equal(r.code, 0, r.out);
      const spec = specFor(v);
      const kea = JSON.parse(get(rendered[v]!, 'kea-dhcp4.json')) as {
        Dhcp4: { 'interfaces-config': { interfaces: string[] }; subnet4: { subnet: string; pools: { pool: string }[]; reservations: object[] }[] };
      };
      assert.deepEqual(kea.Dhcp4['interfaces-config'].interfaces, [spec.provisioner.dhcp.interface]);
      const [subnet] = kea.Dhcp4.subnet4;
      assert.equal(subnet?.subnet, '10.20.30.0/24');
      assert.deepEqual(subnet?.reservations, spec.machines.map((m) => ({ 'hw-address': m.mac, 'ip-address': m.ip, hostname: m.name })));
      assert.deepEqual(subnet?.pools, v === 'full-pool' ? [{ pool: '10.20.30.100 - 10.20.30.199' }] : []);
    });

  test('control: Kea rejects a config naming an interface the namespace lacks', async () => {
    const cfg = JSON.parse(get(rendered.full!, 'kea-dhcp4.json')) as { Dhcp4: { 'interfaces-config': { interfaces: string[] } } };
    cfg.Dhcp4['interfaces-config'].interfaces = ['slipwaynone0'];
    const file = join(work, 'kea-bad-iface.json');
    writeFileSync(file, JSON.stringify(cfg));
    const r = await ns.exec('kea-dhcp4', ['-t', file]);
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /slipwaynone0/);
  });
});

describe('dnsmasq --test', () => {
  for (const v of VARIANTS)
    test(`${v}: dnsmasq accepts dnsmasq.conf`, () => {
      const r = run('dnsmasq', ['--test', '-C', join(dirs[v]!, 'dnsmasq.conf')]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /syntax check OK/);
      const conf = get(rendered[v]!, 'dnsmasq.conf');
      assert.match(conf, /^port=0$/m);
      assert.match(conf, /^dhcp-userclass=set:ipxe,iPXE$/m);
      // iPXE by its user class only, as BOOT_RULES (and so serve, dhcpd and Kea) decide
      assert.doesNotMatch(conf, /^dhcp-match=set:ipxe,175$/m);
      assert.match(conf, /^dhcp-match=set:efi-x64,option:client-arch,7$/m);
      if (v === 'proxy') {
        assert.match(conf, /^dhcp-range=10\.20\.30\.0,proxy,255\.255\.255\.0$/m);
        assert.match(conf, /^pxe-service=tag:!ipxe,x86PC,.*,undionly\.kpxe$/m);
        assert.match(conf, new RegExp(`^pxe-service=tag:ipxe,x86PC,.*,${BASE}/boot\\.ipxe$`, 'm'));
        assert.doesNotMatch(conf, /^dhcp-host=/m, 'ProxyDHCP never assigns addresses');
      } else {
        assert.match(conf, /^dhcp-range=set:slipway,10\.20\.30\.0,static,255\.255\.255\.0,1h$/m);
        for (const m of specFor(v).machines) assert.match(conf, new RegExp(`^dhcp-host=${m.mac},${m.ip},${m.name}$`, 'm'));
        assert.equal(/^dhcp-range=set:slipway,10\.20\.30\.100,10\.20\.30\.199,/m.test(conf), v === 'full-pool');
      }
    });

  test('control: dnsmasq --test rejects a broken file', () => {
    const bad = join(work, 'bad-dnsmasq.conf');
    writeFileSync(bad, get(rendered.full!, 'dnsmasq.conf') + 'dhcp-range=not-an-address,static\n');
    assert.notEqual(run('dnsmasq', ['--test', '-C', bad]).code, 0);
  });
});

// ---------------------------------------------------------------------------------------
// The boot policy, as the servers actually apply it. Server and client each get a
// namespace, joined by a veth pair named like the config's interface.

type Server = 'kea' | 'dhcpd' | 'dnsmasq';

interface Lab {
  srv: Netns;
  cli: Netns;
  dir: string;
}

function makeLab(name: string): Lab {
  const srv = Netns.create();
  let cli: Netns | undefined;
  try {
    cli = Netns.create();
    const iface = haSpec().provisioner.dhcp.interface;
    srv.addVeth(iface, 'eth0', cli);
    srv.addAddress(iface, `${PROV}/24`);
    // The probe broadcasts from an address outside the pool; the default route gives the
    // limited broadcast a way out. Both live only in the client namespace.
    cli.addAddress('eth0', '10.20.30.250/24');
    cli.ip('route', 'add', 'default', 'dev', 'eth0');
  } catch (e) {
    void srv.close();
    void cli?.close();
    throw e;
  }
  const dir = join(work, `run-${name}`);
  mkdirSync(dir, { recursive: true });
  return { srv, cli, dir };
}

/** Start one server on a variant's exports; only state paths are redirected into the temp dir. */
function startServer(server: Server, lab: Lab, variant: Variant = 'full-pool') {
  const src = dirs[variant]!;
  const iface = haSpec().provisioner.dhcp.interface;
  const stdio = ['ignore', 'pipe', 'pipe'] as const;
  let child;
  if (server === 'kea') {
    // Same file, but leases in memory: the real one persists to Kea's state directory.
    const cfg = JSON.parse(readFileSync(join(src, 'kea-dhcp4.json'), 'utf8')) as { Dhcp4: { 'lease-database': Record<string, unknown> } };
    cfg.Dhcp4['lease-database'] = { type: 'memfile', persist: false };
    const file = join(lab.dir, 'kea-dhcp4.json');
    writeFileSync(file, JSON.stringify(cfg));
    const env = { ...process.env, KEA_PIDFILE_DIR: lab.dir, KEA_LOCKFILE_DIR: lab.dir };
    child = lab.srv.spawn('kea-dhcp4', ['-c', file], { env, stdio: [...stdio] });
  } else if (server === 'dhcpd') {
    const lease = join(lab.dir, 'dhcpd.leases');
    writeFileSync(lease, '');
    child = lab.srv.spawn('dhcpd', ['-4', '-f', '-d', '-cf', join(src, 'dhcpd.conf'), '-lf', lease, '-pf', join(lab.dir, 'dhcpd.pid'), iface], { stdio: [...stdio] });
  } else {
    // dnsmasq refuses to start without its TFTP root: point it at a temp one.
    const tftp = join(lab.dir, 'tftp');
    mkdirSync(tftp, { recursive: true });
    const file = join(lab.dir, 'dnsmasq.conf');
    writeFileSync(file, readFileSync(join(src, 'dnsmasq.conf'), 'utf8').replace(/^tftp-root=.*$/m, `tftp-root=${tftp}`));
    const args = ['-k', '-C', file, '--log-facility=-', `--dhcp-leasefile=${join(lab.dir, 'dnsmasq.leases')}`, `--pid-file=${join(lab.dir, 'dnsmasq.pid')}`, '--user=root'];
    child = lab.srv.spawn('dnsmasq', args, { stdio: [...stdio] });
  }
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  return { child, log: () => log };
}

async function ask(lab: Lab, mac: string, kind: ClientKind, timeoutMs = 8_000, ciaddr?: string): Promise<Offer | { none: true }> {
  const r = await lab.cli.exec(process.execPath, [PROBE, JSON.stringify({ mac, kind, timeoutMs, ciaddr })], { timeoutMs: 2 * timeoutMs + 5_000 });
  assert.equal(r.code, 0, r.out);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Offer | { none: true };
}

const EXPECT: Record<ClientKind, { file: string; vendorClass?: string }> = {
  bios: { file: 'undionly.kpxe' },
  efi7: { file: 'snponly.efi' },
  efi9: { file: 'snponly.efi' },
  http: { file: `${BASE}/assets/ipxe/ipxe.efi`, vendorClass: 'HTTPClient' },
  ipxe: { file: `${BASE}/boot.ipxe` },
};

describe('boot policy served by the real daemons (full mode with a pool)', () => {
  for (const server of ['kea', 'dhcpd', 'dnsmasq'] as Server[])
    test(`${server}: each kind of client gets its loader; machines their fixed address`, { timeout: 120_000 }, async () => {
      const lab = makeLab(server);
      const daemon = startServer(server, lab);
      try {
        const spec = specFor('full-pool');
        const cp1 = spec.machines[0]!;
        // The first answer doubles as the readiness wait (the probe re-sends for up to 20 s).
        const first = await ask(lab, cp1.mac, 'bios', 20_000);
        assert.ok(!first.none, `${server} never answered:\n${daemon.log()}`);
        for (const kind of Object.keys(EXPECT) as ClientKind[]) {
          const o: Offer | { none: true } = kind === 'bios' ? first : await ask(lab, cp1.mac, kind);
          assert.ok(!o.none, `${server}: no offer for ${kind}:\n${daemon.log()}`);
          assert.equal(o.yiaddr, cp1.ip, `${server} ${kind}`);
          assert.equal(o.file, EXPECT[kind].file, `${server} ${kind}`);
          assert.equal(o.router, '10.20.30.1', `${server} ${kind}`);
          if (EXPECT[kind].vendorClass) assert.equal(o.vendorClass, EXPECT[kind].vendorClass, `${server} ${kind}`);
          // TFTP loaders come from the provisioner
          if (!EXPECT[kind].file.startsWith('http')) assert.equal(o.siaddr, PROV, `${server} ${kind}`);
        }
        for (const m of spec.machines.slice(1)) {
          const o = await ask(lab, m.mac, 'ipxe');
          assert.ok(!o.none, `${server}: no offer for ${m.name}`);
          assert.equal(o.yiaddr, m.ip, `${server} ${m.name}`);
        }
        // A machine not in the cluster file gets a pool address (and boots like any other;
        // boot.ipxe then finds no script for its MAC and leaves it to the local disk).
        const stranger = await ask(lab, '52:54:00:99:99:99', 'bios', 15_000);
        assert.ok(!stranger.none, `${server}: no offer for an unknown machine`);
        const last = Number(stranger.yiaddr.split('.')[3]);
        assert.ok(stranger.yiaddr.startsWith('10.20.30.') && last >= 100 && last <= 199, `${server} leased ${stranger.yiaddr}`);
      } finally {
        await lab.srv.close();
        await lab.cli.close();
      }
    });
});

describe('boot policy served by dnsmasq as ProxyDHCP (proxy mode)', () => {
  test('no addresses; BIOS, UEFI and iPXE get their boot file from the proxy on port 4011', { timeout: 120_000 }, async () => {
    const lab = makeLab('proxy');
    const daemon = startServer('dnsmasq', lab, 'proxy');
    try {
      const cp1 = specFor('proxy').machines[0]!;
      // The probe plays a PXE client that already has 10.20.30.250 from the site's DHCP
      // server, and asks the proxy for its boot file the way PXE firmware does.
      const client = '10.20.30.250';
      let first = true;
      for (const kind of ['bios', 'efi7', 'efi9', 'ipxe'] as ClientKind[]) {
        const o = await ask(lab, cp1.mac, kind, first ? 20_000 : 8_000, client);
        first = false;
        assert.ok(!o.none, `no proxy offer for ${kind}:\n${daemon.log()}`);
        assert.equal(o.yiaddr, '0.0.0.0', `${kind}: a ProxyDHCP offer carries no address`);
        assert.equal(o.vendorClass, 'PXEClient', kind);
        assert.ok(o.proxyAck && !o.proxyAck.none, `${kind}: no answer on port 4011:\n${daemon.log()}`);
        assert.equal(o.proxyAck.file, EXPECT[kind].file, kind);
        assert.equal(o.proxyAck.siaddr, PROV, kind);
      }
      // UEFI HTTP boot is deliberately not answered by the proxy (it needs the URL in the
      // main server's offer); the file says so.
      const http = await ask(lab, cp1.mac, 'http', 3_000, client);
      assert.ok(http.none, `unexpected answer to HTTP boot: ${JSON.stringify(http)}`);
    } finally {
      await lab.srv.close();
      await lab.cli.close();
    }
  });
});

// ---------------------------------------------------------------------------------------

describe('PXELINUX and iPXE files', () => {
  test('pxelinux.cfg/01-<mac>: install label with Ignition, local label; default boots the disk', () => {
    const spec = haSpec();
    spec.machines[0]!.mac = '52:54:00:20:30:11'; // the lab example's cp1
    const files = pxeFiles(spec);
    const cp1 = get(files, 'pxelinux.cfg/01-52-54-00-20-30-11');
    assert.match(cp1, /^DEFAULT install$/m);
    assert.match(cp1, /^LABEL install\n  KERNEL os\/vmlinuz\n  APPEND initrd=os\/initrd\.img /m);
    assert.match(cp1, /^LABEL local\n  LOCALBOOT 0$/m);
    const append = /^  APPEND (.*)$/m.exec(cp1)![1]!.split(' ');
    for (const arg of [
      'ignition.firstboot',
      'ignition.platform.id=metal',
      `ignition.config.url=${BASE}/machines/cp1/ignition.json`,
      `slipway.install=${BASE}/machines/cp1/install.env`,
      `cloud-config-url=${BASE}/machines/cp1/cloud-config.yml`,
      'console=tty0',
      'console=ttyS0,115200n8',
    ])
      assert.ok(append.includes(arg), `APPEND lacks ${arg}: ${append.join(' ')}`);
    for (const m of spec.machines) {
      const f = get(files, `pxelinux.cfg/01-${hyphen(m.mac)}`);
      assert.match(f, new RegExp(`ignition\\.config\\.url=${BASE}/machines/${m.name}/ignition\\.json`));
    }
    const dflt = get(files, 'pxelinux.cfg/default');
    assert.match(dflt, /^DEFAULT local$/m);
    assert.match(dflt, /^LABEL local\n  LOCALBOOT 0$/m);
    assert.doesNotMatch(dflt, /KERNEL/);
  });

  test('iPXE: boot.ipxe → ipxe/mac/<mac>.ipxe → ipxe/<name>.ipxe → kernel, initrd, Ignition', () => {
    const spec = haSpec();
    const files = pxeFiles(spec);
    const boot = get(files, 'boot.ipxe');
    assert.match(boot, /^#!ipxe\n/);
    assert.match(boot, new RegExp(`^chain --autofree ${BASE}/ipxe/mac/\\$\\{netX/mac:hexhyp\\}\\.ipxe \\|\\| goto unknown$`, 'm'));
    assert.match(boot, /^:unknown$/m);
    for (const m of spec.machines) {
      const mac = get(files, `ipxe/mac/${hyphen(m.mac)}.ipxe`);
      assert.match(mac, /^#!ipxe\n/);
      assert.match(mac, new RegExp(`^chain --autofree ${BASE}/ipxe/${m.name}\\.ipxe$`, 'm'));
      const script = get(files, `ipxe/${m.name}.ipxe`);
      assert.match(script, /^#!ipxe\n/);
      const kernel = /^kernel (\S+) (.*) \|\| goto failed$/m.exec(script);
      assert.ok(kernel, script);
      assert.equal(kernel[1], `${BASE}/assets/os/vmlinuz`);
      const args = kernel[2]!.split(' ');
      assert.ok(args.includes('initrd=initrd.img'));
      assert.ok(args.includes(`ignition.config.url=${BASE}/machines/${m.name}/ignition.json`));
      assert.ok(args.includes(`cloud-config-url=${BASE}/machines/${m.name}/cloud-config.yml`));
      assert.match(script, new RegExp(`^initrd ${BASE}/assets/os/initrd\\.img \\|\\| goto failed$`, 'm'));
      assert.match(script, /^boot \|\| goto failed$/m);
    }
    // every MAC script a machine could ask for, and nothing else
    const macScripts = files.filter((f) => f.path.startsWith('ipxe/mac/')).map((f) => f.path).sort();
    assert.deepEqual(macScripts, spec.machines.map((m) => `ipxe/mac/${hyphen(m.mac)}.ipxe`).sort());
  });

  test('deterministic: the same spec gives the same bytes; the phase is pxeFiles', () => {
    const ctx = { spec: specFor('full-pool'), secrets: {} as Secrets, version: versionProfile(haSpec().kubernetesVersion) } satisfies PhaseContext;
    const a = pxePhase.pxe!(ctx);
    const b = pxePhase.pxe!({ ...ctx, spec: specFor('full-pool') });
    assert.deepEqual(a, b);
    assert.deepEqual(a, pxeFiles(specFor('full-pool')));
    assert.ok(a.every((f) => f.mode === 0o644 && !f.secret));
    assert.equal(new Set(a.map((f) => f.path)).size, a.length);
  });
});
