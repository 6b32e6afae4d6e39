// What a rehearsal proves about the cluster, each check run from the lab's provisioner
// side with the rendered credentials (admin.conf, the etcd healthcheck client), the way
// an operator would check a real rack. The names are fixed: other tools read the report.
// Engine-neutral: a check needs the lab, the render, and an engine that can say which
// machine holds the VIP and power one off.
import { join } from 'node:path';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { parse, parseAllDocuments, stringify } from 'yaml';
import 'reflect-metadata'; // tsyringe (inside @peculiar/x509) needs the Reflect metadata API loaded first
import { Pkcs10CertificateRequest } from '@peculiar/x509';
import { apiHost, controlPlanes, etcdMembers, type Machine, type Spec } from '../spec/types.ts';
import type { ExecResult } from './lab/netns.ts';
import type { Lab } from './lab/lab.ts';
import { SMOKE_NODE_PORT } from '../catalog/cluster.ts';
import type { Outcome, Step } from './engine.ts';

export type CheckName =
  | 'etcd-healthy' | 'api-via-vip' | 'leader-election' | 'csr-auto-approved' | 'nodes-ready' | 'smoke-nodeport' | 'vip-failover' | 'etcd-member-loss' | 'dns'
  // the VM engine's boot-path checks
  | 'installed' | 'installed-from-blank-disk' | 'files-match-render' | 'static-networking' | 'reboot-from-disk'
  // issue 20: a machine with a bond (vm/bond.ts)
  | 'bond-failover';
export type CheckOutcome = 'ok' | 'failed' | 'not-run';

export interface CheckResult {
  name: CheckName;
  result: CheckOutcome;
  seconds: number;
  detail: string;
}

/** What a check may ask of the engine. */
export interface EngineControl {
  /** the machine whose NIC holds the VIP now, if any */
  vipHolder(): Promise<string | undefined>;
  /** power a machine off abruptly */
  powerOff(name: string): Promise<void>;
  /** machines still powered on */
  running(): string[];
}

export interface SmokeImage {
  ref: string;
  port: number;
  body: string;
}

export interface CheckContext {
  /** the checks run from the lab's hub (the provisioner's side of the network) */
  lab: Pick<Lab, 'hub'>;
  spec: Spec;
  /** the render directory (cluster/admin.conf, cluster/pki/...) */
  out: string;
  kubectl: string;
  etcdctl: string;
  engine: EngineControl;
  smoke: SmokeImage;
  log: (line: string) => void;
  /** how long one API request may take (VMs under TCG answer slowly) */
  requestTimeoutSeconds?: number;
  /** the operator interrupted: every wait ends at its next turn */
  signal?: AbortSignal;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const short = (r: ExecResult) => r.out.trim().split('\n').slice(-3).join(' | ').slice(0, 400);

/** Poll fn until it returns a string (success detail) or the deadline passes; returns the last failure. */
let interrupted: AbortSignal | undefined;

async function until(timeoutMs: number, everyMs: number, fn: () => Promise<string | { fail: string }>): Promise<{ ok: boolean; detail: string }> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not tried';
  for (let i = 0; i < 10_000; i++) {
    if (interrupted?.aborted) return { ok: false, detail: `interrupted (last: ${last})` };
    const r = await fn();
    if (typeof r === 'string') return { ok: true, detail: r };
    last = r.fail;
    if (Date.now() + everyMs > deadline) break;
    await sleep(everyMs);
  }
  return { ok: false, detail: last };
}

export class Checks {
  private readonly c: CheckContext;
  constructor(c: CheckContext) {
    this.c = c;
    interrupted = c.signal;
  }

  get apiURL(): string {
    return `https://${apiHost(this.c.spec)}:${this.c.spec.controlPlane.port}`;
  }

  /** kubectl with the rendered admin.conf, from the provisioner's side of the lab, through the VIP (by address: the lab has no DNS for the endpoint name). */
  kubectl(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
    const rt = this.c.requestTimeoutSeconds ?? 8;
    return this.c.lab.hub.exec(this.c.kubectl, ['--kubeconfig', join(this.c.out, 'cluster/admin.conf'), '--server', this.apiURL, `--request-timeout=${rt}s`, ...args], { timeoutMs: opts.timeoutMs ?? (rt + 12) * 1000, input: opts.input });
  }

  async kubectlJson<T>(args: string[]): Promise<T | undefined> {
    const r = await this.kubectl([...args, '-o', 'json']);
    if (r.code !== 0) return undefined;
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      return undefined;
    }
  }

  etcdctl(members: Machine[], args: string[]): Promise<ExecResult> {
    const pki = join(this.c.out, 'cluster/pki/etcd');
    return this.c.lab.hub.exec(this.c.etcdctl, [
      `--endpoints=${members.map((m) => `https://${m.ip}:2379`).join(',')}`,
      `--cacert=${pki}/ca.crt`, `--cert=${pki}/healthcheck-client.crt`, `--key=${pki}/healthcheck-client.key`,
      '--dial-timeout=3s', '--command-timeout=5s', ...args,
    ], { timeoutMs: 20_000, env: { ...process.env, ETCDCTL_API: '3' } });
  }

  async run(name: CheckName, fn: () => Promise<{ result: CheckOutcome; detail: string }>): Promise<CheckResult> {
    const t0 = Date.now();
    this.c.log(`check ${name} ...`);
    let r: { result: CheckOutcome; detail: string };
    try {
      r = await fn();
    } catch (e) {
      r = { result: 'failed', detail: `error: ${(e as Error).message}` };
    }
    const res = { name, result: r.result, seconds: Math.round((Date.now() - t0) / 100) / 10, detail: r.detail };
    this.c.log(`check ${name}: ${res.result} (${res.seconds}s) ${res.detail}`);
    return res;
  }

  /** Every member answers healthy over TLS with the rendered healthcheck client, and they agree on the member list. */
  async etcdHealthy(members = etcdMembers(this.c.spec), timeoutMs = 60_000): Promise<{ result: CheckOutcome; detail: string }> {
    if (members.length === 0) return { result: 'not-run', detail: 'the cluster file has no etcd machines' };
    const r = await until(timeoutMs, 3_000, async () => {
      const h = await this.etcdctl(members, ['endpoint', 'health', '-w', 'json']);
      let health: { endpoint: string; health: boolean; error?: string }[] = [];
      try {
        health = JSON.parse(h.stdout);
      } catch {
        return { fail: `etcdctl endpoint health: ${short(h)}` };
      }
      const bad = health.filter((e) => !e.health);
      if (health.length !== members.length || bad.length) return { fail: `unhealthy: ${bad.map((b) => `${b.endpoint} ${b.error ?? ''}`).join('; ') || short(h)}` };
      const l = await this.etcdctl(members, ['member', 'list', '-w', 'json']);
      let list: { members?: { name: string }[] } = {};
      try {
        list = JSON.parse(l.stdout);
      } catch {
        return { fail: `etcdctl member list: ${short(l)}` };
      }
      const names = (list.members ?? []).map((m) => m.name).sort();
      return `${health.length}/${members.length} members healthy over TLS (healthcheck-client cert); members: ${names.join(', ')}`;
    });
    return { result: r.ok ? 'ok' : 'failed', detail: r.detail };
  }

  /**
   * admin.conf's credentials as files, for curl: kubectl gives up on a TLS handshake after
   * 10 s, which an apiserver on a VM under software emulation can take.
   */
  private adminFiles(): { ca: string; cert: string; key: string } {
    const dir = join(this.c.out, 'cluster/.rehearsal-admin');
    const files = { ca: join(dir, 'ca.crt'), cert: join(dir, 'admin.crt'), key: join(dir, 'admin.key') };
    if (!existsSync(files.key)) {
      const conf = parse(readFileSync(join(this.c.out, 'cluster/admin.conf'), 'utf8')) as { clusters: { cluster: Record<string, string> }[]; users: { user: Record<string, string> }[] };
      const b64 = (v: string | undefined) => Buffer.from(v ?? '', 'base64');
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileSync(files.ca, b64(conf.clusters[0]?.cluster['certificate-authority-data']));
      writeFileSync(files.cert, b64(conf.users[0]?.user['client-certificate-data']));
      writeFileSync(files.key, b64(conf.users[0]?.user['client-key-data']), { mode: 0o600 });
    }
    return files;
  }

  async apiViaVip(timeoutMs = 60_000): Promise<{ result: CheckOutcome; detail: string }> {
    const f = this.adminFiles();
    const rt = this.c.requestTimeoutSeconds ?? 8;
    const r = await until(timeoutMs, 2_000, async () => {
      const k = await this.c.lab.hub.exec('curl', ['-sS', '--max-time', String(rt), '--cacert', f.ca, '--cert', f.cert, '--key', f.key, `${this.apiURL}/readyz`], { timeoutMs: (rt + 5) * 1000 });
      return k.code === 0 && k.stdout.trim() === 'ok' ? `GET ${this.apiURL}/readyz → ok (admin.conf's CA and client certificate${this.c.spec.controlPlane.vip ? ', VIP → haproxy → apiservers' : ''})` : { fail: `GET /readyz: ${short(k) || `exit ${k.code}`}` };
    });
    return { result: r.ok ? 'ok' : 'failed', detail: r.detail };
  }

  async leaderElection(): Promise<{ result: CheckOutcome; detail: string }> {
    const r = await until(60_000, 3_000, async () => {
      const parts: string[] = [];
      for (const name of ['kube-controller-manager', 'kube-scheduler']) {
        const lease = await this.kubectlJson<{ spec?: { holderIdentity?: string; renewTime?: string } }>(['-n', 'kube-system', 'get', 'lease', name]);
        const holder = lease?.spec?.holderIdentity;
        if (!holder) return { fail: `no holder for the ${name} lease` };
        parts.push(`${name}: ${holder.split('_')[0]}`);
      }
      return `leases held — ${parts.join(', ')}`;
    });
    return { result: r.ok ? 'ok' : 'failed', detail: r.detail };
  }

  /** Every machine's kubelet client CSR was approved by the controller ("AutoApproved"), none by a human, none pending. */
  async csrAutoApproved(): Promise<{ result: CheckOutcome; detail: string }> {
    const names = this.c.spec.machines.map((m) => m.name);
    const r = await until(60_000, 3_000, async () => {
      const list = await this.kubectlJson<{ items: Csr[] }>(['get', 'csr']);
      if (!list) return { fail: 'kubectl get csr failed' };
      const byNode = new Map<string, Csr>();
      for (const csr of list.items) {
        if (csr.spec.signerName && csr.spec.signerName !== 'kubernetes.io/kube-apiserver-client-kubelet') continue;
        const cn = csrCommonName(csr.spec.request);
        if (cn?.startsWith('system:node:')) byNode.set(cn.slice('system:node:'.length), csr);
      }
      const missing = names.filter((n) => !byNode.has(n));
      if (missing.length) return { fail: `no kubelet client CSR from ${missing.join(', ')}` };
      const notAuto = names.filter((n) => !(byNode.get(n)!.status?.conditions ?? []).some((c) => c.type === 'Approved' && c.reason === 'AutoApproved'));
      if (notAuto.length) return { fail: `not auto-approved: ${notAuto.join(', ')}` };
      const who = [...new Set(names.map((n) => byNode.get(n)!.spec.username))].join(', ');
      return `${names.length} kubelet client CSRs (CN system:node:<name>, requested by ${who}) approved by the csrapproving controller (AutoApproved), none by hand`;
    });
    return { result: r.ok ? 'ok' : 'failed', detail: r.detail };
  }

  async nodesReady(timeoutMs = 60_000): Promise<{ result: CheckOutcome; detail: string }> {
    const r = await until(timeoutMs, 3_000, async () => {
      const ready = await this.readyNodes();
      if (!ready) return { fail: 'kubectl get nodes failed' };
      const missing = this.c.spec.machines.map((m) => m.name).filter((n) => !ready.has(n));
      return missing.length ? { fail: `not Ready: ${missing.join(', ')}` } : `${ready.size} nodes Ready: ${[...ready].sort().join(', ')}`;
    });
    return { result: r.ok ? 'ok' : 'failed', detail: r.detail };
  }

  /** Names of the nodes whose Ready condition is True (undefined when the API does not answer). */
  async readyNodes(): Promise<Set<string> | undefined> {
    const nodes = await this.kubectlJson<{ items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[] }>(['get', 'nodes']);
    if (!nodes) return undefined;
    return new Set(nodes.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).map((n) => n.metadata.name));
  }

  /** Guide 02's test: the rendered Deployment + NodePort Service (with the rehearsal's image) answer on every node's IP. */
  async smokeNodePort(): Promise<{ result: CheckOutcome; detail: string }> {
    const { smoke } = this.c;
    const docs = parseAllDocuments(readFileSync(join(this.c.out, 'cluster/smoke-test.yaml'), 'utf8')).map((d) => d.toJS() as Record<string, any>);
    for (const d of docs) {
      if (d.kind === 'Deployment') {
        for (const c of d.spec.template.spec.containers) Object.assign(c, { image: smoke.ref, ports: [{ containerPort: smoke.port }] });
        d.spec.template.spec.terminationGracePeriodSeconds = 1;
      }
      if (d.kind === 'Service') for (const p of d.spec.ports) p.targetPort = smoke.port;
    }
    const manifest = docs.map((d) => stringify(d)).join('---\n');
    const apply = await this.kubectl(['apply', '-f', '-'], { input: manifest });
    if (apply.code !== 0) return { result: 'failed', detail: `kubectl apply: ${short(apply)}` };
    const rollout = await until(180_000, 3_000, async () => {
      const dep = await this.kubectlJson<{ spec: { replicas: number }; status?: { availableReplicas?: number } }>(['get', 'deployment', 'slipway-smoke']);
      if ((dep?.status?.availableReplicas ?? 0) >= (dep?.spec.replicas ?? 1)) return `${dep!.spec.replicas} replicas available`;
      const pods = await this.kubectl(['get', 'pods', '-l', 'app=slipway-smoke', '-o', 'wide', '--no-headers']);
      return { fail: `deployment not available: ${short(pods)}` };
    });
    if (!rollout.ok) return { result: 'failed', detail: rollout.detail };
    const pods = await this.kubectlJson<{ items: { spec: { nodeName?: string }; status: { podIP?: string } }[] }>(['get', 'pods', '-l', 'app=slipway-smoke']);
    const where = (pods?.items ?? []).map((p) => `${p.spec.nodeName}/${p.status.podIP}`).join(', ');
    const targets = this.c.engine.running().map((n) => this.c.spec.machines.find((m) => m.name === n)!).filter(Boolean);
    const answered: string[] = [];
    for (const m of targets) {
      const r = await until(60_000, 2_000, async () => {
        const c = await this.c.lab.hub.exec('curl', ['-fsS', '-m', '4', `http://${m.ip}:${SMOKE_NODE_PORT}/`], { timeoutMs: 8_000 });
        return c.code === 0 && c.stdout === smoke.body ? m.name : { fail: `${m.name} (${m.ip}:${SMOKE_NODE_PORT}): ${short(c) || 'wrong body'}` };
      });
      if (!r.ok) return { result: 'failed', detail: `${rollout.detail} on ${where}; no answer from ${r.detail}` };
      answered.push(m.name);
    }
    return { result: 'ok', detail: `Deployment (${rollout.detail} on ${where}) + NodePort ${SMOKE_NODE_PORT} answered from the lab on every node: ${answered.join(', ')}` };
  }

  /** Power off the machine holding the VIP (the start of both VIP checks); a result when that cannot be done. */
  private async powerOffVipHolder(): Promise<{ vip: string; holder: string; t0: number } | { result: CheckOutcome; detail: string }> {
    const vip = this.c.spec.controlPlane.vip;
    if (!vip) return { result: 'not-run', detail: 'the cluster file has no controlPlane.vip' };
    if (controlPlanes(this.c.spec).length < 2) return { result: 'not-run', detail: 'one control-plane machine: nothing to fail over to' };
    const holder = await this.c.engine.vipHolder();
    if (!holder) return { result: 'failed', detail: `no machine holds ${vip}` };
    const t0 = Date.now();
    await this.c.engine.powerOff(holder);
    this.c.log(`powered off ${holder} (held ${vip})`);
    return { vip, holder, t0 };
  }

  /** Power off the machine holding the VIP; the API must answer through the VIP again. */
  async vipFailover(timeoutMs = 120_000): Promise<{ result: CheckOutcome; detail: string; stopped?: string }> {
    const off = await this.powerOffVipHolder();
    if ('result' in off) return off;
    const { vip, holder, t0 } = off;
    const back = await this.apiViaVip(timeoutMs);
    const seconds = Math.round((Date.now() - t0) / 100) / 10;
    const next = await this.c.engine.vipHolder();
    if (back.result !== 'ok') return { result: 'failed', detail: `powered off ${holder}; the API did not answer through ${vip} within ${timeoutMs / 1000} s: ${back.detail}`, stopped: holder };
    if (!next || next === holder) return { result: 'failed', detail: `powered off ${holder}; ${vip} is held by ${next ?? 'nobody'}`, stopped: holder };
    return { result: 'ok', detail: `powered off ${holder}; ${vip} moved to ${next} and the API answered through it again after ${seconds}s`, stopped: holder };
  }

  /**
   * The VIP alone, without the API (for machines too slow to serve it): power off the
   * holder; another machine must hold the VIP within a bounded time, and haproxy on it
   * must accept connections on the API port.
   */
  async vipMoves(timeoutMs = 120_000): Promise<{ result: CheckOutcome; detail: string; stopped?: string }> {
    const off = await this.powerOffVipHolder();
    if ('result' in off) return off;
    const { vip, holder, t0 } = off;
    const moved = await until(timeoutMs, 1_000, async () => {
      const next = await this.c.engine.vipHolder();
      return next && next !== holder ? next : { fail: `${vip} held by ${next ?? 'nobody'}` };
    });
    const seconds = Math.round((Date.now() - t0) / 100) / 10;
    if (!moved.ok) return { result: 'failed', detail: `powered off ${holder}; ${vip} did not move within ${timeoutMs / 1000} s (${moved.detail})`, stopped: holder };
    const port = this.c.spec.controlPlane.port;
    const tcp = await this.c.lab.hub.exec('bash', ['-c', `exec 3<>/dev/tcp/${vip}/${port}`], { timeoutMs: 15_000 });
    if (tcp.code !== 0) return { result: 'failed', detail: `powered off ${holder}; ${vip} moved to ${moved.detail} after ${seconds}s, but nothing accepts on ${vip}:${port}: ${short(tcp)}`, stopped: holder };
    return { result: 'ok', detail: `powered off ${holder}; ${vip} moved to ${moved.detail} in ${seconds}s and haproxy on it accepts on port ${port}`, stopped: holder };
  }

  /** With one member gone, the rest are healthy and still accept writes. */
  async etcdMemberLoss(stopped: string | undefined, timeoutMs = 60_000): Promise<{ result: CheckOutcome; detail: string }> {
    const members = etcdMembers(this.c.spec);
    if (members.length < 3) return { result: 'not-run', detail: `${members.length} etcd member(s): losing one loses quorum by design` };
    let gone = stopped && members.some((m) => m.name === stopped) ? stopped : undefined;
    if (!gone) {
      gone = members.find((m) => this.c.engine.running().includes(m.name))?.name;
      if (!gone) return { result: 'failed', detail: 'no etcd member is running' };
      await this.c.engine.powerOff(gone);
    }
    const rest = members.filter((m) => m.name !== gone);
    const health = await this.etcdHealthy(rest, timeoutMs);
    if (health.result !== 'ok') return { result: 'failed', detail: `${gone} off: ${health.detail}` };
    const key = `/slipway-rehearsal/${Date.now()}`;
    const put = await this.etcdctl(rest, ['put', key, 'quorum']);
    const get = await this.etcdctl(rest, ['get', key, '--print-value-only']);
    await this.etcdctl(rest, ['del', key]);
    if (put.code !== 0 || get.stdout.trim() !== 'quorum') return { result: 'failed', detail: `${gone} off: write/read failed: ${short(put)} ${short(get)}` };
    return { result: 'ok', detail: `${gone} off: ${rest.length}/${members.length} members healthy and a write was read back` };
  }
}

/**
 * The two checks that lose a machine, in order: `vipCheck` powers off the VIP's holder
 * (vip-failover: the VIP, and with it the API or haproxy, must move), then etcd loses a
 * member (etcd-member-loss) — that same machine when it was one, so only one is lost.
 */
export function lostMachineChecks(checks: Checks, vipCheck: () => Promise<Outcome & { stopped?: string }>, memberLossTimeoutMs?: number): Step[] {
  let stopped: string | undefined;
  return [
    { check: 'vip-failover', run: async () => {
      const r = await vipCheck();
      stopped = r.stopped;
      return r;
    } },
    { check: 'etcd-member-loss', run: () => checks.etcdMemberLoss(stopped, memberLossTimeoutMs) },
  ];
}

interface Csr {
  spec: { request: string; signerName?: string; username?: string };
  status?: { conditions?: { type: string; reason?: string }[] };
}

function csrCommonName(requestB64: string): string | undefined {
  try {
    const req = new Pkcs10CertificateRequest(Buffer.from(requestB64, 'base64').toString('utf8'));
    return /CN=([^,]+)/.exec(req.subject)?.[1];
  } catch {
    return undefined;
  }
}
