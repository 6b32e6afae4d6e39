// The API VIP files checked by their consumers: haproxy -c and keepalived -t on every
// control-plane machine's files; then the real thing: three namespaces on a bridge, each
// with an apiserver stand-in (openssl s_server answering HTTPS), haproxy and keepalived
// from the rendered files. The VIP must land on cp1, move to cp2 when cp1's apiserver
// dies, and come back when it returns.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haSpec, singleSpec } from './helpers/spec.ts';
import { Netns } from './helpers/netns.ts';
import { CHECK_SCRIPT, haPhase } from '../src/plan/phases/ha.ts';
import { controlPlanes, type Machine, type Spec } from '../src/spec/types.ts';
import type { File, PhaseContext } from '../src/plan/types.ts';
import type { Secrets } from '../src/secrets/types.ts';
import { versionProfile } from '../src/catalog/versions.ts';

const ctxFor = (spec: Spec): PhaseContext => ({ spec, secrets: {} as Secrets, version: versionProfile(spec.kubernetesVersion) });
const filesOf = (spec: Spec, m: Machine): Map<string, File> => new Map(haPhase.machine!(ctxFor(spec), m).map((f) => [f.path, f]));
const must = (files: Map<string, File>, path: string): string => {
  const f = files.get(path);
  assert.ok(f, `missing ${path}`);
  return f.contents;
};

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'slipway-ha-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

/** Write a machine's files under work/<name>/ and point keepalived at the written check script. */
function materialize(spec: Spec, m: Machine, tag: string) {
  const dir = join(work, tag, m.name);
  mkdirSync(dir, { recursive: true });
  const files = filesOf(spec, m);
  const paths: Record<string, string> = {};
  for (const [abs, f] of files) {
    const p = join(dir, abs.split('/').pop()!);
    writeFileSync(p, f.contents);
    chmodSync(p, f.mode);
    paths[abs] = p;
  }
  const script = paths[CHECK_SCRIPT]!;
  // Only the script's path changes: keepalived checks that the script exists and that no
  // one but root can change it, so it must be the real file.
  const keepalived = join(dir, 'keepalived.test.conf');
  writeFileSync(keepalived, must(files, '/etc/keepalived/keepalived.conf').replaceAll(CHECK_SCRIPT, script));
  return { dir, files, haproxy: paths['/etc/haproxy/haproxy.cfg']!, keepalived, script, sysctl: paths['/etc/sysctl.d/90-slipway-haproxy.conf']! };
}

describe('haproxy -c and keepalived -t', () => {
  const spec = haSpec();
  const cps = controlPlanes(spec);

  for (const m of cps)
    test(`${m.name}: haproxy and keepalived accept the files`, () => {
      const f = materialize(spec, m, 'check');
      const h = run('haproxy', ['-c', '-f', f.haproxy]);
      assert.equal(h.code, 0, h.out);
      assert.match(h.out, /Configuration file is valid/);
      assert.doesNotMatch(h.out, /WARNING|ALERT/, h.out);
      // -e: a missing file is an error (plain -t exits 0 on it); any output is a complaint.
      const k = run('keepalived', ['-t', '-e', '-f', f.keepalived]);
      assert.equal(k.code, 0, k.out);
      assert.equal(k.out.trim(), '', k.out);
      assert.equal(run('sh', ['-n', f.script]).code, 0);
      assert.equal(f.files.get(CHECK_SCRIPT)!.mode, 0o755);
      assert.match(must(f.files, '/etc/sysctl.d/90-slipway-haproxy.conf'), /^net\.ipv4\.ip_nonlocal_bind = 1$/m);
    });

  test('control: keepalived -t rejects the file without script security, and a bad VRID', () => {
    const f = materialize(spec, cps[0]!, 'control');
    const conf = must(f.files, '/etc/keepalived/keepalived.conf').replaceAll(CHECK_SCRIPT, f.script);
    const noSecurity = join(f.dir, 'nosec.conf');
    writeFileSync(noSecurity, conf.replace(/^ *enable_script_security\n/m, ''));
    assert.notEqual(run('keepalived', ['-t', '-e', '-f', noSecurity]).code, 0);
    const badVrid = join(f.dir, 'vrid.conf');
    writeFileSync(badVrid, conf.replace(/virtual_router_id \d+/, 'virtual_router_id 300'));
    assert.notEqual(run('keepalived', ['-t', '-e', '-f', badVrid]).code, 0);
  });

  test('frontend on the VIP, every apiserver on its own IP:6443 with TLS health checks', () => {
    const cfg = must(filesOf(spec, cps[0]!), '/etc/haproxy/haproxy.cfg');
    assert.match(cfg, /^  bind 10\.20\.30\.10:6443$/m);
    assert.match(cfg, /^  mode tcp$/m);
    assert.match(cfg, /^  option httpchk GET \/readyz$/m);
    assert.match(cfg, /^  default-server check check-ssl verify none /m);
    const servers = [...cfg.matchAll(/^  server (\S+) (\S+)$/gm)].map((x) => [x[1], x[2]]);
    assert.deepEqual(servers, cps.map((c) => [c.name, `${c.ip}:6443`]));
    // every control-plane machine gets the same haproxy.cfg
    for (const m of cps) assert.equal(must(filesOf(spec, m), '/etc/haproxy/haproxy.cfg'), cfg);
  });

  test('keepalived: distinct priorities in machine order, unicast to the other control planes', () => {
    const priorities: number[] = [];
    for (const m of cps) {
      const conf = must(filesOf(spec, m), '/etc/keepalived/keepalived.conf');
      priorities.push(Number(/^  priority (\d+)$/m.exec(conf)![1]));
      assert.match(conf, /^  state BACKUP$/m);
      assert.doesNotMatch(conf, /^\s*nopreempt/m);
      assert.match(conf, /^  interface eth0$/m);
      assert.match(conf, /^  virtual_router_id 51$/m);
      assert.match(conf, new RegExp(`^  unicast_src_ip ${m.ip.replace(/\./g, '\\.')}$`, 'm'));
      const peers = /^  unicast_peer \{\n((?:    \S+\n)*)  \}$/m.exec(conf)![1]!.trim().split(/\s+/);
      assert.deepEqual(peers, cps.filter((c) => c !== m).map((c) => c.ip));
      assert.match(conf, /^  virtual_ipaddress \{\n    10\.20\.30\.10\/24\n  \}$/m);
      assert.match(conf, /^  track_script \{\n    check_apiserver\n  \}$/m);
      const pass = /^    auth_pass (\S+)$/m.exec(conf)![1]!;
      assert.ok(pass.length <= 8, 'keepalived truncates VRRPv2 passwords to 8 characters');
      // the weight takes a failing machine below every healthy one
      const weight = Number(/^  weight (-\d+)$/m.exec(conf)![1]);
      assert.ok(150 + weight < Math.min(...priorities, 130), `weight ${weight}`);
      const script = must(filesOf(spec, m), CHECK_SCRIPT);
      assert.match(script, new RegExp(`curl -sfk --max-time 2 -o /dev/null https://${m.ip.replace(/\./g, '\\.')}:6443/healthz`));
    }
    assert.deepEqual(priorities, [150, 140, 130]);
    // a named interface is used as given
    const named = haSpec();
    named.machines[1]!.interface = 'enp1s0';
    assert.match(must(filesOf(named, named.machines[1]!), '/etc/keepalived/keepalived.conf'), /^  interface enp1s0$/m);
  });

  test('only control-plane machines with a VIP get files; same input, same bytes', () => {
    for (const w of spec.machines.filter((m) => !m.roles.includes('control-plane'))) assert.deepEqual(haPhase.machine!(ctxFor(spec), w), []);
    const single = singleSpec();
    assert.deepEqual(haPhase.machine!(ctxFor(single), single.machines[0]!), []);
    for (const m of cps) assert.deepEqual(haPhase.machine!(ctxFor(haSpec()), m), haPhase.machine!(ctxFor(haSpec()), m));
  });
});

// ---------------------------------------------------------------------------------------

describe('failover with the real daemons', () => {
  test('the VIP lands on cp1, moves to cp2 when cp1\'s apiserver dies, and comes back', { timeout: 180_000 }, async () => {
    const spec = haSpec();
    const cps = controlPlanes(spec);
    const vip = spec.controlPlane.vip!;
    const hub = Netns.create();
    const nss: Netns[] = [];
    const logs = new Map<string, string>();
    const capture = (what: string, child: { stdout: NodeJS.ReadableStream | null; stderr: NodeJS.ReadableStream | null }) => {
      logs.set(what, '');
      const add = (d: Buffer) => logs.set(what, (logs.get(what) + d.toString()).slice(-20_000));
      child.stdout?.on('data', add);
      child.stderr?.on('data', add);
    };
    const dump = () => [...logs].map(([k, v]) => `--- ${k}\n${v}`).join('\n');
    try {
      // A self-signed certificate for the apiserver stand-ins.
      const key = join(work, 'stub.key');
      const crt = join(work, 'stub.crt');
      const o = run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt, '-subj', '/CN=apiserver-stub', '-days', '1']);
      assert.equal(o.code, 0, o.out);

      hub.addBridge('br0');
      const stubs = new Map<string, ReturnType<Netns['spawn']>>();
      const startStub = (ns: Netns, m: Machine) => {
        // answers any HTTPS request with 200, like /healthz and /readyz of a healthy apiserver
        const child = ns.spawn('openssl', ['s_server', '-accept', `${m.ip}:6443`, '-cert', crt, '-key', key, '-www', '-quiet']);
        capture(`${m.name} apiserver`, child);
        stubs.set(m.name, child);
      };
      for (const [i, m] of cps.entries()) {
        const ns = Netns.create();
        nss.push(ns);
        hub.addVeth(`v${i}`, 'eth0', ns);
        hub.setMaster(`v${i}`, 'br0');
        ns.addAddress('eth0', `${m.ip}/24`);
        const f = materialize(spec, m, 'run');
        // The rendered sysctl file, applied inside the namespace (ip_nonlocal_bind is
        // per network namespace): without it haproxy cannot bind the VIP on cp2 and cp3.
        const s = await ns.exec('sysctl', ['-p', f.sysctl]);
        assert.equal(s.code, 0, s.out);
        startStub(ns, m);
        capture(`${m.name} haproxy`, ns.spawn('haproxy', ['-db', '-f', f.haproxy]));
        const ka = ['-n', '-l', '-D', '-G', '-P', '-f', f.keepalived, '-p', join(f.dir, 'keepalived.pid'), '-r', join(f.dir, 'vrrp.pid')];
        capture(`${m.name} keepalived`, ns.spawn('keepalived', ka));
      }

      const holders = async () => {
        const out: string[] = [];
        for (const [i, ns] of nss.entries()) {
          const r = await ns.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'], { timeoutMs: 5_000 });
          if (r.stdout.includes(` inet ${vip}/`)) out.push(cps[i]!.name);
        }
        return out;
      };
      const waitHolder = async (name: string, why: string) => {
        let last: string[] = [];
        try {
          await nss[0]!.waitFor(`VIP on ${name} (${why})`, async () => {
            last = await holders();
            return last.length === 1 && last[0] === name;
          }, 45_000, 500);
        } catch (e) {
          throw new Error(`${(e as Error).message}; holders now: [${last.join(', ')}]\n${dump()}`);
        }
      };
      // Through the VIP, from a machine not holding it: haproxy on the holder serves the API.
      const viaVip = async (from: Netns) => (await from.exec('curl', ['-sfk', '--max-time', '3', '-o', '/dev/null', `https://${vip}:${spec.controlPlane.port}/healthz`])).code;

      await waitHolder('cp1', 'highest priority, all healthy');
      assert.equal(await viaVip(nss[2]!), 0, dump());

      await nss[0]!.kill(stubs.get('cp1')!);
      await waitHolder('cp2', "cp1's apiserver is down");
      assert.equal(await viaVip(nss[2]!), 0, `haproxy on cp2 must route around cp1\n${dump()}`);

      startStub(nss[0]!, cps[0]!);
      await waitHolder('cp1', "cp1's apiserver is back");
    } finally {
      for (const ns of nss) await ns.close();
      await hub.close();
    }
  });
});
