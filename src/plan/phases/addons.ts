// Cluster-level objects: the bootstrap token and the RBAC that lets kubelets join and
// have their client CSRs approved without a human (guide 02 approves them by hand),
// access for the apiserver to kubelets, kube-proxy and flannel (when it is the CNI), CoreDNS, and the
// guide-02 smoke test. Control-plane machines apply them with kubectl once the API answers.
import { stringify } from 'yaml';
import { nthHost } from '../../lib/ipv4.ts';
import { hasRole } from '../../spec/types.ts';
import { unitFile } from '../systemd.ts';
import type { File, Phase, PhaseContext } from '../types.ts';
import { ADDONS, BIN, K8S, UNITS } from '../paths.ts';
import { SMOKE_NODE_PORT } from '../../catalog/cluster.ts';

type Obj = Record<string, unknown>;
export const yamlDocs = (objs: Obj[]) => objs.map((o) => stringify(o)).join('---\n');
const b64 = (s: string) => Buffer.from(s).toString('base64');
const binding = (name: string, role: string, subjects: Obj[]): Obj => ({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRoleBinding',
  metadata: { name },
  roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
  subjects,
});
/** A Deployment of `replicas` pods labelled `labels`, selected by them. */
const deployment = (name: string, namespace: string, labels: Record<string, string>, replicas: number, pod: Obj): Obj => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace, labels },
  spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: pod } },
});
const group = (name: string): Obj => ({ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name });
const user = (name: string): Obj => ({ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name });

export const BOOTSTRAP_GROUP = 'system:bootstrappers:slipway:default-node-token';

/**
 * A kubelet bootstrap token as the API stores it (kube-system/bootstrap-token-<id>);
 * `expiration` (RFC 3339) makes the tokencleaner controller delete it then, and the
 * apiserver refuse it from then on.
 */
export function bootstrapTokenSecret(id: string, secret: string, description: string, expiration?: string): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'bootstrap.kubernetes.io/token',
    metadata: { name: `bootstrap-token-${id}`, namespace: 'kube-system' },
    data: {
      description: b64(description),
      'token-id': b64(id),
      'token-secret': b64(secret),
      ...(expiration ? { expiration: b64(expiration) } : {}),
      'usage-bootstrap-authentication': b64('true'),
      'usage-bootstrap-signing': b64('true'),
      'auth-extra-groups': b64(BOOTSTRAP_GROUP),
    },
  };
}

function bootstrap(ctx: PhaseContext): Obj[] {
  const { id, secret } = ctx.secrets.bootstrapToken;
  // the install token, until apply retired it (deleted from the cluster: not re-created here)
  const retired = ctx.secrets.windowTokens?.retired.includes(id);
  return [
    ...(retired ? [] : [bootstrapTokenSecret(id, secret, 'Slipway kubelet TLS bootstrap')]),
    binding('slipway:kubelet-bootstrap', 'system:node-bootstrapper', [group(BOOTSTRAP_GROUP)]),
    // The csrapproving controller approves a kubelet's first client CSR and its renewals.
    binding('slipway:node-autoapprove-bootstrap', 'system:certificates.k8s.io:certificatesigningrequests:nodeclient', [group(BOOTSTRAP_GROUP)]),
    binding('slipway:node-autoapprove-certificate-rotation', 'system:certificates.k8s.io:certificatesigningrequests:selfnodeclient', [group('system:nodes')]),
  ];
}

function access(ctx: PhaseContext): Obj[] {
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'slipway:kube-apiserver-to-kubelet' },
      rules: [{ apiGroups: [''], resources: ['nodes/proxy', 'nodes/stats', 'nodes/log', 'nodes/spec', 'nodes/metrics'], verbs: ['*'] }],
    },
    binding('slipway:kube-apiserver-to-kubelet', 'slipway:kube-apiserver-to-kubelet', [user('kube-apiserver-kubelet-client')]),
    binding('slipway:kube-proxy', 'system:node-proxier', [user('system:kube-proxy')]),
    ...(ctx.spec.network.cni === 'flannel' ? flannelAccess() : []),
  ];
}

function flannelAccess(): Obj[] {
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'slipway:flannel' },
      rules: [
        { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
        { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
      ],
    },
    // flanneld runs with the kubelet's credential; the Node authorizer limits writes to its own node.
    binding('slipway:flannel', 'slipway:flannel', [group('system:nodes')]),
  ];
}

function coredns(ctx: PhaseContext): Obj[] {
  const { spec, version } = ctx;
  const dnsIP = nthHost(spec.network.serviceCIDR, 10);
  const labels = { 'k8s-app': 'kube-dns' };
  const corefile = `.:53 {
    errors
    health { lameduck 5s }
    ready
    kubernetes ${spec.network.dnsDomain} in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
`;
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: 'kube-system' } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns' },
      rules: [
        { apiGroups: [''], resources: ['endpoints', 'services', 'pods', 'namespaces'], verbs: ['list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    binding('system:coredns', 'system:coredns', [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }]),
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'coredns', namespace: 'kube-system' }, data: { Corefile: corefile } },
    deployment('coredns', 'kube-system', labels, 2, {
      serviceAccountName: 'coredns',
      priorityClassName: 'system-cluster-critical',
      tolerations: [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }, { key: 'CriticalAddonsOnly', operator: 'Exists' }],
      containers: [
        {
          name: 'coredns',
          image: version.coreDNSImage,
          args: ['-conf', '/etc/coredns/Corefile'],
          ports: [
            { name: 'dns', containerPort: 53, protocol: 'UDP' },
            { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
            { name: 'metrics', containerPort: 9153, protocol: 'TCP' },
          ],
          volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] }, readOnlyRootFilesystem: true },
          livenessProbe: { httpGet: { path: '/health', port: 8080 }, initialDelaySeconds: 60 },
          readinessProbe: { httpGet: { path: '/ready', port: 8181 } },
        },
      ],
      dnsPolicy: 'Default',
      volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
    }),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { ...labels, 'kubernetes.io/name': 'CoreDNS' } },
      spec: {
        selector: labels,
        clusterIP: dnsIP,
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
          { name: 'metrics', port: 9153, protocol: 'TCP' },
        ],
      },
    },
  ];
}

function smokeTest(): Obj[] {
  const labels = { app: 'slipway-smoke' };
  return [
    deployment('slipway-smoke', 'default', labels, 2, { containers: [{ name: 'nginx', image: 'docker.io/library/nginx:1.27-alpine', ports: [{ containerPort: 80 }] }] }),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'slipway-smoke', namespace: 'default' },
      spec: { type: 'NodePort', selector: labels, ports: [{ port: 80, targetPort: 80, nodePort: SMOKE_NODE_PORT }] },
    },
  ];
}

/** name → objects; applied in this order. The smoke test is applied by `slipway rehearse` or the operator. */
function addonSets(ctx: PhaseContext): [string, Obj[]][] {
  return [
    ['10-bootstrap.yaml', bootstrap(ctx)],
    ['20-access.yaml', access(ctx)],
    ['30-coredns.yaml', coredns(ctx)],
  ];
}

// The bootstrap token Secret is a credential: 0600 and masked, wherever it lands.
const addonFiles = (ctx: PhaseContext, dir: string): File[] =>
  addonSets(ctx).map(([name, objs]) => {
    const secret = name === '10-bootstrap.yaml';
    return { path: `${dir}/${name}`, mode: secret ? 0o600 : 0o644, contents: yamlDocs(objs), secret };
  });

const APPLY_SCRIPT = `#!/bin/sh
# Apply the cluster's add-ons once the API answers (idempotent: every control-plane machine runs it).
set -eu
export KUBECONFIG=${K8S}/admin.conf
for i in $(seq 120); do ${BIN}/kubectl get --raw=/readyz >/dev/null 2>&1 && break; sleep 5; done
${BIN}/kubectl apply -f ${ADDONS}/
`;

export const addonsPhase: Phase = {
  name: 'addons',
  cluster(ctx) {
    const files = addonFiles(ctx, 'addons');
    files.push({ path: 'smoke-test.yaml', mode: 0o644, contents: yamlDocs(smokeTest()) });
    return files;
  },
  machine(ctx, m) {
    if (!hasRole(m, 'control-plane')) return [];
    const files = addonFiles(ctx, ADDONS);
    files.push({ path: '/etc/slipway/apply-addons.sh', mode: 0o755, contents: APPLY_SCRIPT });
    files.push({
      path: `${UNITS}/slipway-addons.service`,
      mode: 0o644,
      contents: unitFile({
        // the script runs kubectl: without it (no Kubernetes in the bundle) nothing to wait for
        Unit: { Description: 'Apply Slipway cluster add-ons (bootstrap RBAC, CoreDNS)', After: ['kube-apiserver.service'], Wants: 'kube-apiserver.service', ConditionFileIsExecutable: `${BIN}/kubectl` },
        Service: { Type: 'oneshot', RemainAfterExit: true, ExecStart: '/bin/sh /etc/slipway/apply-addons.sh', Restart: 'on-failure', RestartSec: '10s' },
        Install: { WantedBy: 'multi-user.target' },
      }),
    });
    return files;
  },
};
