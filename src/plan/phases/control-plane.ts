// The control plane on every control-plane machine: kube-apiserver, controller-manager
// and scheduler as systemd units with their flags on the command line (guide 02's
// shape), their kubeconfigs, the audit policy and Secret encryption at rest.
import { stringify } from 'yaml';
import { apiHost, etcdMembers, hasRole, type Machine, type Spec } from '../../spec/types.ts';
import { command, unitFile, type Flags } from '../systemd.ts';
import { kubeconfig } from '../kubeconfig.ts';
import type { File, Phase, PhaseContext } from '../types.ts';
import type { ClusterCertId } from '../../secrets/certlist.ts';
import { APISERVER_PORT, BIN, ETCD_PKI, K8S, PKI, TIME_SYNC, UNITS } from '../paths.ts';
import { ETCD_CLIENT_PORT } from './etcd.ts';
import { POD_SLICE_PREFIX } from '../../lib/pod-slices.ts';

/** With a VIP, haproxy owns <vip>:<port> and apiservers bind <own ip>:6443; without, the apiserver serves <port> itself. */
export const apiserverPort = (spec: Spec): number => (spec.controlPlane.vip ? APISERVER_PORT : spec.controlPlane.port);

const unitDeps = {
  Wants: ['network-online.target', TIME_SYNC],
  After: ['network-online.target', TIME_SYNC, 'slipway-binaries.service'],
  Requires: 'slipway-binaries.service',
};
const service = (exec: string) => ({ ExecStart: exec, Restart: 'always', RestartSec: '5s', LimitNOFILE: 65536 });

// No --shutdown-delay-duration: while it runs, the draining apiserver answers /readyz with
// 500 for every request haproxy still sends it (27 of 1,976 probes through the VIP in a
// live renewal, against 2 without it). Stopping at once lets haproxy's redispatch retry a
// refused connection on another apiserver.
// How long a stopping apiserver may finish what it serves. On SIGTERM it stops listening at
// once and tells HTTP/2 clients to go elsewhere (GOAWAY), then waits for its connections to
// go idle for --request-timeout (60 s): watches never do, so every stop or restart took
// 60 s (measured on v1.20.2 with the controller-manager, the scheduler and one watch
// connected: 60.0 s; apply's restart of it 65 s a machine, most of a renewal). kubeadm's
// static pods get the kubelet's 30 s grace period. After 20 s only a request still running
// is cut, one already near its own 60 s timeout; its watches are re-opened on another
// apiserver either way.
export const APISERVER_STOP_SECONDS = 20;
// Not TimeoutStopSec: systemd ends a stop that times out with result "timeout", the unit
// fails and OnFailure= reports the machine failed, on every restart. ExecStop sends the
// SIGTERM itself, waits, and kills what is left; SuccessExitStatus=SIGKILL makes that
// stop a clean one (a kill -9 from elsewhere restarts it, Restart=always, unreported; the
// kernel's OOM killer is still a failure, result oom-kill). $$ is systemd's literal $.
const APISERVER_STOP = {
  ExecStop:
    `/bin/sh -c '[ -n "$\${MAINPID}" ] || exit 0; kill -TERM "$\${MAINPID}"; i=0; ` +
    `while [ "$$i" -lt ${APISERVER_STOP_SECONDS * 10} ] && kill -0 "$\${MAINPID}" 2>/dev/null; do sleep 0.1; i=$$((i + 1)); done; ` +
    `! kill -0 "$\${MAINPID}" 2>/dev/null || kill -KILL "$\${MAINPID}"'`,
  SuccessExitStatus: 'SIGKILL',
};
// No --insecure-port: from v1.20 (the oldest version rendered) it is a no-op kept only
// until 1.24; the controller-manager's and scheduler's --port=0 do still matter there.
export function apiserverFlags(ctx: PhaseContext, m: Machine): Flags {
  const { spec } = ctx;
  return {
    'advertise-address': m.ip,
    'bind-address': m.ip,
    'secure-port': apiserverPort(spec),
    'allow-privileged': true,
    'authorization-mode': ['Node', 'RBAC'],
    'enable-admission-plugins': ['NodeRestriction'],
    'enable-bootstrap-token-auth': true,
    'anonymous-auth': true, // /healthz, /readyz and /livez for haproxy checks; RBAC grants anonymous nothing else
    'client-ca-file': `${PKI}/ca.crt`,
    'tls-cert-file': `${PKI}/apiserver.crt`,
    'tls-private-key-file': `${PKI}/apiserver.key`,
    'kubelet-client-certificate': `${PKI}/apiserver-kubelet-client.crt`,
    'kubelet-client-key': `${PKI}/apiserver-kubelet-client.key`,
    'kubelet-preferred-address-types': ['InternalIP', 'Hostname', 'ExternalIP'],
    'etcd-servers': etcdMembers(spec).map((e) => `https://${e.ip}:${ETCD_CLIENT_PORT}`),
    'etcd-cafile': `${ETCD_PKI}/ca.crt`,
    'etcd-certfile': `${PKI}/apiserver-etcd-client.crt`,
    'etcd-keyfile': `${PKI}/apiserver-etcd-client.key`,
    'service-cluster-ip-range': spec.network.serviceCIDR.cidr,
    'service-node-port-range': '30000-32767',
    'service-account-issuer': `https://kubernetes.default.svc.${spec.network.dnsDomain}`,
    'service-account-key-file': `${PKI}/sa.pub`,
    'service-account-signing-key-file': `${PKI}/sa.key`,
    'api-audiences': `https://kubernetes.default.svc.${spec.network.dnsDomain}`,
    'proxy-client-cert-file': `${PKI}/front-proxy-client.crt`,
    'proxy-client-key-file': `${PKI}/front-proxy-client.key`,
    'requestheader-client-ca-file': `${PKI}/front-proxy-ca.crt`,
    'requestheader-allowed-names': 'front-proxy-client',
    'requestheader-extra-headers-prefix': 'X-Remote-Extra-',
    'requestheader-group-headers': 'X-Remote-Group',
    'requestheader-username-headers': 'X-Remote-User',
    'enable-aggregator-routing': true,
    'encryption-provider-config': `${K8S}/encryption-config.yaml`,
    'audit-policy-file': `${K8S}/audit-policy.yaml`,
    'audit-log-path': '/var/log/kubernetes/audit.log',
    'audit-log-maxage': 30,
    'audit-log-maxbackup': 3,
    'audit-log-maxsize': 100,
    'event-ttl': '1h',
  };
}

export function controllerManagerFlags(ctx: PhaseContext): Flags {
  const { spec, version } = ctx;
  const conf = `${K8S}/controller-manager.conf`;
  return {
    kubeconfig: conf,
    'authentication-kubeconfig': conf,
    'authorization-kubeconfig': conf,
    'bind-address': '127.0.0.1',
    port: version.insecurePortFlag ? 0 : undefined,
    'leader-elect': true,
    'use-service-account-credentials': true,
    controllers: ['*', 'bootstrapsigner', 'tokencleaner'],
    // flannel's --kube-subnet-mgr reads node.spec.podCIDR, which this allocates; with
    // cni: bridge Slipway fixes each node's slice itself (plan/pod-slices.ts), so nothing
    // is allocated (the default) and no controller needs the cluster CIDR.
    ...(spec.network.cni === 'flannel'
      ? { 'allocate-node-cidrs': true, 'cluster-cidr': spec.network.podCIDR.cidr, 'node-cidr-mask-size': POD_SLICE_PREFIX }
      : {}),
    'service-cluster-ip-range': spec.network.serviceCIDR.cidr,
    'cluster-name': spec.name,
    'cluster-signing-cert-file': `${PKI}/ca.crt`,
    'cluster-signing-key-file': `${PKI}/ca.key`,
    'root-ca-file': `${PKI}/ca.crt`,
    'service-account-private-key-file': `${PKI}/sa.key`,
    'requestheader-client-ca-file': `${PKI}/front-proxy-ca.crt`,
    'client-ca-file': `${PKI}/ca.crt`,
  };
}

export function schedulerFlags(ctx: PhaseContext): Flags {
  const conf = `${K8S}/scheduler.conf`;
  return {
    config: `${K8S}/kube-scheduler.yaml`,
    'authentication-kubeconfig': conf,
    'authorization-kubeconfig': conf,
    'bind-address': '127.0.0.1',
    port: ctx.version.insecurePortFlag ? 0 : undefined,
  };
}

// Guide 02's audit policy, on the audit.k8s.io/v1 API every supported version serves.
const AUDIT_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    { level: 'None', users: ['system:kube-proxy'], verbs: ['watch'], resources: [{ group: '', resources: ['endpoints', 'services'] }] },
    { level: 'None', users: ['system:unsecured'], namespaces: ['kube-system'], verbs: ['get'], resources: [{ group: '', resources: ['configmaps'] }] },
    { level: 'None', userGroups: ['system:nodes'], verbs: ['get'], resources: [{ group: '', resources: ['nodes'] }] },
    { level: 'None', users: ['system:kube-controller-manager', 'system:kube-scheduler', 'system:serviceaccount:kube-system:endpoint-controller'], verbs: ['get', 'update'], namespaces: ['kube-system'], resources: [{ group: '', resources: ['endpoints'] }] },
    { level: 'None', nonResourceURLs: ['/healthz*', '/readyz*', '/livez*', '/version', '/swagger*'] },
    { level: 'None', resources: [{ group: '', resources: ['events'] }] },
    // Secrets, ConfigMaps and token reviews may carry credentials: metadata only.
    { level: 'Metadata', resources: [{ group: '', resources: ['secrets', 'configmaps'] }, { group: 'authentication.k8s.io', resources: ['tokenreviews'] }] },
    { level: 'Request', verbs: ['get', 'list', 'watch'] },
    { level: 'RequestResponse' },
  ],
};

function machineFiles(ctx: PhaseContext, m: Machine): File[] {
  if (!hasRole(m, 'control-plane')) return [];
  const { spec, secrets, version } = ctx;
  const ca = secrets.certs.ca.cert;
  // Local components talk to their own apiserver, so a control-plane machine keeps
  // working while the VIP moves.
  const local = `https://${m.ip}:${apiserverPort(spec)}`;
  const conf = (user: string, id: ClusterCertId) =>
    kubeconfig({ cluster: spec.name, server: local, caCert: ca, user: { name: user, clientCert: secrets.certs[id].cert, clientKey: secrets.certs[id].key } });
  const encryption = {
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: [
      {
        resources: ['secrets'],
        providers: [{ aescbc: { keys: [{ name: 'key1', secret: secrets.encryptionKey }] } }, { identity: {} }],
      },
    ],
  };
  const scheduler = {
    apiVersion: version.schedulerConfigAPI,
    kind: 'KubeSchedulerConfiguration',
    clientConnection: { kubeconfig: `${K8S}/scheduler.conf` },
    leaderElection: { leaderElect: true },
    // Before 1.24 a scheduler run with --config ignores --port=0 and serves plain,
    // unauthenticated healthz/metrics on *:10251 (its config rejects port 0): keep that
    // port on loopback. The secure port (10259) is the one to use.
    ...(version.insecurePortFlag ? { healthzBindAddress: '127.0.0.1:10251', metricsBindAddress: '127.0.0.1:10251' } : {}),
  };
  const unit = (description: string, exec: string, after: string[] = [], extra: Record<string, string> = {}) =>
    unitFile({
      Unit: { Description: description, Documentation: 'https://kubernetes.io/docs/reference/command-line-tools-reference/', ...unitDeps, After: [...unitDeps.After, ...after] },
      Service: { ...service(exec), ...extra },
      Install: { WantedBy: 'multi-user.target' },
    });
  return [
    { path: `${K8S}/controller-manager.conf`, mode: 0o600, contents: conf('system:kube-controller-manager', 'controller-manager'), secret: true },
    { path: `${K8S}/scheduler.conf`, mode: 0o600, contents: conf('system:kube-scheduler', 'scheduler'), secret: true },
    { path: `${K8S}/admin.conf`, mode: 0o600, contents: conf('kubernetes-admin', 'admin'), secret: true },
    { path: `${K8S}/encryption-config.yaml`, mode: 0o600, contents: stringify(encryption), secret: true },
    { path: `${K8S}/audit-policy.yaml`, mode: 0o644, contents: stringify(AUDIT_POLICY) },
    { path: `${K8S}/kube-scheduler.yaml`, mode: 0o644, contents: stringify(scheduler) },
    {
      path: `${UNITS}/kube-apiserver.service`,
      mode: 0o644,
      contents: unit('Kubernetes API Server', command(`${BIN}/kube-apiserver`, apiserverFlags(ctx, m)), hasRole(m, 'etcd') ? ['etcd.service'] : [], APISERVER_STOP),
    },
    { path: `${UNITS}/kube-controller-manager.service`, mode: 0o644, contents: unit('Kubernetes Controller Manager', command(`${BIN}/kube-controller-manager`, controllerManagerFlags(ctx))) },
    { path: `${UNITS}/kube-scheduler.service`, mode: 0o644, contents: unit('Kubernetes Scheduler', command(`${BIN}/kube-scheduler`, schedulerFlags(ctx))) },
  ];
}

/** The operator's kubeconfig: through the VIP (or endpoint name) at the client port. */
function clusterFiles(ctx: PhaseContext): File[] {
  const { spec, secrets } = ctx;
  const server = `https://${apiHost(spec)}:${spec.controlPlane.port}`;
  return [
    {
      path: 'admin.conf',
      mode: 0o600,
      secret: true,
      contents: kubeconfig({ cluster: spec.name, server, caCert: secrets.certs.ca.cert, user: { name: 'kubernetes-admin', clientCert: secrets.certs.admin.cert, clientKey: secrets.certs.admin.key } }),
    },
  ];
}

export const controlPlanePhase: Phase = { name: 'control-plane', machine: machineFiles, cluster: clusterFiles };
