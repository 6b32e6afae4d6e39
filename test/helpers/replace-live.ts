// cp3 replaced by cp4 on a live containers rehearsal (real Kubernetes v1.20.2, real etcd
// 3.4, the lab's real serve), the way docs/day2.md tells an operator to, with /readyz
// probed through the VIP ten times a second during each step:
//   1. cp3 out of the file serve reads, `slipway apply`: cp3 drained, its Node deleted,
//      `member remove`, its units stopped, the others' lists without it; then cp3's
//      container is powered off;
//   2. cp4 (a new MAC and address) into cp3's place, `slipway apply`: its join recorded,
//      the others' lists with it, `member add`; serve reloaded (SIGHUP); a NEW container
//      booted through serve (src/rehearse/containers/kept.ts), which installs with
//      --initial-cluster-state=existing and joins.
// Each step is `ok` only once its effect is read from the cluster: etcd's member list and
// health, the Nodes, haproxy's backends and the apiservers' --etcd-servers on the machines.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT } from './cli.ts';
import { bootKept, inMachine, powerOffKept, vipProber, type KeptLab } from './kept-lab.ts';
import { parseClusterFile } from '../../src/spec/parse.ts';
import type { Spec } from '../../src/spec/types.ts';

export interface ReplaceStep {
  name: string;
  seconds: number;
  probes: { failed: number; sent: number; kinds: string };
  detail: string;
}

const CP4 = '    - name: cp4\n      mac: "52:54:00:20:30:14"\n      ip: 10.20.30.14/24\n      interface: eth0\n      roles: [control-plane, etcd]\n';
const CP3_BLOCK = /^ {4}- name: cp3\n(?: {6}.*\n)+/m;

function inLab(lab: KeptLab, argv: string[], timeoutMs = 60_000) {
  const r = spawnSync('ip', ['netns', 'exec', lab.hub, ...argv], { encoding: 'utf8', timeout: timeoutMs, cwd: ROOT });
  return { code: r.status, stdout: r.stdout ?? '', out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** etcd's members as the cluster says, asked through `endpoints` from the provisioner's side. */
function members(lab: KeptLab, endpoints: string[]): { name: string; peer: string; started: boolean }[] | undefined {
  const pki = join(lab.state, 'pki/etcd');
  const r = inLab(lab, ['etcdctl', `--endpoints=${endpoints.join(',')}`, `--cacert=${pki}/ca.crt`, `--cert=${pki}/healthcheck-client.crt`, `--key=${pki}/healthcheck-client.key`, '--dial-timeout=3s', '--command-timeout=5s', 'member', 'list', '-w', 'json'], 30_000);
  if (r.code !== 0) return undefined;
  const list = JSON.parse(r.stdout) as { members?: { name?: string; peerURLs: string[]; clientURLs?: string[] }[] };
  // a member added and not yet started has no name and no client URL
  return (list.members ?? []).map((m) => ({ name: m.name ?? '', peer: m.peerURLs[0]!, started: !!m.clientURLs?.length })).sort((a, b) => a.peer.localeCompare(b.peer));
}

function healthy(lab: KeptLab, endpoints: string[]): boolean {
  const pki = join(lab.state, 'pki/etcd');
  return inLab(lab, ['etcdctl', `--endpoints=${endpoints.join(',')}`, `--cacert=${pki}/ca.crt`, `--cert=${pki}/healthcheck-client.crt`, `--key=${pki}/healthcheck-client.key`, '--dial-timeout=3s', '--command-timeout=5s', 'endpoint', 'health'], 30_000).code === 0;
}

const kubectl = (lab: KeptLab, on: string, args: string) => inMachine(lab, on, `/opt/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=10s ${args} 2>&1`).out.trim();

/** What a control-plane machine's own files say: haproxy's backends and its apiserver's etcd servers. */
function lists(lab: KeptLab, machine: string): { haproxy: string[]; etcdServers: string[] } {
  const cfg = inMachine(lab, machine, 'cat /etc/haproxy/haproxy.cfg').out;
  const unit = inMachine(lab, machine, 'cat /etc/systemd/system/kube-apiserver.service').out;
  return {
    haproxy: [...cfg.matchAll(/^\s*server \S+ (\d+\.\d+\.\d+\.\d+):6443\b/gm)].map((m) => m[1]!),
    etcdServers: /--etcd-servers=(\S+)/.exec(unit)?.[1]?.split(',').map((u) => new URL(u).hostname) ?? [],
  };
}

async function until(what: string, ms: number, fn: () => boolean): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < 400 && performance.now() - t0 < ms; i++) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 2000));
  }
  throw new Error(`${what}: not within ${ms / 1000} s`);
}

function slipway(lab: KeptLab, args: string[]): { code: number | null; out: string; seconds: number } {
  const t0 = performance.now();
  const r = spawnSync('ip', ['netns', 'exec', lab.hub, process.execPath, BIN, ...args], { encoding: 'utf8', timeout: 20 * 60_000, cwd: ROOT });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, seconds: (performance.now() - t0) / 1000 };
}

/** The step's report line: printed `ok` only once `check` passed on the cluster; `FAILED` with why, then thrown. */
async function step(steps: ReplaceStep[], name: string, vip: string, lab: KeptLab, body: () => Promise<string>): Promise<void> {
  const t0 = performance.now();
  const probe = vipProber(lab, vip, `replace-${steps.length}`);
  let detail: string;
  let failure: unknown;
  try {
    detail = await body();
  } catch (e) {
    failure = e;
    detail = (e as Error).message.split('\n')[0]!;
  }
  const probes = await probe.finish();
  const s = { name, seconds: (performance.now() - t0) / 1000, probes, detail };
  console.log(`# replace ${name}: ${s.seconds.toFixed(1)} s, ${probes.failed}/${probes.sent} probes failed${probes.kinds ? ` (${probes.kinds})` : ''}: ${failure ? 'FAILED' : 'ok'}: ${detail}`);
  if (failure) throw failure;
  steps.push(s);
}

/**
 * The replacement on the kept lab, editing the file its serve reads (`lab.file`, which
 * must have cp1-cp3 as control-plane and etcd machines). Returns the two steps.
 */
export async function replaceOnLiveLab(lab: KeptLab): Promise<ReplaceStep[]> {
  const steps: ReplaceStep[] = [];
  const original = readFileSync(lab.file, 'utf8');
  const spec0 = parseClusterFile(original, lab.file).spec!;
  const vip = spec0.controlPlane.vip!;
  const cp3 = spec0.machines.find((m) => m.name === 'cp3')!;
  const args = ['-f', lab.file, '--state', lab.state, '--assets', lab.assets];
  const eps = (...ips: string[]) => ips.map((ip) => `https://${ip}:2379`);

  // 1. cp3 out
  assert.match(original, CP3_BLOCK);
  writeFileSync(lab.file, original.replace(CP3_BLOCK, ''));
  await step(steps, 'remove cp3 (apply)', vip, lab, async () => {
    const r = slipway(lab, ['apply', ...args, '--yes']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^etcd: member cp3 \(\w+\) removed; 2 members$/m, r.out);
    assert.match(r.out, /^cp3: stopped and disabled /m, r.out);
    const m = members(lab, eps('10.20.30.11', '10.20.30.12'));
    assert.deepEqual(m?.map((x) => `${x.name}:${x.started}`), ['cp1:true', 'cp2:true'], JSON.stringify(m));
    assert.ok(healthy(lab, eps('10.20.30.11', '10.20.30.12')), 'etcd healthy on cp1, cp2');
    assert.match(kubectl(lab, 'cp1', 'get node cp3'), /NotFound/);
    for (const cp of ['cp1', 'cp2']) assert.deepEqual(lists(lab, cp), { haproxy: ['10.20.30.11', '10.20.30.12'], etcdServers: ['10.20.30.11', '10.20.30.12'] }, cp);
    await powerOffKept(lab, cp3);
    return `apply ${r.seconds.toFixed(1)} s: drained, Node gone, member removed; etcd members cp1, cp2 (both healthy); haproxy and --etcd-servers on cp1, cp2 list cp1, cp2; cp3's container powered off`;
  });

  // 2. cp4 into cp3's place (the pod /24s of the machines after it come back to what they were)
  const withCp4 = original.replace(CP3_BLOCK, CP4);
  writeFileSync(lab.file, withCp4);
  const spec = parseClusterFile(withCp4, lab.file).spec! as Spec;
  const cp4 = spec.machines.find((m) => m.name === 'cp4')!;
  await step(steps, 'add cp4 (apply, serve, boot, join)', vip, lab, async () => {
    const r = slipway(lab, ['apply', ...args, '--yes']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^etcd: member cp4 added /m, r.out);
    assert.match(r.out, /^cp4: left to serve /m, r.out);
    const joins = JSON.parse(readFileSync(join(lab.state, 'etcd-joins.json'), 'utf8'));
    assert.match(JSON.stringify(joins), /cp4/, 'the join is recorded for serve');
    const booted = await bootKept(lab, spec, cp4);
    const unit = inMachine(lab, 'cp4', 'cat /etc/systemd/system/etcd.service').out;
    assert.match(unit, /--initial-cluster-state=existing/);
    const t0 = performance.now();
    const all = eps('10.20.30.11', '10.20.30.12', '10.20.30.14');
    await until('etcd: cp4 started and all 3 members healthy', 300_000, () => {
      const m = members(lab, all);
      return !!m && m.map((x) => `${x.name}:${x.started}`).join() === 'cp1:true,cp2:true,cp4:true' && healthy(lab, all);
    });
    const joined = (performance.now() - t0) / 1000;
    await until('cp4 a Ready node', 300_000, () => /^cp4\s+Ready\s/m.test(kubectl(lab, 'cp1', 'get node cp4 --no-headers')));
    const ready = (performance.now() - t0) / 1000;
    for (const cp of ['cp1', 'cp2', 'cp4']) assert.deepEqual(lists(lab, cp), { haproxy: ['10.20.30.11', '10.20.30.12', '10.20.30.14'], etcdServers: ['10.20.30.11', '10.20.30.12', '10.20.30.14'] }, cp);
    return `apply ${r.seconds.toFixed(1)} s (join recorded, lists, member add); serve reloaded and cp4's container installed and booted ${booted.toFixed(1)} s; etcd 3 healthy members cp1, cp2, cp4 after ${joined.toFixed(0)} s more, cp4 Ready after ${ready.toFixed(0)} s; haproxy and --etcd-servers on cp1, cp2, cp4 list cp1, cp2, cp4`;
  });
  return steps;
}
