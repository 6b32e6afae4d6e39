// The API's virtual IP on every control-plane machine (guide 02's haproxy + keepalived,
// made symmetric): keepalived moves the VIP between the control-plane machines by VRRP,
// and haproxy on each of them listens on <vip>:<port> and balances every apiserver at
// <its ip>:6443. The apiservers bind their own machine IP (control-plane.ts), so haproxy
// on the VIP never collides with them, even when the public port is also 6443.
//
// Every machine runs haproxy all the time, bound to the VIP whether it holds it or not
// (ip_nonlocal_bind), so a VIP move only needs a gratuitous ARP, not a haproxy restart.
import { ifname } from '../guard.ts';
import { createHash } from 'node:crypto';
import { controlPlanes, hasRole, nodeLink, type Machine, type Spec } from '../../spec/types.ts';
import type { File, Phase } from '../types.ts';
import { APISERVER_PORT, OS_UNITS } from '../paths.ts';
import { wantedBy } from '../systemd.ts';

export const HAPROXY_CFG = '/etc/haproxy/haproxy.cfg';
export const KEEPALIVED_CONF = '/etc/keepalived/keepalived.conf';
export const CHECK_SCRIPT = '/etc/keepalived/check-apiserver.sh';

/** Priority gap between consecutive control-plane machines. */
const PRIORITY_STEP = 10;
const TOP_PRIORITY = 150;

/**
 * VRRP priority by position among the control-plane machines: the first listed holds
 * the VIP when all are healthy (150, 140, 130, ...). Positions, not names, so the order
 * in the cluster file is the operator's statement of preference.
 */
export function vrrpPriority(spec: Spec, m: Machine): number {
  const i = controlPlanes(spec).findIndex((c) => c.name === m.name);
  if (i < 0) throw new Error(`${m.name} is not a control-plane machine`);
  return Math.max(1, TOP_PRIORITY - PRIORITY_STEP * i);
}

/**
 * How far a failing health check lowers a machine's priority: past the gap to the lowest
 * machine (step × count), so any healthy machine outranks every unhealthy one and the VIP
 * always lands on a healthy machine while one exists.
 */
export const checkWeight = (spec: Spec): number => -Math.min(253, PRIORITY_STEP * controlPlanes(spec).length);

/**
 * VRRPv2 "authentication" is a cleartext password any listener can read: it only keeps
 * two clusters sharing a segment and a VRID apart, so it is derived from non-secret
 * data. keepalived uses at most 8 characters.
 */
export const vrrpAuthPass = (spec: Spec): string =>
  createHash('sha256').update(`slipway/${spec.name}/${spec.controlPlane.vrid}`).digest('hex').slice(0, 8);

/** keepalived needs an interface name; systemd-networkd can match by MAC, keepalived cannot. With links: the node link's. */
export const vrrpInterface = (m: Machine): string => ifname(nodeLink(m)?.name ?? m.interface ?? 'eth0', `keepalived.conf's interface (${m.name})`);

export function haproxyCfg(spec: Spec): string {
  const vip = spec.controlPlane.vip!;
  const lines = [
    `# haproxy for the Kubernetes API of cluster "${spec.name}", written by Slipway.`,
    `# Listens on the VIP ${vip}:${spec.controlPlane.port} on every control-plane machine (keepalived decides which`,
    `# one holds it) and balances the apiservers on their own addresses, port ${APISERVER_PORT}.`,
    '# TCP mode: TLS goes through untouched, so client certificates reach the apiserver.',
    'global',
    '  log stdout format raw local0',
    '  # bounded memory; each kubelet and controller keeps one long-lived HTTP/2 connection',
    '  maxconn 8192',
    '',
    'defaults',
    '  mode tcp',
    '  log global',
    '  option tcplog',
    '  option dontlognull',
    '  # a refused connection (an apiserver just stopped) is retried on another one at once',
    '  option redispatch 1',
    '  retries 3',
    '  timeout connect 5s',
    '  # watches, logs -f and exec sessions sit idle for long stretches; the apiserver ends',
    '  # watches itself, and TCP keepalives find dead peers',
    '  timeout client 1h',
    '  timeout server 1h',
    '  option clitcpka',
    '  option srvtcpka',
    '  timeout check 3s',
    '',
    'frontend kube-apiserver',
    `  bind ${vip}:${spec.controlPlane.port}`,
    '  default_backend kube-apiserver',
    '',
    'backend kube-apiserver',
    '  balance roundrobin',
    '  # /readyz (anonymous, like /healthz) turns false as soon as an apiserver starts shutting',
    '  # down; 2 failed checks 2 s apart take it out (a refused connection before that is',
    '  # redispatched); TLS without verification because this only asks "are you ready", it',
    '  # sends nothing secret',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    '  default-server check check-ssl verify none inter 2s fall 2 rise 2',
    ...controlPlanes(spec).map((c) => `  server ${c.name} ${c.ip}:${APISERVER_PORT}`),
    '',
  ];
  return lines.join('\n');
}

export function keepalivedConf(spec: Spec, m: Machine): string {
  const vip = spec.controlPlane.vip!;
  const peers = controlPlanes(spec).filter((c) => c.name !== m.name);
  const iface = vrrpInterface(m);
  const lines = [
    `! keepalived for the API VIP of cluster "${spec.name}" on ${m.name}, written by Slipway.`,
    'global_defs {',
    `  router_id ${m.name}`,
    '  # the health check runs as root (it only reads); with script security keepalived',
    '  # refuses a script that anyone but root could change',
    '  enable_script_security',
    '  script_user root',
    '}',
    '',
    'vrrp_script check_apiserver {',
    `  script "${CHECK_SCRIPT}"`,
    '  interval 3',
    '  # the script makes at most two 2-second requests',
    '  timeout 5',
    '  fall 2',
    '  rise 2',
    `  # failing lowers the priority below every healthy machine (gap ${PRIORITY_STEP} x ${controlPlanes(spec).length} machines)`,
    `  weight ${checkWeight(spec)}`,
    '}',
    '',
    'vrrp_instance kube_apiserver {',
    '  # BACKUP everywhere, and no nopreempt: the priority alone decides, so the VIP goes',
    '  # back to the preferred healthy machine and there is nothing per-machine to get wrong',
    '  state BACKUP',
    m.interface || nodeLink(m)
      ? `  interface ${iface}`
      : `  # the cluster file names no interface for ${m.name}; eth0 is assumed (set "interface" if its NIC is named otherwise)\n  interface ${iface}`,
    `  virtual_router_id ${spec.controlPlane.vrid}`,
    `  priority ${vrrpPriority(spec, m)}`,
    '  advert_int 1',
  ];
  if (peers.length)
    lines.push(
      '  # unicast to the other control-plane machines: works where multicast is filtered',
      `  unicast_src_ip ${m.ip}`,
      '  unicast_peer {',
      ...peers.map((p) => `    ${p.ip}`),
      '  }',
    );
  lines.push(
    '  # VRRPv2 password: keeps clusters that share a segment and VRID apart; not a secret',
    '  authentication {',
    '    auth_type PASS',
    `    auth_pass ${vrrpAuthPass(spec)}`,
    '  }',
    '  virtual_ipaddress {',
    `    ${vip}/${spec.provisioner.dhcp.subnet.prefix}`,
    '  }',
    '  track_script {',
    '    check_apiserver',
    '  }',
    '}',
    '',
  );
  return lines.join('\n');
}

export function checkScript(spec: Spec, m: Machine): string {
  const vip = spec.controlPlane.vip!;
  return `#!/bin/sh
# keepalived's health check on ${m.name}: exit 0 while this machine should be allowed to
# hold the API VIP ${vip}. Anonymous /healthz (RBAC's system:public-info-viewer), TLS
# unverified: it carries nothing secret.
fail() { echo "check-apiserver: $*" >&2; exit 1; }

# This machine's own apiserver, on its own address.
curl -sfk --max-time 2 -o /dev/null https://${m.ip}:${APISERVER_PORT}/healthz ||
  fail "apiserver https://${m.ip}:${APISERVER_PORT}/healthz does not answer"

# Holding the VIP: haproxy must actually serve the API on it.
if ip -4 -o addr show | grep -qF " inet ${vip}/"; then
  curl -sfk --max-time 2 -o /dev/null https://${vip}:${spec.controlPlane.port}/healthz ||
    fail "haproxy on ${vip}:${spec.controlPlane.port} does not serve the API"
fi
exit 0
`;
}

export const haPhase: Phase = {
  name: 'ha',
  machine(ctx, m) {
    const { spec } = ctx;
    if (!spec.controlPlane.vip || !hasRole(m, 'control-plane')) return [];
    const files: File[] = [
      { path: HAPROXY_CFG, mode: 0o644, contents: haproxyCfg(spec) },
      {
        path: '/etc/sysctl.d/90-slipway-haproxy.conf',
        mode: 0o644,
        contents: '# haproxy binds the API VIP on every control-plane machine, also those not holding it.\nnet.ipv4.ip_nonlocal_bind = 1\n',
      },
      { path: KEEPALIVED_CONF, mode: 0o644, contents: keepalivedConf(spec, m) },
      { path: CHECK_SCRIPT, mode: 0o755, contents: checkScript(spec, m) },
      // The OS ships haproxy and keepalived installed but not enabled: enabled here, where their configs are.
      ...['haproxy.service', 'keepalived.service'].map((u) => wantedBy('multi-user.target', `${OS_UNITS}/${u}`)),
    ];
    return files;
  },
};
