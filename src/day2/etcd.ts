// `slipway etcd snapshot`: a consistent snapshot of the cluster's etcd, taken over TLS
// from the provisioner through etcd's own gRPC gateway (POST /v3/maintenance/snapshot,
// a stream of JSON chunks; etcd 3.4 serves it on the client port), so no etcdctl is
// needed where Slipway runs. One member's snapshot is the whole keyspace at one revision
// (a bbolt read transaction). The client certificate is the state's
// etcd/healthcheck-client: signed by the etcd CA, clientAuth only, and already what the
// provisioner's own checks use; the etcd CA key is not needed and not read.
import { request } from 'node:https';
import { open, rename, rm, readFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, basename, join } from 'node:path';
import { etcdMembers, type Spec } from '../spec/types.ts';
import { ETCD_CLIENT_PORT } from '../plan/phases/etcd.ts';
import { certPath, keyPath } from '../secrets/pki.ts';
import { snapshotStatus, type SnapshotStatus } from './snapshot-file.ts';

// the etcd client credentials live with apply's membership calls (apply/etcd-members.ts)
import type { EtcdClientTls } from '../apply/etcd-members.ts';
export { etcdClientTls, type EtcdClientTls } from '../apply/etcd-members.ts';

/** CA and the admin client pair the apiservers accept (the state's admin certificate). */
export async function apiClientTls(stateDir: string): Promise<EtcdClientTls> {
  const pki = join(stateDir, 'pki');
  const [ca, cert, key] = await Promise.all([certPath(pki, 'ca'), certPath(pki, 'admin'), keyPath(pki, 'admin')].map(async (f) => {
    try {
      return await readFile(f, 'utf8');
    } catch (e) {
      throw new Error(`cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): is ${stateDir} this cluster's state directory (--state)?`);
    }
  }));
  return { ca: ca!, cert: cert!, key: key! };
}

export const memberEndpoints = (spec: Spec): { name: string; url: string }[] => etcdMembers(spec).map((m) => ({ name: m.name, url: `https://${m.ip}:${ETCD_CLIENT_PORT}` }));

/** Streams one member's snapshot into `sink`; resolves with the bytes written. */
export function streamSnapshot(url: string, tls: EtcdClientTls, sink: (chunk: Buffer) => Promise<void>, timeoutMs: number, connectTimeoutMs = 5_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let total = 0;
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(e);
    };
    const req = request(
      `${url}/v3/maintenance/snapshot`,
      { method: 'POST', ca: tls.ca, cert: tls.cert, key: tls.key, headers: { 'content-type': 'application/json' }, timeout: timeoutMs },
      (res) => {
        if (res.statusCode !== 200) {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d.slice(0, 500)));
          res.on('end', () => fail(new Error(`${url}: HTTP ${res.statusCode}: ${body.trim().slice(0, 300)}`)));
          return;
        }
        // newline-delimited {"result":{...,"blob":"<base64>"}} or {"error":{...}}
        let pending = '';
        let chain = Promise.resolve();
        const line = (l: string) => {
          if (!l.trim()) return;
          let msg: { result?: { blob?: string; remaining_bytes?: string }; error?: { message?: string } };
          try {
            msg = JSON.parse(l);
          } catch {
            throw new Error(`${url}: the gateway sent something that is not JSON: ${l.slice(0, 120)}`);
          }
          if (msg.error) throw new Error(`${url}: etcd refused the snapshot: ${msg.error.message ?? JSON.stringify(msg.error)}`);
          const blob = Buffer.from(msg.result?.blob ?? '', 'base64');
          total += blob.length;
          if (blob.length) chain = chain.then(() => sink(blob));
        };
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          pending += d;
          let nl: number;
          try {
            while ((nl = pending.indexOf('\n')) >= 0) {
              line(pending.slice(0, nl));
              pending = pending.slice(nl + 1);
            }
          } catch (e) {
            fail(e as Error);
          }
          chain = chain.catch((e: Error) => fail(e));
        });
        res.on('end', () => {
          try {
            line(pending);
          } catch (e) {
            return fail(e as Error);
          }
          chain.then(() => {
            if (settled) return;
            settled = true;
            resolve(total);
          }, fail);
        });
        res.on('error', fail);
      },
    );
    // A member that is down (powered off, unplugged) must not hold the others up for the
    // kernel's SYN retries: the TLS handshake gets its own short bound.
    const connectTimer = setTimeout(() => fail(new Error(`${url}: no TLS connection within ${connectTimeoutMs / 1000} s (is the member down?)`)), connectTimeoutMs);
    req.on('socket', (sock) => sock.once('secureConnect', () => clearTimeout(connectTimer)));
    req.on('close', () => clearTimeout(connectTimer));
    req.on('timeout', () => fail(new Error(`${url}: no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e) => fail(new Error(`${url}: ${e.message}`)));
    req.end('{}');
  });
}

export interface SnapshotResult extends SnapshotStatus {
  file: string;
  member: string;
  url: string;
  sha256: string;
  bytes: number;
}

/**
 * Takes a snapshot from the first member that gives one, into `out` atomically: a temp
 * file beside it (0600: the snapshot holds every Secret of the cluster), checked as an
 * etcd snapshot, fsynced, then renamed. On any failure `out` is as it was.
 */
export async function takeSnapshot(members: { name: string; url: string }[], tls: EtcdClientTls, out: string, log: (s: string) => void, timeoutMs = 120_000): Promise<SnapshotResult> {
  if (!members.length) throw new Error('the cluster file has no machine with the etcd role');
  const failures: string[] = [];
  for (const m of members) {
    const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.chmod(0o600);
      const bytes = await streamSnapshot(m.url, tls, async (b) => void (await fh.write(b)), timeoutMs);
      await fh.sync();
      await fh.close();
      const data = await readFile(tmp);
      const status = snapshotStatus(data, `the snapshot from ${m.name}`);
      if (!status.checksummed) throw new Error(`${m.url}: the snapshot has no sha256 trailer (etcd always sends one): cut short?`);
      await rename(tmp, out);
      return { ...status, file: out, member: m.name, url: m.url, bytes, sha256: createHash('sha256').update(data).digest('hex') };
    } catch (e) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      failures.push(`${m.name}: ${(e as Error).message}`);
      log(`snapshot from ${m.name} failed: ${(e as Error).message}`);
    }
  }
  throw new Error(`no etcd member gave a snapshot:\n  ${failures.join('\n  ')}`);
}
