// `slipway certs check`: the certificates the machines actually serve, read off the wire
// (TLS handshakes from the provisioner: apiserver, etcd client and peer ports, kubelet,
// and the API through the VIP), beside the leaves and CAs the state directory holds,
// each with its not-after, days left and the CA that signed it (one of the cluster's
// three, or named as someone else's). Something within the renewal window, expired or
// unreadable makes the check fail. `certs renew` re-issues leaves in the state.
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { controlPlanes, etcdMembers, hasRole, type Spec } from '../spec/types.ts';
import { apiserverPort } from '../plan/phases/control-plane.ts';
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT } from '../plan/phases/etcd.ts';
import { CA_IDS, certList } from '../secrets/certlist.ts';
import { certPath } from '../secrets/pki.ts';
import type { EtcdClientTls } from './etcd.ts';
import type { SshMachine } from '../apply/ssh.ts';

export const KUBELET_PORT = 10250;
const DAY_MS = 24 * 60 * 60 * 1000;

/** One TLS port to read a certificate from. */
export interface Endpoint {
  /** what serves there: apiserver, etcd-server, etcd-peer, kubelet */
  name: string;
  machine: string;
  host: string;
  port: number;
  /** present the etcd client certificate (etcd wants one on both ports) */
  etcdClient?: boolean;
}

/** Every port a machine of the file serves TLS on, as its roles say, then the VIP. */
export function endpoints(spec: Spec): Endpoint[] {
  const out: Endpoint[] = [];
  const etcd = new Set(etcdMembers(spec).map((m) => m.name));
  const cps = new Set(controlPlanes(spec).map((m) => m.name));
  for (const m of spec.machines) {
    if (cps.has(m.name)) out.push({ name: 'apiserver', machine: m.name, host: m.ip, port: apiserverPort(spec) });
    if (etcd.has(m.name)) {
      out.push({ name: 'etcd-server', machine: m.name, host: m.ip, port: ETCD_CLIENT_PORT, etcdClient: true });
      out.push({ name: 'etcd-peer', machine: m.name, host: m.ip, port: ETCD_PEER_PORT, etcdClient: true });
    }
    // every machine runs a kubelet (control-plane ones too: they are nodes)
    if (hasRole(m, 'worker') || cps.has(m.name) || etcd.has(m.name)) out.push({ name: 'kubelet', machine: m.name, host: m.ip, port: KUBELET_PORT });
  }
  if (spec.controlPlane.vip) out.push({ name: 'apiserver', machine: 'VIP', host: spec.controlPlane.vip, port: spec.controlPlane.port });
  return out;
}

export interface CertRow {
  name: string;
  machine: string;
  /** host:port, or "state" for the state directory's copy */
  where: string;
  notAfter?: Date;
  daysLeft?: number;
  /** the cluster CA that signed it, "self (CA)" for a CA, or the issuer's name */
  ca?: string;
  /** set when it could not be read */
  error?: string;
  serial?: string;
}

export interface Cas {
  byId: Map<string, X509Certificate>;
}

export async function readCas(stateDir: string): Promise<Cas> {
  const byId = new Map<string, X509Certificate>();
  for (const id of CA_IDS) {
    const f = certPath(join(stateDir, 'pki'), id);
    let pem: string;
    try {
      pem = await readFile(f, 'utf8');
    } catch (e) {
      throw new Error(`cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): is ${stateDir} this cluster's state directory (--state)?`);
    }
    byId.set(id, new X509Certificate(pem));
  }
  return { byId };
}

/** Which of the cluster's CAs signed `c`, else the issuer as the certificate names it. */
export function signer(c: X509Certificate, cas: Cas): string {
  for (const [id, ca] of cas.byId) if (c.checkIssued(ca) && c.verify(ca.publicKey)) return id;
  if (c.ca && c.issuer === c.subject) return 'self-signed CA';
  const cn = /CN=([^\n,]+)/.exec(c.issuer)?.[1];
  return `not the cluster's: ${cn ?? c.issuer.replace(/\n/g, ', ')}`;
}

function row(base: Pick<CertRow, 'name' | 'machine' | 'where'>, c: X509Certificate, cas: Cas, now: number): CertRow {
  let ca = c.ca && c.checkIssued(c) ? 'self (CA)' : signer(c, cas);
  // Without serverTLSBootstrap the kubelet serves a pair it made itself (its own "<host>-ca@<time>").
  if (base.name === 'kubelet' && ca.startsWith("not the cluster's: ")) ca = `kubelet's own: ${ca.slice("not the cluster's: ".length)}`;
  return { ...base, notAfter: c.validToDate, daysLeft: Math.floor((c.validToDate.getTime() - now) / DAY_MS), ca, serial: c.serialNumber };
}

/** The leaf certificate served at host:port (no verification: reading it is the point). */
export function servedCertificate(ep: Endpoint, tls: EtcdClientTls | undefined, timeoutMs: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: ep.host, port: ep.port, rejectUnauthorized: false, ...(ep.etcdClient && tls ? { cert: tls.cert, key: tls.key } : {}), timeout: timeoutMs });
    const done = (e?: Error, c?: X509Certificate) => {
      s.destroy();
      if (e) reject(e);
      else resolve(c!);
    };
    s.once('secureConnect', () => {
      const raw = s.getPeerCertificate()?.raw;
      if (!raw) return done(new Error('no certificate presented'));
      try {
        done(undefined, new X509Certificate(raw));
      } catch (e) {
        done(e as Error);
      }
    });
    s.once('timeout', () => done(new Error(`no TLS handshake within ${timeoutMs / 1000} s`)));
    s.once('error', (e) => done(e));
  });
}

/** The served certificates, in `endpoints` order, read concurrently. */
export async function checkServed(eps: Endpoint[], cas: Cas, tls: EtcdClientTls | undefined, now: number, timeoutMs = 5000): Promise<CertRow[]> {
  return Promise.all(
    eps.map(async (ep) => {
      const base = { name: ep.name, machine: ep.machine, where: `${ep.host}:${ep.port}` };
      try {
        return row(base, await servedCertificate(ep, tls, timeoutMs), cas, now);
      } catch (e) {
        return { ...base, error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
      }
    }),
  );
}

/** The state directory's CAs and leaves for this cluster file, in certificate-list order. */
export async function checkState(stateDir: string, spec: Spec, cas: Cas, now: number): Promise<CertRow[]> {
  const pki = join(stateDir, 'pki');
  return Promise.all(
    certList(spec).map(async (def) => {
      const base = { name: def.id, machine: '-', where: 'state' };
      try {
        return row(base, new X509Certificate(await readFile(certPath(pki, def.id), 'utf8')), cas, now);
      } catch (e) {
        return { ...base, error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
      }
    }),
  );
}

/**
 * What a machine runs (as root, over SSH) to show the certificates it holds: every
 * certificate file under /etc/kubernetes/pki, the kubelet's rotated client pair, and the
 * client certificates its kubeconfigs embed, each after a "== PATH" line. Only the
 * CERTIFICATE blocks leave the machine, never a key. `root`: a directory to read instead
 * of / (tests read a rendered machine's root/).
 */
export function heldScript(root = ''): string {
  const r = root.replace(/'/g, '');
  return [
    `R='${r}'`,
    'certs() { sed -n "/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p"; }',
    'for f in $(find "$R/etc/kubernetes/pki" -name "*.crt" 2>/dev/null | sort) "$R/var/lib/kubelet/pki/kubelet-client-current.pem"; do',
    '  if [ -r "$f" ]; then echo "== ${f#"$R"}"; certs < "$f"; fi',
    'done',
    'for c in "$R"/etc/kubernetes/*.conf; do',
    '  d=$(sed -n "s/^ *client-certificate-data: *//p" "$c" 2>/dev/null | head -n 1)',
    '  if [ -n "$d" ]; then echo "== ${c#"$R"}"; echo "$d" | base64 -d | certs; fi',
    'done',
    'exit 0',
  ].join('\n') + '\n';
}

/** heldScript's output: each path with its first certificate. */
export function parseHeld(out: string): { path: string; pem: string }[] {
  const res: { path: string; pem: string }[] = [];
  for (const part of out.split(/^== /m).slice(1)) {
    const nl = part.indexOf('\n');
    const path = part.slice(0, nl).trim();
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(part)?.[0];
    if (path && pem) res.push({ path, pem: pem + '\n' });
  }
  return res;
}

/** A held file's short name in the table: pki/apiserver.crt, admin.conf, kubelet-client. */
export function heldName(path: string): string {
  if (path === '/var/lib/kubelet/pki/kubelet-client-current.pem') return 'kubelet-client';
  return path.replace(/^\/etc\/kubernetes\//, '');
}

/** The machines' held certificates, over a transport; one row per certificate, or one naming why a machine could not be read. */
export async function checkHeld(
  machines: { name: string; ssh?: SshMachine; why?: string }[],
  run: (m: SshMachine, script: string) => Promise<string>,
  cas: Cas,
  now: number,
): Promise<CertRow[]> {
  const per = await Promise.all(
    machines.map(async (m): Promise<CertRow[]> => {
      const base = { machine: m.name, where: 'held' };
      if (!m.ssh) return [{ ...base, name: 'files', error: m.why ?? 'not reachable' }];
      try {
        const held = parseHeld(await run(m.ssh, heldScript()));
        if (!held.length) return [{ ...base, name: 'files', error: 'no certificates under /etc/kubernetes' }];
        return held.map((h) => {
          try {
            return row({ ...base, name: heldName(h.path) }, new X509Certificate(h.pem), cas, now);
          } catch (e) {
            return { ...base, name: heldName(h.path), error: (e as Error).message };
          }
        });
      } catch (e) {
        return [{ ...base, name: 'files', error: (e as Error).message.replace(`${m.name}: `, '') }];
      }
    }),
  );
  return per.flat();
}

/** Why a row fails the check, or undefined when it passes. */
export function dueReason(r: CertRow, windowDays: number): string | undefined {
  if (r.error) return `unreadable: ${r.error}`;
  if (r.daysLeft! < 0) return 'expired';
  if (r.daysLeft! < windowDays) return `due (within ${windowDays} days)`;
  if (r.ca?.startsWith("not the cluster's")) return "signed by a CA that is not the cluster's";
  return undefined;
}

/** The table `certs check` prints, aligned, with a STATUS column. */
export function formatTable(rows: CertRow[], windowDays: number): string {
  const head = ['NAME', 'MACHINE', 'WHERE', 'NOT-AFTER', 'DAYS', 'CA', 'STATUS'];
  const body = rows.map((r) => [r.name, r.machine, r.where, r.notAfter ? r.notAfter.toISOString().replace('.000Z', 'Z') : '-', r.daysLeft === undefined ? '-' : String(r.daysLeft), r.ca ?? '-', dueReason(r, windowDays) ?? 'ok']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((cols) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
