// spec.proxy (issue 20): containerd (pulls that are not the provisioner's mirror), every
// service (systemd's DefaultEnvironment) and login shells get HTTP(S)_PROXY, and NO_PROXY
// with the cluster's own ranges and names added, so nothing inside the cluster (the API,
// etcd, the provisioner, pods, services) is ever sent to the proxy.
import { apiHost, type Machine, type Spec } from '../../spec/types.ts';
import { parseCidr } from '../../lib/ipv4.ts';
import { Unrenderable } from '../guard.ts';
import type { Phase } from '../types.ts';
import { UNITS } from '../paths.ts';

/** What is never proxied: loopback, the cluster's networks, addresses and names, then the file's own list. */
export function noProxy(spec: Spec, m: Machine): string[] {
  const list = ['localhost', '127.0.0.1', '::1', spec.provisioner.dhcp.subnet.cidr, spec.network.serviceCIDR.cidr, spec.network.podCIDR.cidr, spec.provisioner.address, apiHost(spec)];
  if (spec.controlPlane.endpoint) list.push(spec.controlPlane.endpoint);
  list.push('.svc', `.${spec.network.dnsDomain}`, ...spec.machines.map((x) => x.name));
  for (const l of m.links ?? []) for (const a of l.addresses) list.push(parseCidr(a)?.cidr ?? a);
  list.push(...(spec.proxy?.noProxy ?? []));
  return [...new Set(list)];
}

/** The variables, both spellings (curl reads only the lower-case ones, Go both). */
export function proxyEnv(spec: Spec, m: Machine): [string, string][] {
  const p = spec.proxy!;
  const vars: [string, string][] = [];
  if (p.http) vars.push(['HTTP_PROXY', p.http], ['http_proxy', p.http]);
  if (p.https) vars.push(['HTTPS_PROXY', p.https], ['https_proxy', p.https]);
  const no = noProxy(spec, m).join(',');
  vars.push(['NO_PROXY', no], ['no_proxy', no]);
  // the schema allows none of these; refused here too, since systemd and sh would interpret them
  for (const [k, v] of vars) if (/[\s"'\\$%`;]/.test(v)) throw new Unrenderable(`the proxy environment's ${k}`, v, 'systemd and sh would interpret it');
  return vars;
}

export const PROXY_DROP_IN = `${UNITS}/containerd.service.d/10-slipway-proxy.conf`;
export const PROXY_MANAGER = '/etc/systemd/system.conf.d/10-slipway-proxy.conf';
export const PROXY_PROFILE = '/etc/profile.d/slipway-proxy.sh';

export const proxyPhase: Phase = {
  name: 'proxy',
  machine(ctx, m) {
    if (!ctx.spec.proxy || (!ctx.spec.proxy.http && !ctx.spec.proxy.https)) return [];
    const vars = proxyEnv(ctx.spec, m);
    const env = vars.map(([k, v]) => `"${k}=${v}"`).join(' ');
    const head = '# spec.proxy from the cluster file (Slipway); NO_PROXY holds the cluster\'s own ranges and names.';
    return [
      { path: PROXY_DROP_IN, mode: 0o644, contents: `${head}\n[Service]\nEnvironment=${env}\n` },
      { path: PROXY_MANAGER, mode: 0o644, contents: `${head}\n[Manager]\nDefaultEnvironment=${env}\n` },
      { path: PROXY_PROFILE, mode: 0o644, contents: `${head}\n${vars.map(([k, v]) => `export ${k}='${v}'`).join('\n')}\n` },
    ];
  },
};
