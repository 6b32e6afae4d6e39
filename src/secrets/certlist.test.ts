import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certList, type CertDef } from './certlist.ts';
import { parseCidr } from '../lib/ipv4.ts';
import { haSpec, machine, singleSpec } from '../../test/helpers/spec.ts';

const byId = (defs: CertDef[], id: string): CertDef => {
  const d = defs.find((x) => x.id === id);
  assert.ok(d, `no certificate ${id}`);
  return d;
};

test('the HA spec gets the kubeadm set: 3 CAs, 5 control-plane leaves, 2 per etcd member, 4 kubeconfig clients', () => {
  assert.deepEqual(
    certList(haSpec()).map((d) => d.id),
    [
      'ca', 'front-proxy-ca', 'etcd/ca',
      'apiserver', 'apiserver-kubelet-client', 'front-proxy-client', 'apiserver-etcd-client', 'etcd/healthcheck-client',
      'etcd/server/cp1', 'etcd/peer/cp1', 'etcd/server/cp2', 'etcd/peer/cp2', 'etcd/server/cp3', 'etcd/peer/cp3',
      'admin', 'controller-manager', 'scheduler', 'kube-proxy',
    ],
  );
});

test('CAs are self-signed, carry no extended usages and use caValidityDays', () => {
  const spec = haSpec({ pki: { keyAlgorithm: 'ecdsa-p256', caValidityDays: 1000, certValidityDays: 90, bootstrapTokenValidityHours: 24 } });
  const cas = certList(spec).filter((d) => d.isCA);
  assert.deepEqual(
    cas.map((d) => [d.id, d.cn, d.ca, d.usages, d.validityDays]),
    [
      ['ca', 'kubernetes', null, [], 1000],
      ['front-proxy-ca', 'front-proxy-ca', null, [], 1000],
      ['etcd/ca', 'etcd-ca', null, [], 1000],
    ],
  );
  for (const d of certList(spec).filter((x) => !x.isCA)) assert.equal(d.validityDays, 90, d.id);
});

test('who signs what', () => {
  const signer = Object.fromEntries(certList(haSpec()).map((d) => [d.id, d.ca]));
  for (const id of ['apiserver', 'apiserver-kubelet-client', 'admin', 'controller-manager', 'scheduler', 'kube-proxy']) assert.equal(signer[id], 'ca', id);
  assert.equal(signer['front-proxy-client'], 'front-proxy-ca');
  for (const id of ['apiserver-etcd-client', 'etcd/healthcheck-client', 'etcd/server/cp1', 'etcd/peer/cp2']) assert.equal(signer[id], 'etcd/ca', id);
});

test('every leaf names a CA from the same list, and ids are unique', () => {
  const defs = certList(haSpec());
  const cas = new Set(defs.filter((d) => d.isCA).map((d) => d.id));
  for (const d of defs.filter((x) => !x.isCA)) assert.ok(d.ca !== null && cas.has(d.ca), `${d.id} signed by ${d.ca}`);
  assert.equal(new Set(defs.map((d) => d.id)).size, defs.length);
});

test('subjects and usages: CN is the user, O the group Kubernetes grants', () => {
  const defs = certList(haSpec());
  const row = (id: string) => {
    const d = byId(defs, id);
    return [d.cn, d.o ?? [], d.usages];
  };
  assert.deepEqual(row('apiserver'), ['kube-apiserver', [], ['server']]);
  assert.deepEqual(row('apiserver-kubelet-client'), ['kube-apiserver-kubelet-client', ['system:masters'], ['client']]);
  assert.deepEqual(row('front-proxy-client'), ['front-proxy-client', [], ['client']]);
  assert.deepEqual(row('apiserver-etcd-client'), ['kube-apiserver-etcd-client', [], ['client']]);
  assert.deepEqual(row('etcd/healthcheck-client'), ['kube-etcd-healthcheck-client', [], ['client']]);
  assert.deepEqual(row('admin'), ['kubernetes-admin', ['system:masters'], ['client']]);
  assert.deepEqual(row('controller-manager'), ['system:kube-controller-manager', [], ['client']]);
  assert.deepEqual(row('scheduler'), ['system:kube-scheduler', [], ['client']]);
  assert.deepEqual(row('kube-proxy'), ['system:kube-proxy', [], ['client']]);
  // Only the two admin identities are in system:masters.
  assert.deepEqual(defs.filter((d) => d.o?.includes('system:masters')).map((d) => d.id), ['apiserver-kubelet-client', 'admin']);
});

test('apiserver SANs (HA): service names, localhost, endpoint, machines; first service IP, VIP, machine IPs, loopback', () => {
  assert.deepEqual(byId(certList(haSpec()), 'apiserver').sans, {
    dns: [
      'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local',
      'localhost', 'k8s-api.lab.local', 'cp1', 'cp2', 'cp3',
    ],
    ip: ['10.96.0.1', '10.20.30.10', '10.20.30.11', '10.20.30.12', '10.20.30.13', '127.0.0.1'],
  });
});

test('apiserver SANs (single): no endpoint name and no VIP when the spec has none', () => {
  assert.deepEqual(byId(certList(singleSpec()), 'apiserver').sans, {
    dns: ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost', 'cp1'],
    ip: ['10.96.0.1', '10.20.30.11', '127.0.0.1'],
  });
});

test('apiserver SANs follow dnsDomain and serviceCIDR', () => {
  const spec = haSpec();
  spec.network = { ...spec.network, dnsDomain: 'k8s.example', serviceCIDR: parseCidr('172.20.0.0/16')! };
  const sans = byId(certList(spec), 'apiserver').sans!;
  assert.ok(sans.dns.includes('kubernetes.default.svc.k8s.example'));
  assert.equal(sans.ip[0], '172.20.0.1');
});

test('a name given twice appears once (endpoint = a machine name)', () => {
  const spec = singleSpec();
  spec.controlPlane.endpoint = 'cp1';
  const sans = byId(certList(spec), 'apiserver').sans!;
  assert.deepEqual(sans.dns.filter((n) => n === 'cp1'), ['cp1']);
});

test('etcd server and peer certificates: one pair per etcd member, named after it', () => {
  const defs = certList(haSpec());
  for (const [name, ip] of [['cp1', '10.20.30.11'], ['cp2', '10.20.30.12'], ['cp3', '10.20.30.13']] as const) {
    for (const kind of ['server', 'peer']) {
      const d = byId(defs, `etcd/${kind}/${name}`);
      assert.equal(d.cn, name);
      assert.equal(d.ca, 'etcd/ca');
      assert.deepEqual(d.usages, ['server', 'client']);
      assert.deepEqual(d.sans, { dns: [name, 'localhost'], ip: [ip, '127.0.0.1'] });
    }
  }
});

test('etcd on its own machines: members get etcd certs, only control planes are apiserver SANs, workers get nothing', () => {
  const spec = haSpec({
    machines: [
      machine('cp1', '10.20.30.11', ['control-plane']),
      machine('e1', '10.20.30.31', ['etcd']),
      machine('w1', '10.20.30.21', ['worker']),
    ],
  });
  const defs = certList(spec);
  const ids = defs.map((d) => d.id);
  assert.deepEqual(ids.filter((id) => id.startsWith('etcd/server/') || id.startsWith('etcd/peer/')), ['etcd/server/e1', 'etcd/peer/e1']);
  assert.ok(!ids.some((id) => id.endsWith('/w1') || id.endsWith('/cp1')));
  const sans = byId(defs, 'apiserver').sans!;
  assert.ok(sans.dns.includes('cp1') && !sans.dns.includes('e1') && !sans.dns.includes('w1'));
  assert.ok(sans.ip.includes('10.20.30.11') && !sans.ip.includes('10.20.30.31'));
});

test('pure: same spec, same table, spec untouched', () => {
  const spec = haSpec();
  const before = JSON.stringify(spec);
  assert.deepEqual(certList(spec), certList(spec));
  assert.equal(JSON.stringify(spec), before);
});
