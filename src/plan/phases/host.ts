// The machine as a host: static network (no DHCP after install: a DHCP outage must not
// take nodes down, guide 03), hostname, /etc/hosts, kernel modules and sysctls that
// Kubernetes networking needs, swap off, and the operators' SSH keys.
import { apiHost, controlPlanes, type Machine } from '../../spec/types.ts';
import { unitFile, wantedBy } from '../systemd.ts';
import { ifname, oneLine, word } from '../guard.ts';
import type { File, Phase, PhaseContext } from '../types.ts';
import { OS_UNITS, UNITS } from '../paths.ts';
import { podSlices } from '../pod-slices.ts';
import { linkFiles } from './network.ts';

function networkFile(ctx: PhaseContext, m: Machine): string {
  const d = ctx.spec.provisioner.dhcp;
  const lines = ['# Static address from the cluster file; DHCP is only for installing.', '[Match]'];
  lines.push(m.interface ? `Name=${ifname(m.interface, `${m.name}'s networkd [Match] Name=`)}` : `MACAddress=${m.mac}`);
  lines.push('', '[Network]', `Address=${m.ip}/${m.prefix}`);
  if (d.router) lines.push(`Gateway=${d.router}`);
  for (const dns of d.dns) lines.push(`DNS=${dns}`);
  lines.push('DHCP=no', 'IPv6AcceptRA=no');
  if (ctx.spec.network.cni === 'bridge') {
    // cni: bridge: this machine forwards for its pods (the sysctl file says so too; this
    // keeps networkd from disagreeing), and reaches every other machine's pod /24 through
    // that machine's address on the shared segment.
    lines.push('IPForward=ipv4');
    for (const { machine, slice } of podSlices(ctx.spec))
      if (machine.name !== m.name) lines.push('', `# pods on ${machine.name}`, '[Route]', `Destination=${slice.cidr}`, `Gateway=${machine.ip}`);
  }
  lines.push('');
  return lines.join('\n');
}

function hostsFile(ctx: PhaseContext, m: Machine): string {
  const { spec } = ctx;
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${m.ip}\t${m.name}`];
  if (spec.controlPlane.endpoint) lines.push(`${apiHost(spec)}\t${spec.controlPlane.endpoint}`);
  for (const cp of controlPlanes(spec)) if (cp.name !== m.name) lines.push(`${cp.ip}\t${cp.name}`);
  lines.push(`${spec.provisioner.address}\tslipway-provisioner`);
  return lines.join('\n') + '\n';
}

/**
 * Time before TLS: timesyncd asks the cluster file's NTP servers (default the provisioner,
 * which `slipway serve` answers) and nothing else (no Debian pool offline), and
 * systemd-time-wait-sync holds time-sync.target, which etcd and the Kubernetes units wait
 * for, until the clock is synchronised: a machine whose hardware clock is years off never
 * starts them with a wrong clock.
 */
function timeFiles(ctx: PhaseContext): File[] {
  const servers = ctx.spec.ntp.servers.map((s, i) => word(s, `spec.ntp.servers[${i}]`));
  return [
    { path: '/etc/systemd/timesyncd.conf.d/10-slipway.conf', mode: 0o644, contents: `# Slipway: the cluster's NTP servers only.\n[Time]\nNTP=${servers.join(' ')}\nFallbackNTP=\n` },
    wantedBy('sysinit.target', `${OS_UNITS}/systemd-time-wait-sync.service`),
  ];
}

const SYSCTL = `# Kubernetes networking (bridged pod traffic through iptables, routing between nodes).
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
vm.swappiness = 0
`;

export const hostPhase: Phase = {
  name: 'host',
  machine(ctx, m) {
    const files: File[] = [
      // the simple form's one file, or (issue 20) every link's netdev/network files
      ...(m.links ? linkFiles(ctx, m) : [{ path: '/etc/systemd/network/10-slipway.network', mode: 0o644, contents: networkFile(ctx, m) }]),
      { path: '/etc/hostname', mode: 0o644, contents: `${m.name}\n` },
      { path: '/etc/hosts', mode: 0o644, contents: hostsFile(ctx, m) },
      { path: '/etc/modules-load.d/slipway-kubernetes.conf', mode: 0o644, contents: 'overlay\nbr_netfilter\n' },
      { path: '/etc/sysctl.d/90-slipway-kubernetes.conf', mode: 0o644, contents: SYSCTL },
      {
        path: `${UNITS}/slipway-swapoff.service`,
        mode: 0o644,
        contents: unitFile({
          Unit: { Description: 'Turn swap off (kubelet refuses to run with swap)', DefaultDependencies: false, After: 'swap.target', Before: 'kubelet.service' },
          Service: { Type: 'oneshot', RemainAfterExit: true, ExecStart: '/sbin/swapoff -a' },
          Install: { WantedBy: 'multi-user.target' },
        }),
      },
    ];
    // The operators' keys, then the provisioner's own (`slipway apply` delivers with it).
    const keys = ctx.spec.ssh.authorizedKeys.map((k, i) => oneLine(k.trim(), `authorized_keys (key ${i + 1})`));
    keys.push(oneLine(ctx.secrets.provisionerSshKey, "authorized_keys (the provisioner's key)"));
    files.push({ path: '/root/.ssh/authorized_keys', mode: 0o600, contents: keys.join('\n') + '\n' });
    files.push(...timeFiles(ctx));
    return files;
  },
};
