// etcd's membership API from the provisioner, over TLS through etcd's gRPC gateway on the
// client port (POST /v3/cluster/member/{list,add,remove}; GET /health), so no etcdctl is
// needed where Slipway runs. The client certificate is the state's
// etcd/healthcheck-client (signed by the etcd CA, clientAuth only; Slipway's etcd runs
// without etcd auth, so any client the CA signed may change membership, as etcdctl with
// the same pair could). The etcd CA key is never read.
import { mtlsRequest, type ClientTls } from '../lib/mtls.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { certPath, keyPath } from '../secrets/pki.ts';

export interface EtcdClientTls extends ClientTls {
  ca: string;
  cert: string;
  key: string;
}

/** The provisioner's etcd client credentials from the state directory (read only). */
export async function etcdClientTls(stateDir: string): Promise<EtcdClientTls> {
  const pki = join(stateDir, 'pki');
  const read = async (f: string) => {
    try {
      return await readFile(f, 'utf8');
    } catch (e) {
      throw new Error(`cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): is ${stateDir} this cluster's state directory (--state)?`);
    }
  };
  const [ca, cert, key] = await Promise.all([read(certPath(pki, 'etcd/ca')), read(certPath(pki, 'etcd/healthcheck-client')), read(keyPath(pki, 'etcd/healthcheck-client'))]);
  return { ca, cert, key };
}

export interface EtcdMember {
  /** uint64, as the gateway's JSON writes it (a decimal string) */
  id: string;
  /** empty until the member has started once (a member added but not yet running) */
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

/** One JSON request to a member's gateway; rejects with the member's URL and etcd's message. */
export async function etcdCall<T>(url: string, path: string, tls: EtcdClientTls, body: unknown, timeoutMs = 10_000): Promise<T> {
  let r;
  try {
    r = await mtlsRequest(`${url}${path}`, tls, { method: body === undefined ? 'GET' : 'POST', body, timeoutMs });
  } catch (e) {
    throw new Error(`${url}${path}: ${(e as Error).message}`);
  }
  let json: { error?: string; message?: string } & Record<string, unknown>;
  try {
    json = JSON.parse(r.body);
  } catch {
    throw new Error(`${url}${path}: HTTP ${r.status}, not JSON: ${r.body.trim().slice(0, 200)}`);
  }
  if (r.status !== 200 || json.error) throw new Error(`${url}${path}: etcd refused: ${json.message ?? json.error ?? `HTTP ${r.status}`}`);
  return json as T;
}

type RawMember = { ID?: string; name?: string; peerURLs?: string[]; clientURLs?: string[]; isLearner?: boolean };
const member = (m: RawMember): EtcdMember => ({ id: String(m.ID ?? ''), name: m.name ?? '', peerURLs: m.peerURLs ?? [], clientURLs: m.clientURLs ?? [], isLearner: !!m.isLearner });

/** The first of `urls` that answers, with its answer; every failure named when none does. */
async function firstAnswer<T>(urls: string[], call: (url: string) => Promise<T>): Promise<{ url: string; value: T }> {
  const failures: string[] = [];
  for (const url of urls) {
    try {
      return { url, value: await call(url) };
    } catch (e) {
      failures.push((e as Error).message);
    }
  }
  throw new Error(`no etcd member answered: ${failures.join('; ') || 'no endpoints'}`);
}

/** The cluster's members, as the first member of `urls` that answers sees them. */
export async function listMembers(urls: string[], tls: EtcdClientTls): Promise<EtcdMember[]> {
  const r = await firstAnswer(urls, (u) => etcdCall<{ members?: RawMember[] }>(u, '/v3/cluster/member/list', tls, {}));
  return (r.value.members ?? []).map(member);
}

/**
 * etcd refuses a membership change ("unhealthy cluster") until every member has been
 * connected for a few seconds (its strict reconfiguration check, as after a restart): such
 * a refusal is retried, every 2 s for at most `seconds`; any other is final.
 */
async function whenHealthy<T>(what: () => Promise<T>, seconds = 30): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      return await what();
    } catch (e) {
      if (!/unhealthy cluster/.test((e as Error).message) || Date.now() >= deadline) throw e;
      await new Promise((r) => setTimeout(r, 2_000));
    }
  }
}

/** `member add`: the new member's peer URL; returns the new member (not started: no name yet). */
export async function addMember(urls: string[], tls: EtcdClientTls, peerURL: string): Promise<EtcdMember> {
  const r = await whenHealthy(() => firstAnswer(urls, (u) => etcdCall<{ member?: RawMember }>(u, '/v3/cluster/member/add', tls, { peerURLs: [peerURL] })));
  if (!r.value.member?.ID) throw new Error(`${r.url}: member add answered without the new member`);
  return member(r.value.member);
}

/** `member remove` by id. */
export async function removeMember(urls: string[], tls: EtcdClientTls, id: string): Promise<void> {
  await whenHealthy(() => firstAnswer(urls, (u) => etcdCall(u, '/v3/cluster/member/remove', tls, { ID: id })));
}

/** A member's own /health (it answers true when it has a leader and can serve). */
export async function memberHealthy(clientURL: string, tls: EtcdClientTls, timeoutMs = 5_000): Promise<boolean> {
  try {
    const r = await etcdCall<{ health?: string }>(clientURL, '/health', tls, undefined, timeoutMs);
    return r.health === 'true';
  } catch {
    return false;
  }
}
