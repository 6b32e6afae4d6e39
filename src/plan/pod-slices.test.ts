// cni: bridge: fixed pod slices by position, and what each cni value renders (and does
// not render) on the machines, the control plane and the add-ons (the bundle: bundle/contents.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr } from '../lib/ipv4.ts';
import { podSliceOf, podSlices } from './pod-slices.ts';
import { podSlice, sliceCount, POD_SLICE_PREFIX } from '../lib/pod-slices.ts';
import { buildPlan } from './plan.ts';
import { binariesFor, BRIDGE_CONFLIST, MASQUERADE_UNIT } from './phases/node.ts';
import type { Cni, Spec } from '../spec/types.ts';
import { haSpec, machine } from '../../test/helpers/spec.ts';
import { fakeSecrets } from '../../test/helpers/secrets.ts';

const withCni = (cni: Cni, over: Partial<Spec['network']> = {}): Spec => {
  const s = haSpec();
  return { ...s, network: { ...s.network, ...over, cni } };
};
const files = (spec: Spec) => {
  const plan = buildPlan(spec, fakeSecrets(spec));
  const get = (m: string, path: string) => plan.machines.find((x) => x.machine.name === m)!.files.find((f) => f.path === path)?.contents;
  return { plan, get };
};

test('slices: /24s of podCIDR in order, from the network address', () => {
  const pods = parseCidr('10.244.0.0/16')!;
  assert.equal(POD_SLICE_PREFIX, 24);
  assert.equal(sliceCount(pods), 256);
  assert.equal(sliceCount(parseCidr('10.244.0.0/23')!), 2);
  assert.equal(sliceCount(parseCidr('10.244.0.0/24')!), 1);
  assert.equal(sliceCount(parseCidr('10.244.0.0/25')!), 0);
  assert.equal(sliceCount(parseCidr('10.0.0.0/8')!), 65536);
  assert.equal(podSlice(pods, 0).cidr, '10.244.0.0/24');
  assert.equal(podSlice(pods, 3).cidr, '10.244.3.0/24');
  assert.equal(podSlice(pods, 255).cidr, '10.244.255.0/24');
  assert.equal(podSlice(parseCidr('172.16.0.0/12')!, 300).cidr, '172.17.44.0/24');
  assert.throws(() => podSlice(pods, 256), /podCIDR 10\.244\.0\.0\/16 has no \/24 slice number 256 \(it has 256\)/);
  assert.throws(() => podSlice(pods, -1), /no \/24 slice/);
});

test('slices follow the machine list: appending keeps existing slices, reordering moves them', () => {
  const spec = haSpec();
  const before = podSlices(spec).map(({ machine, slice }) => `${machine.name}=${slice.cidr}`);
  assert.deepEqual(before, ['cp1=10.244.0.0/24', 'cp2=10.244.1.0/24', 'cp3=10.244.2.0/24', 'w1=10.244.3.0/24', 'w2=10.244.4.0/24']);
  const grown = { ...spec, machines: [...spec.machines, machine('w3', '10.20.30.23', ['worker'])] };
  assert.deepEqual(podSlices(grown).slice(0, 5).map(({ machine, slice }) => `${machine.name}=${slice.cidr}`), before);
  assert.equal(podSliceOf(grown, grown.machines[5]!).cidr, '10.244.5.0/24');
  const swapped = { ...spec, machines: [spec.machines[1]!, spec.machines[0]!, ...spec.machines.slice(2)] };
  assert.equal(podSliceOf(swapped, spec.machines[0]!).cidr, '10.244.1.0/24');
  assert.throws(() => podSliceOf(spec, machine('nope', '10.20.30.99', ['worker'])), /machine nope is not in the cluster/);
});

test('cni: bridge renders the bridge conflist, routes to every other slice, and no flannel', () => {
  const spec = withCni('bridge');
  const { plan, get } = files(spec);
  for (const { machine: m, slice } of podSlices(spec)) {
    const conf = JSON.parse(get(m.name, BRIDGE_CONFLIST)!) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
    assert.equal(conf.cniVersion, '0.4.0');
    assert.equal(conf.name, 'slipway');
    assert.deepEqual(conf.plugins, [
      {
        type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: slice.cidr }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ]);
    const network = get(m.name, '/etc/systemd/network/10-slipway.network')!;
    assert.match(network, /^\[Network\]\n(?:.*\n)*IPForward=ipv4\n/m);
    const routes = [...network.matchAll(/^\[Route\]\nDestination=(\S+)\nGateway=(\S+)$/gm)].map(([, d, g]) => `${d} via ${g}`);
    const others = spec.machines.filter((o) => o.name !== m.name).map((o) => `${podSliceOf(spec, o).cidr} via ${o.ip}`);
    assert.deepEqual(routes, others, m.name);
    const paths = plan.machines.find((x) => x.machine.name === m.name)!.files.map((f) => f.path);
    assert.ok(!paths.some((p) => /flannel/.test(p)), `${m.name}: ${paths.filter((p) => /flannel/.test(p)).join(', ')}`);
    assert.ok(paths.includes(`/etc/systemd/system/multi-user.target.wants/${MASQUERADE_UNIT}`), `${m.name}: masquerade unit enabled`);
    assert.deepEqual(binariesFor(m, 'bridge').map(([, a]) => a).filter((a) => a.startsWith('cni/') || a === 'flanneld'), ['cni/bridge', 'cni/host-local', 'cni/loopback', 'cni/portmap']);
    assert.doesNotMatch(get(m.name, '/etc/slipway/binaries.list')!, /flannel/);
  }
  const masq = get('w1', `/etc/systemd/system/${MASQUERADE_UNIT}`)!;
  assert.match(masq, /^ExecStart=\/sbin\/iptables -w -t nat -A POSTROUTING -s 10\.244\.0\.0\/16 ! -d 10\.244\.0\.0\/16 -j MASQUERADE$/m);
  assert.match(masq, /^Before=kubelet\.service$/m);
  const cm = get('cp1', '/etc/systemd/system/kube-controller-manager.service')!;
  assert.doesNotMatch(cm, /allocate-node-cidrs|node-cidr-mask-size|cluster-cidr/);
  assert.match(get('w1', '/var/lib/kube-proxy/config.yaml')!, /^clusterCIDR: 10\.244\.0\.0\/16$/m);
  const access = plan.cluster.find((f) => f.path.endsWith('20-access.yaml'))!.contents;
  assert.doesNotMatch(access, /flannel/);
});

test('cni: flannel (the default) is unchanged: flannel files, node CIDR allocation, no routes', () => {
  const spec = haSpec();
  assert.equal(spec.network.cni, 'flannel');
  const { plan, get } = files(spec);
  for (const m of spec.machines) {
    assert.ok(get(m.name, '/etc/cni/net.d/10-flannel.conflist'));
    assert.ok(get(m.name, '/etc/kube-flannel/net-conf.json'));
    assert.ok(get(m.name, '/etc/systemd/system/flanneld.service'));
    assert.equal(get(m.name, BRIDGE_CONFLIST), undefined);
    assert.equal(get(m.name, `/etc/systemd/system/${MASQUERADE_UNIT}`), undefined);
    const network = get(m.name, '/etc/systemd/network/10-slipway.network')!;
    assert.doesNotMatch(network, /\[Route\]|IPForward/);
    assert.ok(network.endsWith('DHCP=no\nIPv6AcceptRA=no\n'));
    assert.deepEqual(binariesFor(m).map(([, a]) => a).filter((a) => a.startsWith('cni/') || a === 'flanneld'), ['flanneld', 'cni/bridge', 'cni/host-local', 'cni/loopback', 'cni/portmap', 'cni/flannel']);
    assert.deepEqual(binariesFor(m, 'flannel'), binariesFor(m));
  }
  assert.match(get('cp1', '/etc/systemd/system/kube-controller-manager.service')!, /--allocate-node-cidrs=true \\\n {2}--cluster-cidr=10\.244\.0\.0\/16 \\\n {2}--node-cidr-mask-size=24 \\\n/);
  assert.match(plan.cluster.find((f) => f.path.endsWith('20-access.yaml'))!.contents, /slipway:flannel/);
});
