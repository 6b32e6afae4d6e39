// The planner is pure: same inputs, same bytes; per-version differences come from the
// version table; phases never write the same path twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildPlan } from './plan.ts';
import { versionProfile, KNOWN_VERSIONS, isSupported } from '../catalog/versions.ts';
import { haSpec, singleSpec } from '../../test/helpers/spec.ts';
import { fakeSecrets } from '../../test/helpers/secrets.ts';

const file = (plan: ReturnType<typeof buildPlan>, machine: string, path: string) => {
  const f = plan.machines.find((m) => m.machine.name === machine)?.files.find((x) => x.path === path);
  assert.ok(f, `${machine}:${path}`);
  return f.contents;
};

test('the same spec and secrets give byte-identical plans', () => {
  const spec = haSpec();
  assert.deepEqual(buildPlan(spec, fakeSecrets(spec)), buildPlan(haSpec(), fakeSecrets(spec)));
});

test('kubelet 1.20 gets --container-runtime=remote; 1.34 reads the endpoint from its config', () => {
  const old = haSpec({ kubernetesVersion: 'v1.20.2' });
  const p20 = buildPlan(old, fakeSecrets(old));
  assert.match(file(p20, 'w1', '/etc/systemd/system/kubelet.service'), /--container-runtime=remote \\\n {2}--container-runtime-endpoint=unix:\/\/\/run\/containerd\/containerd\.sock/);
  assert.doesNotMatch(file(p20, 'w1', '/var/lib/kubelet/config.yaml'), /containerRuntimeEndpoint/);
  assert.match(file(p20, 'cp1', '/etc/kubernetes/kube-scheduler.yaml'), /apiVersion: kubescheduler\.config\.k8s\.io\/v1beta1/);
  assert.match(file(p20, 'cp1', '/etc/systemd/system/kube-controller-manager.service'), /--port=0/);
  assert.match(file(p20, 'cp1', '/etc/kubernetes/kube-scheduler.yaml'), /healthzBindAddress: 127\.0\.0\.1:10251/);

  const now = haSpec();
  const p34 = buildPlan(now, fakeSecrets(now));
  assert.doesNotMatch(file(p34, 'w1', '/etc/systemd/system/kubelet.service'), /--container-runtime/);
  assert.match(file(p34, 'w1', '/var/lib/kubelet/config.yaml'), /containerRuntimeEndpoint: unix:\/\/\/run\/containerd\/containerd\.sock/);
  assert.match(file(p34, 'cp1', '/etc/kubernetes/kube-scheduler.yaml'), /apiVersion: kubescheduler\.config\.k8s\.io\/v1\n/);
  assert.doesNotMatch(file(p34, 'cp1', '/etc/systemd/system/kube-controller-manager.service'), /--port=/);
  assert.doesNotMatch(file(p34, 'cp1', '/etc/kubernetes/kube-scheduler.yaml'), /healthzBindAddress/);
});

test('cluster DNS is the 10th service IP; the apiserver certificate is not the planner\'s business', () => {
  const spec = haSpec();
  const p = buildPlan(spec, fakeSecrets(spec));
  assert.match(file(p, 'w2', '/var/lib/kubelet/config.yaml'), /clusterDNS:\n {2}- 10\.96\.0\.10\n/);
  assert.match(file(p, 'w2', '/etc/kube-flannel/net-conf.json'), /"Network": "10\.244\.0\.0\/16"/);
  assert.match(file(p, 'w2', '/etc/kube-flannel/net-conf.json'), /"Type": "vxlan"/);
});

test('with a VIP, apiservers bind their own IP on 6443; without, the configured port', () => {
  const ha = haSpec({ controlPlane: { ...haSpec().controlPlane, port: 443 } });
  const p = buildPlan(ha, fakeSecrets(ha));
  assert.match(file(p, 'cp2', '/etc/systemd/system/kube-apiserver.service'), /--bind-address=10\.20\.30\.12 \\\n {2}--secure-port=6443/);
  assert.match(p.cluster.find((f) => f.path === 'admin.conf')!.contents, /server: https:\/\/10\.20\.30\.10:443/);
  const one = singleSpec({ controlPlane: { port: 443, vrid: 51 } });
  const q = buildPlan(one, fakeSecrets(one));
  assert.match(file(q, 'cp1', '/etc/systemd/system/kube-apiserver.service'), /--secure-port=443/);
  // a stop waits for watches up to --request-timeout (60 s) otherwise: bounded at 20 s by
  // its own ExecStop (a TimeoutStopSec would fail the unit and report the machine failed)
  const api = file(p, 'cp2', '/etc/systemd/system/kube-apiserver.service');
  assert.match(api, /^ExecStop=\/bin\/sh -c '.*kill -TERM "\$\$\{MAINPID\}".*-lt 200 \].*kill -KILL "\$\$\{MAINPID\}"'$/m);
  assert.match(api, /^SuccessExitStatus=SIGKILL$/m);
  assert.doesNotMatch(api, /TimeoutStopSec/);
  assert.ok(!q.machines[0]!.files.some((f) => f.path.startsWith('/etc/haproxy')), 'no haproxy without a VIP');
});

test('units with [Install] are enabled by a link, as systemctl enable does', () => {
  const spec = haSpec();
  const p = buildPlan(spec, fakeSecrets(spec));
  const links = p.machines[3]!.files.filter((f) => f.link).map((f) => f.path);
  assert.ok(links.includes('/etc/systemd/system/multi-user.target.wants/kubelet.service'));
  assert.ok(!links.some((l) => l.includes('etcd')), 'w1 runs no etcd');
});

test('the version table covers every known version, and refuses what it does not know', () => {
  for (const v of KNOWN_VERSIONS) assert.equal(versionProfile(v).version, v);
  assert.equal(isSupported('v1.19.16'), false);
  assert.equal(isSupported('v1.99.0'), false);
  assert.throws(() => versionProfile('v1.19.16'), /unsupported Kubernetes version v1\.19\.16/);
});
