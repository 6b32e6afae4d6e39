// Day 2 on a live containers rehearsal (real Kubernetes v1.20.2, real etcd 3.4, sshd in
// each machine, the lab's serve and its state), every step through the real CLI inside
// the lab's namespace, where the provisioner stands: certs check against what
// `openssl s_client` reads; a snapshot against `etcdctl snapshot status`; a restore
// refused while a member is down, then every member wiped and restored (a ConfigMap made
// before the snapshot is back, one made after is gone); certs renew --all delivered by
// apply while /readyz is probed through the VIP, the machines then serving the new
// certificates. Run by test/rehearse.test.ts on the cluster it rehearsed and checked (kept
// with --keep), before apply's own steps there.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT } from './cli.ts';
import { powerOnKept, vipProber, type KeptLab } from './kept-lab.ts';
import type { Machine, Spec } from '../../src/spec/types.ts';
import { machineTargets, serveDbPath, transportFor } from '../../src/apply/targets.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';

export interface Day2Step {
  name: string;
  seconds: number;
  detail: string;
  /** /readyz through the VIP, 10 a second, while the step ran */
  probes?: { failed: number; sent: number; kinds?: string };
}

const K8S_BIN = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes/v1.20.2/bin`;

function inLab(lab: KeptLab, argv: string[], timeoutMs = 10 * 60_000) {
  const t0 = performance.now();
  const r = spawnSync('ip', ['netns', 'exec', lab.hub, ...argv], { encoding: 'utf8', timeout: timeoutMs, cwd: ROOT });
  return { code: r.status, stdout: r.stdout ?? '', out: `${r.stdout ?? ''}${r.stderr ?? ''}`, seconds: (performance.now() - t0) / 1000 };
}

const slipway = (lab: KeptLab, args: string[], timeoutMs?: number) => inLab(lab, [process.execPath, BIN, ...args], timeoutMs);

function kubectl(lab: KeptLab, args: string[]) {
  return inLab(lab, [join(K8S_BIN, 'kubectl'), '--kubeconfig', join(lab.dir, 'out/cluster/admin.conf'), '--request-timeout=10s', ...args], 60_000);
}

/**
 * A kubectl write the next step depends on, right after the rehearsal powered a control-plane
 * machine off: haproxy needs up to 9 s (3 failed checks) to stop sending to its apiserver, so
 * a request may be lost in that window, as any client's may (once in CI). Tried at most 3
 * times, 3 s apart, every failed attempt printed; the prober's counts elsewhere measure availability.
 */
function kubectlWrite(lab: KeptLab, args: string[]) {
  let r = kubectl(lab, args);
  for (let i = 1; i < 3 && r.code !== 0; i++) {
    console.log(`# day2: kubectl ${args.join(' ')}: attempt ${i} failed (exit ${r.code}): ${r.out.trim().slice(0, 400)}`);
    spawnSync('sleep', ['3']);
    r = kubectl(lab, args);
    // the failed attempt reached etcd after all (its answer was what got lost)
    if (r.code !== 0 && /AlreadyExists/.test(r.out)) return { ...r, code: 0 };
  }
  return r;
}

/** As root on a machine over apply's transport: the provisioner's key, the host key serve pinned. */
async function ssh(lab: KeptLab, spec: Spec, m: Machine, script: string): Promise<{ code: number; out: string }> {
  const target = machineTargets(lab.state, spec).reachable.find((t) => t.machine.name === m.name);
  assert.ok(target, `${m.name}: no pinned host key in ${lab.state}/serve.db`);
  const t = transportFor(lab.state, { ssh: ['ip', 'netns', 'exec', lab.hub, 'ssh'], connectTimeoutS: 5 });
  try {
    const r = await t.run(target.ssh, { script }, { check: false, timeoutMs: 120_000 });
    return { code: r.code, out: r.stdout + r.stderr };
  } catch (e) {
    return { code: 255, out: (e as Error).message };
  } finally {
    t.close();
  }
}


/** What `openssl s_client` reads at host:port: not-after (as a Date) and serial. */
function served(lab: KeptLab, hostPort: string, clientCert = false): { notAfter: Date; serial: string } {
  const pki = join(lab.state, 'pki');
  const client = clientCert ? ` -cert ${pki}/etcd/healthcheck-client.crt -key ${pki}/etcd/healthcheck-client.key` : '';
  const r = inLab(lab, ['sh', '-c', `openssl s_client -connect ${hostPort}${client} </dev/null 2>/dev/null | openssl x509 -noout -enddate -serial`], 30_000);
  const end = /notAfter=(.*)/.exec(r.out)?.[1];
  const serial = /serial=(\w+)/.exec(r.out)?.[1];
  assert.ok(end && serial, `openssl s_client ${hostPort}: ${r.out}`);
  return { notAfter: new Date(end), serial };
}

const iso = (d: Date) => d.toISOString().replace('.000Z', 'Z');

async function until(what: string, ms: number, fn: () => boolean | Promise<boolean>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < 600 && performance.now() - t0 < ms; i++) {
    if (await fn()) return (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`${what}: not within ${ms / 1000} s`);
}

function etcdHealthy(lab: KeptLab, spec: Spec): boolean {
  const pki = join(lab.state, 'pki/etcd');
  const eps = spec.machines.filter((m) => m.roles.includes('etcd')).map((m) => `https://${m.ip}:2379`).join(',');
  const r = inLab(lab, ['etcdctl', `--endpoints=${eps}`, `--cacert=${pki}/ca.crt`, `--cert=${pki}/healthcheck-client.crt`, `--key=${pki}/healthcheck-client.key`, '--dial-timeout=3s', '--command-timeout=5s', 'endpoint', 'health'], 30_000);
  return r.code === 0;
}

export async function day2OnLiveLab(lab: KeptLab, clusterFile: string, spec: Spec, powerOff: string | undefined): Promise<Day2Step[]> {
  const steps: Day2Step[] = [];
  const f = ['-f', clusterFile, '--state', lab.state];
  const vip = spec.controlPlane.vip!;
  const members = spec.machines.filter((m) => m.roles.includes('etcd'));
  const cps = spec.machines.filter((m) => m.roles.includes('control-plane'));
  // serve's events (its store): what the machines reported while day 2 ran
  const storeEvents = () => {
    const s = new SqliteStore(serveDbPath(lab.state));
    try {
      return s.events({ limit: 1_000_000 });
    } finally {
      s.close();
    }
  };
  const day2From = storeEvents().at(-1)?.id ?? 0;
  const step = (s: Day2Step) => {
    steps.push(s);
    console.log(`# day2 ${s.name}: ${s.seconds.toFixed(1)} s${s.probes ? `, ${s.probes.failed}/${s.probes.sent} probes failed${s.probes.kinds ? ` (${s.probes.kinds})` : ''}` : ''}: ${s.detail}`);
  };

  // certs check: every served certificate in the table, not-after as openssl s_client reads it
  // a window past the leaves' lifetime: every one of them is due, so the check fails
  const validity = spec.pki.certValidityDays;
  const window = validity < 30 ? [] : ['--window', String(validity + 1)];
  const check = slipway(lab, ['certs', 'check', ...f, ...window]);
  assert.equal(check.code, 1, `every leaf is due (valid ${validity} days, window ${window[1] ?? 30}), so the check fails:\n${check.out}`);
  const rows = check.stdout.split('\n').filter((l) => /^\S+ +\S+ +\S+:\d+ /.test(l));
  const up = (name: string) => name !== powerOff;
  assert.equal(rows.length, 3 * 4 + 2 + 1, check.out);
  let compared = 0;
  for (const [name, machine, hostPort, notAfter, days, ca] of rows.map((l) => l.split(/ {2,}/))) {
    if (!up(machine!)) {
      assert.match(rows.find((r) => r.includes(hostPort!))!, /unreadable: (EHOSTUNREACH|ECONNREFUSED|no TLS handshake)/);
      continue;
    }
    if (name === 'kubelet') {
      assert.match(ca!, /^kubelet's own: /);
      continue;
    }
    const s = served(lab, hostPort!, name!.startsWith('etcd'));
    assert.equal(notAfter, iso(s.notAfter), `${name} on ${machine}: table ${notAfter}, openssl ${iso(s.notAfter)}`);
    assert.equal(ca, name!.startsWith('etcd') ? 'etcd/ca' : 'ca');
    assert.ok(Number(days) >= validity - 2 && Number(days) <= validity, `${name}: ${days} days of ${validity}`);
    compared++;
  }
  // what the machines hold, over SSH: their files and the kubeconfigs' client certificates
  const cp2 = cps.find((m) => m.name !== powerOff)!.name;
  for (const held of ['pki/apiserver.crt', 'pki/etcd/peer.crt', 'admin.conf', 'controller-manager.conf', 'kubelet-client']) {
    assert.match(check.stdout, new RegExp(`^${held.replace(/[./]/g, '\\$&')} +${cp2} +held +\\S+ +\\d+ +(etcd/)?ca +`, 'm'), `${held} held by ${cp2}:\n${check.out}`);
  }
  step({ name: 'certs check', seconds: check.seconds, detail: `exit 1 (every leaf due within ${window[1] ?? 30} days); ${compared} served certificates' not-after equal openssl s_client's; held files and kubeconfigs read over SSH` });

  // snapshot: what etcdctl snapshot status says of it
  const made = kubectlWrite(lab, ['create', 'configmap', 'day2-before', '--from-literal=k=before']);
  assert.equal(made.code, 0, made.out);
  const snap = join(lab.dir, 'day2-snapshot.db');
  const s = slipway(lab, ['etcd', 'snapshot', ...f, '-o', snap]);
  assert.equal(s.code, 0, s.out);
  const status = JSON.parse(spawnSync('etcdctl', ['snapshot', 'status', snap, '-w', 'json'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } }).stdout);
  const said = /revision (\d+), (\d+) keys, hash ([0-9a-f]{8})/.exec(s.stdout);
  assert.ok(said, s.out);
  assert.deepEqual([Number(said[1]), Number(said[2]), parseInt(said[3]!, 16)], [status.revision, status.totalKey, status.hash]);
  assert.match(s.stdout, new RegExp(`sha256 ${createHash('sha256').update(readFileSync(snap)).digest('hex')}`));
  step({ name: 'etcd snapshot', seconds: s.seconds, detail: `revision ${status.revision}, ${status.totalKey} keys, hash ${said[3]} = etcdctl snapshot status` });
  const madeAfter = kubectlWrite(lab, ['create', 'configmap', 'day2-after', '--from-literal=k=after']);
  assert.equal(madeAfter.code, 0, madeAfter.out);

  // a restore with a member down is refused before anything changes
  if (powerOff) {
    const r = slipway(lab, ['etcd', 'restore', ...f, '--from', snap, '--yes']);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`not every machine is ready for a restore, nothing was changed:\\n {2}${powerOff}: unreachable`));
    assert.equal(kubectl(lab, ['get', 'configmap', 'day2-after', '-o', 'jsonpath={.data.k}']).stdout, 'after');
    step({ name: 'restore refused', seconds: r.seconds, detail: `${powerOff} down: refused, nothing changed` });
    const m = spec.machines.find((x) => x.name === powerOff)!;
    await powerOnKept(lab, spec, m);
    const t = await until(`${powerOff} back with etcd healthy`, 180_000, async () => etcdHealthy(lab, spec) && (await ssh(lab, spec, m, 'true')).code === 0);
    step({ name: `${powerOff} powered on again`, seconds: t, detail: 'etcd healthy on every member' });
  }

  // wipe every member's data, then restore
  for (const m of members) {
    const w = await ssh(lab, spec, m, 'systemctl stop etcd && rm -rf /var/lib/etcd/member && echo wiped');
    assert.match(w.out, /wiped/, `${m.name}: ${w.out}`);
  }
  const r = slipway(lab, ['etcd', 'restore', ...f, '--from', snap, '--yes']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, new RegExp(`etcd healthy on ${members.map((m) => m.name).join(', ')} at revision ${status.revision} \\(snapshot ${status.revision}\\)`));
  assert.equal(kubectl(lab, ['get', 'configmap', 'day2-before', '-o', 'jsonpath={.data.k}']).stdout, 'before');
  assert.match(kubectl(lab, ['get', 'configmap', 'day2-after']).out, /NotFound/);
  step({ name: 'wipe + etcd restore', seconds: r.seconds, detail: `every member wiped; restored at revision ${status.revision}; day2-before is back, day2-after (made after the snapshot) is gone; ${r.out.match(/restore: [^\n]*/g)!.join(' | ')}` });
  const ready = await until('every node Ready after the restore', 300_000, () => {
    const n = kubectl(lab, ['get', 'nodes', '--no-headers']);
    return n.code === 0 && n.stdout.trim().split('\n').length === spec.machines.length && !/NotReady/.test(n.stdout);
  });
  step({ name: 'nodes Ready after restore', seconds: ready, detail: `${spec.machines.length} nodes` });

  // renew every leaf, deliver with apply while the VIP is probed
  const before = served(lab, `${vip}:6443`);
  const probe = vipProber(lab, vip, 'day2-prober');
  const sinceId = storeEvents().at(-1)?.id ?? 0;
  const renew = slipway(lab, ['certs', 'renew', ...f, '--all', '--assets', lab.assets, '--yes'], 20 * 60_000);
  const probes = await probe.finish();
  assert.equal(renew.code, 0, renew.out);
  // a restart apply makes is not a failure: no unit failed (OnFailure= would have reported it)
  const failedMeanwhile = storeEvents().filter((e) => e.id > sinceId && e.to === 'failed');
  assert.deepEqual(failedMeanwhile.map((e) => `${e.machine}: ${e.reason}`), [], 'machines reported failed during the renewal');
  assert.match(renew.out, /15 leaf certificates re-issued/);
  assert.match(renew.out, /delivering with apply:[\s\S]*apply: done: /);
  const newApiserver = new X509Certificate(readFileSync(join(lab.state, 'pki/apiserver.crt'), 'utf8'));
  for (const m of cps) {
    const now = served(lab, `${m.ip}:6443`);
    assert.equal(now.serial, newApiserver.serialNumber, `${m.name} still serves the old apiserver certificate`);
    assert.equal(iso(now.notAfter), iso(newApiserver.validToDate));
  }
  for (const m of members) {
    const etcdServer = new X509Certificate(readFileSync(join(lab.state, `pki/etcd/server/${m.name}.crt`), 'utf8'));
    assert.equal(served(lab, `${m.ip}:2379`, true).serial, etcdServer.serialNumber, `${m.name}'s etcd still serves its old certificate`);
  }
  const via = served(lab, `${vip}:6443`);
  assert.notEqual(via.serial, before.serial);
  assert.equal(via.serial, newApiserver.serialNumber);
  step({ name: 'certs renew --all --yes (delivered by apply)', seconds: renew.seconds, probes, detail: `apiserver through the VIP: not-after ${iso(before.notAfter)} → ${iso(via.notAfter)} (openssl s_client); every apiserver and etcd serves the new pair; per machine: ${[...renew.out.matchAll(/(\S+): done \(([^)]*)\)/g)].map((x) => `${x[1]} ${x[2]}`).join('; ')}` });
  const after = slipway(lab, ['certs', 'check', ...f, '--window', '10']);
  assert.equal(after.code, 0, after.out);
  // what went on the machines' records meanwhile (the restore stops units on purpose; a unit that failed says which)
  const failed = storeEvents().filter((e) => e.id > day2From && e.to === 'failed');
  console.log(`# day2 machines reported failed during day 2: ${failed.length ? failed.map((e) => `${e.machine} (${e.reason})`).join(', ') : 'none'}`);
  return steps;
}
