// What every machine runs to be a Kubernetes node: the binaries (fetched from the
// provisioner and checked by sha256), containerd pointed at the provisioner's registry,
// kubelet joining by TLS bootstrap, kube-proxy, and the pod network: flannel (vxlan) with
// its CNI config, or (`cni: bridge`) a bridge + host-local CNI config on the machine's
// fixed pod /24 (routes to the other machines' /24s are in host.ts's networkd file).
import { stringify } from 'yaml';
import { nthHost } from '../../lib/ipv4.ts';
import { apiServerURL, hasRole, provisionerURL, type Cni, type Machine } from '../../spec/types.ts';
import { command, unitFile, type Flags } from '../systemd.ts';
import { kubeconfig } from '../kubeconfig.ts';
import type { File, Phase, PhaseContext } from '../types.ts';
import { once } from '../memo.ts';
import { BIN, CONTAINERD_SOCK, K8S, KUBELET_CLIENT_CERT, KUBELET_DIR, PKI, SLIPWAY, TIME_SYNC, UNITS } from '../paths.ts';
import { binaryAssets, MIRRORED_REGISTRIES } from '../../catalog/cluster.ts';
import { podSliceOf } from '../pod-slices.ts';

/** The binaries a machine needs (the catalog's list), as [path on the machine, asset name under /assets/bin/]. */
export function binariesFor(m: Machine, cni: Cni = 'flannel'): [string, string][] {
  return binaryAssets(m.roles, cni).map((a) => [a.startsWith('cni/') ? `/opt/cni/bin/${a.slice('cni/'.length)}` : `${BIN}/${a}`, a]);
}

/** Where fetch-binaries.sh keeps what it learnt: the last SHA256SUMS, and what was missing. */
export const FETCH_STATE = '/var/lib/slipway';
/** What fetch-binaries.sh could not get from the provisioner, space-separated (empty: nothing). */
export const MISSING_LIST = `${FETCH_STATE}/binaries-missing`;

// Each binary is pinned: binaries.list names the sha256 the machine was rendered for
// (from the provisioner's assets when it rendered), and only that file is installed. A
// provisioner that later offers a different one is refused and reported, never
// installed: changing binaries is a deliberate re-render. A line without a digest (render
// without --assets) falls back to the provisioner's SHA256SUMS. A binary already in place
// with the right digest is kept, and the last SHA256SUMS too, so a reboot while the
// provisioner is down still starts the units.
const FETCH_SCRIPT = (base: string) => `#!/bin/sh
# Fetch this machine's binaries from the Slipway provisioner, each checked against the
# sha256 this machine was rendered for (binaries.list: DEST NAME [SHA256]).
set -eu
BASE="${base}/assets/bin"
LIST=${SLIPWAY}/binaries.list
STATE=${FETCH_STATE}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { curl -fsS --retry 20 --retry-delay 3 --retry-connrefused -o "$2" "$1"; }
mkdir -p "$STATE"
if ! fetch "$BASE/SHA256SUMS" "$tmp/SHA256SUMS"; then
  [ -s "$STATE/SHA256SUMS" ] || { echo "slipway: the provisioner is unreachable and this machine has no binaries yet" >&2; exit 1; }
  echo "slipway: the provisioner is unreachable: checking the binaries in place against the last SHA256SUMS" >&2
  cp "$STATE/SHA256SUMS" "$tmp/SHA256SUMS"
fi
missing= refused=
while read -r dest name pin; do
  [ -n "$dest" ] || continue
  offered=$(awk -v n="$name" '$2 == n || $2 == "*" n { print $1; exit }' "$tmp/SHA256SUMS")
  want=\${pin:-$offered}
  if [ -n "$want" ] && [ -f "$dest" ] && echo "$want  $dest" | sha256sum -c --status; then continue; fi
  # Not in the provisioner's assets (a bundle without Kubernetes, say): the units that
  # run it are conditioned on it and will not start; progress.sh reports the list.
  if [ -z "$offered" ]; then echo "slipway: the provisioner has no $name: the units that run it will not start" >&2; missing="$missing $name"; continue; fi
  if [ -n "$pin" ] && [ "$offered" != "$pin" ]; then
    echo "slipway: REFUSED $name: the provisioner offers sha256 $offered, this machine was rendered for $pin (re-render to change binaries)" >&2
    refused="$refused $name"; continue
  fi
  fetch "$BASE/$name" "$tmp/part"
  if ! echo "$want  $tmp/part" | sha256sum -c --status; then echo "slipway: sha256 mismatch for $name: got $(sha256sum "$tmp/part" | cut -d' ' -f1), want $want" >&2; exit 1; fi
  install -D -m 0755 "$tmp/part" "$dest"
  echo "slipway: installed $dest ($want)"
done < "$LIST"
cp "$tmp/SHA256SUMS" "$STATE/SHA256SUMS"
echo "\${missing# }" > "$STATE/binaries-missing"
[ -z "$refused" ] || { echo "slipway: not installed, the provisioner's binaries differ from this machine's render:$refused" >&2; exit 1; }
`;

function containerdFiles(ctx: PhaseContext): File[] {
  const mirror = provisionerURL(ctx.spec);
  // Version 2 config: read by containerd 1.6/1.7 and migrated by 2.x.
  const config = `version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${ctx.version.pauseImage}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`;
  const hosts = (registry: string) => `# Pull ${registry} images from the Slipway provisioner (offline bundle registry).
server = "https://${registry === 'docker.io' ? 'registry-1.docker.io' : registry}"

[host."${mirror}"]
  capabilities = ["pull", "resolve"]
`;
  return [
    { path: '/etc/containerd/config.toml', mode: 0o644, contents: config },
    ...MIRRORED_REGISTRIES.map((r) => ({ path: `/etc/containerd/certs.d/${r}/hosts.toml`, mode: 0o644, contents: hosts(r) })),
  ];
}

function kubeletFiles(ctx: PhaseContext, m: Machine): File[] {
  const { spec, secrets, version } = ctx;
  const config: Record<string, unknown> = {
    apiVersion: version.kubeletConfigAPI,
    kind: 'KubeletConfiguration',
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: `${PKI}/ca.crt` } },
    authorization: { mode: 'Webhook' },
    cgroupDriver: 'systemd',
    clusterDNS: [nthHost(spec.network.serviceCIDR, 10)],
    clusterDomain: spec.network.dnsDomain,
    rotateCertificates: true,
    failSwapOn: true,
    readOnlyPort: 0,
    staticPodPath: `${K8S}/manifests`,
    ...(version.kubeletRuntimeFlags === 'config' ? { containerRuntimeEndpoint: CONTAINERD_SOCK } : {}),
  };
  // its own token when apply opened a provisioning window for it; else the install token
  const own = secrets.windowTokens?.machines[m.name];
  const token = own ? `${own.id}.${own.secret}` : `${secrets.bootstrapToken.id}.${secrets.bootstrapToken.secret}`;
  const bootstrapConf = () => kubeconfig({ cluster: spec.name, server: apiServerURL(spec), caCert: secrets.certs.ca.cert, user: { name: 'kubelet-bootstrap', token } });
  const labels = Object.entries(m.labels).map(([k, v]) => `${k}=${v}`);
  const dedicatedControlPlane = hasRole(m, 'control-plane') && !hasRole(m, 'worker');
  const flags: Flags = {
    config: `${KUBELET_DIR}/config.yaml`,
    kubeconfig: `${K8S}/kubelet.conf`,
    'bootstrap-kubeconfig': `${K8S}/bootstrap-kubelet.conf`,
    'cert-dir': `${KUBELET_DIR}/pki`,
    'hostname-override': m.name,
    'node-ip': m.ip,
    'container-runtime': version.kubeletRuntimeFlags === 'remote+endpoint' ? 'remote' : undefined,
    'container-runtime-endpoint': version.kubeletRuntimeFlags === 'config' ? undefined : CONTAINERD_SOCK,
    'node-labels': labels.length ? labels : undefined,
    'register-with-taints': dedicatedControlPlane ? 'node-role.kubernetes.io/control-plane=:NoSchedule' : undefined,
  };
  const unit = unitFile({
    Unit: {
      Description: 'Kubernetes node agent',
      Wants: ['network-online.target', TIME_SYNC, 'containerd.service'],
      After: ['network-online.target', TIME_SYNC, 'containerd.service', 'slipway-binaries.service', 'slipway-swapoff.service'],
      Requires: 'slipway-binaries.service',
    },
    Service: { ExecStart: command(`${BIN}/kubelet`, flags), Restart: 'always', RestartSec: '5s' },
    Install: { WantedBy: 'multi-user.target' },
  });
  return [
    { path: `${KUBELET_DIR}/config.yaml`, mode: 0o644, contents: once(ctx, 'kubelet-config', () => stringify(config)) },
    {
      path: `${K8S}/bootstrap-kubelet.conf`,
      mode: 0o600,
      secret: true,
      // a machine's own token is its own file; the install token's is shared (memo)
      contents: own ? bootstrapConf() : once(ctx, 'bootstrap-kubeconfig', bootstrapConf),
    },
    { path: `${UNITS}/kubelet.service`, mode: 0o644, contents: unit },
  ];
}

function kubeProxyFiles(ctx: PhaseContext, m: Machine): File[] {
  const { spec, secrets, version } = ctx;
  const conf = `${K8S}/kube-proxy.conf`;
  const config = {
    apiVersion: version.kubeProxyConfigAPI,
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: conf },
    mode: 'iptables',
    clusterCIDR: spec.network.podCIDR.cidr,
    hostnameOverride: m.name,
    bindAddress: '0.0.0.0',
  };
  const kp = secrets.certs['kube-proxy'];
  return [
    {
      path: conf,
      mode: 0o600,
      secret: true,
      contents: once(ctx, 'kube-proxy-kubeconfig', () =>
        kubeconfig({ cluster: spec.name, server: apiServerURL(spec), caCert: secrets.certs.ca.cert, user: { name: 'system:kube-proxy', clientCert: kp.cert, clientKey: kp.key } })),
    },
    { path: '/var/lib/kube-proxy/config.yaml', mode: 0o644, contents: stringify(config) },
    {
      path: `${UNITS}/kube-proxy.service`,
      mode: 0o644,
      contents: unitFile({
        Unit: { Description: 'Kubernetes network proxy', Wants: ['network-online.target', TIME_SYNC], After: ['network-online.target', TIME_SYNC, 'slipway-binaries.service'], Requires: 'slipway-binaries.service' },
        Service: { ExecStart: command(`${BIN}/kube-proxy`, { config: '/var/lib/kube-proxy/config.yaml' }), Restart: 'always', RestartSec: '5s' },
        Install: { WantedBy: 'multi-user.target' },
      }),
    },
  ];
}

// flannel keeps its subnet leases in the Kubernetes API (--kube-subnet-mgr), reading the
// node's podCIDR with the kubelet's own rotated credential: no etcd key on any worker.
function flannelFiles(ctx: PhaseContext, m: Machine): File[] {
  const netConf = { Network: ctx.spec.network.podCIDR.cidr, Backend: { Type: 'vxlan' } };
  const cni = {
    name: 'cbr0',
    cniVersion: '0.3.1',
    plugins: [
      { type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  const flags: Flags = {
    'kube-subnet-mgr': true,
    kubeconfig: `${K8S}/kubelet.conf`,
    'net-config-path': '/etc/kube-flannel/net-conf.json',
    iface: m.ip,
    'ip-masq': true,
  };
  return [
    { path: '/etc/kube-flannel/net-conf.json', mode: 0o644, contents: JSON.stringify(netConf, null, 2) + '\n' },
    { path: '/etc/cni/net.d/10-flannel.conflist', mode: 0o644, contents: JSON.stringify(cni, null, 2) + '\n' },
    {
      path: `${UNITS}/flanneld.service`,
      mode: 0o644,
      contents: unitFile({
        Unit: { Description: 'flannel overlay network (vxlan)', Wants: TIME_SYNC, After: ['kubelet.service', TIME_SYNC, 'slipway-binaries.service'], Requires: 'slipway-binaries.service' },
        Service: {
          Environment: `NODE_NAME=${m.name}`,
          // The kubelet's client certificate appears once its TLS bootstrap has finished
          // (kubelet.conf is written earlier, at start, pointing at it).
          ExecStartPre: `/bin/sh -c 'for i in $(seq 120); do [ -s ${KUBELET_CLIENT_CERT} ] && exit 0; sleep 5; done; exit 1'`,
          ExecStart: command(`${BIN}/flanneld`, flags),
          Restart: 'always',
          RestartSec: '5s',
        },
        Install: { WantedBy: 'multi-user.target' },
      }),
    },
  ];
}

// cni: bridge. The standard bridge + host-local plugins on this machine's fixed /24
// (plan/pod-slices.ts); every other machine's /24 is routed via that machine's address
// (host.ts), so pod traffic between nodes crosses the segment unencapsulated.
//
// ipMasq is off: the bridge plugin's ipMasq masquerades everything from the slice to any
// address outside the slice, pods on other nodes included, so those would see the node's
// address instead of the pod's (against Kubernetes' "pods reach pods without NAT"). One
// rule instead masquerades only what leaves the whole pod network (flannel's --ip-masq
// rule): pod to pod keeps pod addresses, pod to anything else (the machine network, the
// internet, hosts with no route to pod slices) leaves with the node's address.
export const BRIDGE_CONFLIST = '/etc/cni/net.d/10-slipway-bridge.conflist';
export const MASQUERADE_UNIT = 'slipway-pod-masquerade.service';

function bridgeFiles(ctx: PhaseContext, m: Machine): File[] {
  const pods = ctx.spec.network.podCIDR.cidr;
  const cni = {
    cniVersion: '0.4.0',
    name: 'slipway',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: podSliceOf(ctx.spec, m).cidr }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  const rule = (op: string) => `/sbin/iptables -w -t nat ${op} POSTROUTING -s ${pods} ! -d ${pods} -j MASQUERADE`;
  return [
    { path: BRIDGE_CONFLIST, mode: 0o644, contents: JSON.stringify(cni, null, 2) + '\n' },
    {
      path: `${UNITS}/${MASQUERADE_UNIT}`,
      mode: 0o644,
      contents: once(ctx, 'pod-masquerade', () =>
        unitFile({
          Unit: { Description: `Masquerade pod traffic leaving the pod network ${pods}`, Before: 'kubelet.service' },
          // delete-then-append keeps exactly one copy of the rule across restarts
          Service: { Type: 'oneshot', RemainAfterExit: true, ExecStartPre: `-${rule('-D')}`, ExecStart: rule('-A'), ExecStop: rule('-D') },
          Install: { WantedBy: 'multi-user.target' },
        })),
    },
  ];
}

function binaryFiles(ctx: PhaseContext, m: Machine): File[] {
  const pins = ctx.pins?.bin ?? {};
  const list = binariesFor(m, ctx.spec.network.cni).map(([dest, name]) => (pins[name] ? `${dest} ${name} ${pins[name]}` : `${dest} ${name}`)).join('\n') + '\n';
  return [
    { path: `${SLIPWAY}/binaries.list`, mode: 0o644, contents: list },
    { path: `${SLIPWAY}/fetch-binaries.sh`, mode: 0o755, contents: once(ctx, 'fetch-script', () => FETCH_SCRIPT(provisionerURL(ctx.spec))) },
    {
      path: `${UNITS}/slipway-binaries.service`,
      mode: 0o644,
      contents: unitFile({
        Unit: { Description: 'Fetch Kubernetes, etcd and CNI binaries from the provisioner (sha256-checked)', Wants: 'network-online.target', After: 'network-online.target' },
        Service: { Type: 'oneshot', RemainAfterExit: true, ExecStart: `/bin/sh ${SLIPWAY}/fetch-binaries.sh` },
        Install: { WantedBy: 'multi-user.target' },
      }),
    },
  ];
}

export const nodePhase: Phase = {
  name: 'node',
  machine: (ctx, m) => [
    ...binaryFiles(ctx, m),
    ...once(ctx, 'containerd', () => containerdFiles(ctx)),
    ...kubeletFiles(ctx, m),
    ...kubeProxyFiles(ctx, m),
    ...(ctx.spec.network.cni === 'bridge' ? bridgeFiles(ctx, m) : flannelFiles(ctx, m)),
  ],
};
