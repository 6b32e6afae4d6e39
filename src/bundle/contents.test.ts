// The bundle's contents list agrees with what the plan makes machines fetch and pull:
// every binary a machine's binaries.list names is a bin/ entry, every image any rendered
// file references is an image of the bundle, and the OS files sit where boot.ts points.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundleContents, destinations, type Item } from './contents.ts';
import { OS_ASSETS } from '../catalog/os.ts';
import { binariesFor } from '../plan/phases/node.ts';
import { buildPlan } from '../plan/plan.ts';
import { KNOWN_VERSIONS } from '../catalog/versions.ts';
import { PXELINUX_INITRD, PXELINUX_KERNEL } from '../plan/phases/pxe/boot.ts';
import type { Spec } from '../spec/types.ts';
import { haSpec, singleSpec } from '../../test/helpers/spec.ts';
import { fakeSecrets } from '../../test/helpers/secrets.ts';


const all = (items: Item[]) => items.flatMap(destinations);

test('every binary any machine fetches is in the bundle under bin/<asset name>, once', () => {
  for (const version of KNOWN_VERSIONS) {
    for (const spec of [haSpec({ kubernetesVersion: version }), singleSpec({ kubernetesVersion: version })]) {
      const dests = all(bundleContents(spec).items);
      assert.equal(new Set(dests).size, dests.length, `${version}: a destination twice`);
      for (const m of spec.machines) for (const [, asset] of binariesFor(m)) assert.ok(dests.includes(`bin/${asset}`), `${version} ${m.name}: bin/${asset} missing`);
    }
  }
});

test('every image a rendered file names (containerd sandbox, add-ons, smoke test) is a bundle image', () => {
  for (const version of ['v1.20.2', 'v1.27.16', 'v1.34.2']) {
    const spec = haSpec({ kubernetesVersion: version });
    const plan = buildPlan(spec, fakeSecrets(spec));
    const texts = [...plan.cluster, ...plan.machines.flatMap((m) => m.files)].map((f) => f.contents);
    const named = new Set<string>();
    for (const t of texts) {
      for (const m of t.matchAll(/^\s*(?:-\s*)?image:\s*["']?([^\s"']+)/gm)) named.add(m[1]!);
      for (const m of t.matchAll(/sandbox_image\s*=\s*"([^"]+)"/g)) named.add(m[1]!);
    }
    assert.ok(named.size >= 3, `${version}: found ${[...named].join(', ')}`);
    const refs = bundleContents(spec).items.flatMap((i) => (i.kind === 'image' ? [i.ref] : []));
    for (const n of named) assert.ok(refs.includes(n), `${version}: ${n} is rendered but not bundled (bundle has ${refs.join(', ')})`);
  }
});

test('the OS image: kernel, installer initramfs, disk image and os.json where iPXE, PXELINUX and the installer fetch them; nothing of Flatcar', () => {
  const c = bundleContents(singleSpec());
  assert.deepEqual(c.os, { name: 'debian-12' });
  const dests = all(c.items);
  assert.ok(dests.includes(PXELINUX_KERNEL) && dests.includes(PXELINUX_INITRD));
  const os = c.items.filter((i) => i.kind === 'os-image');
  assert.equal(os.length, 1);
  assert.deepEqual(os[0]!.kind === 'os-image' && os[0]!.files, [
    { role: 'kernel', dest: 'os/vmlinuz' },
    { role: 'initrd', dest: 'os/initrd.img' },
    { role: 'disk', dest: 'os/disk.img.zst' },
    { role: 'manifest', dest: 'os/os.json' },
  ]);
  assert.deepEqual(dests.filter((d) => d.startsWith('os/')).sort(), Object.values(OS_ASSETS).sort());
  // every other os/ file came from Flatcar's release server: none is left
  assert.doesNotMatch(JSON.stringify(c), /flatcar/i);
});

test('official upstream locations and checksum sources', () => {
  const c = bundleContents(haSpec());
  const by = (name: string) => c.items.find((i) => i.name === name)!;
  assert.deepEqual(by('kubelet'), {
    kind: 'file', name: 'kubelet', version: 'v1.34.2', dest: 'bin/kubelet',
    url: 'https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet',
    checksum: { algorithm: 'sha256', url: 'https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet.sha256' },
  });
  const etcd = by('etcd');
  assert.ok(etcd.kind === 'archive' && etcd.url === 'https://github.com/etcd-io/etcd/releases/download/v3.6.4/etcd-v3.6.4-linux-amd64.tar.gz');
  assert.ok(etcd.kind === 'archive' && etcd.checksum.url.endsWith('/v3.6.4/SHA256SUMS') && etcd.checksum.entry === 'etcd-v3.6.4-linux-amd64.tar.gz');
  const crictl = by('crictl');
  assert.ok(crictl.kind === 'archive' && crictl.version === 'v1.34.0');
  const flanneld = by('flanneld');
  assert.ok(flanneld.kind === 'image-file' && flanneld.image === 'docker.io/flannel/flannel:v0.26.7' && flanneld.member === 'opt/bin/flanneld');
});

test('cni: bridge: no flannel is downloaded, and every binary a machine fetches is still there', () => {
  const flannel = haSpec();
  const bridge: Spec = { ...flannel, network: { ...flannel.network, cni: 'bridge' } };
  const items = bundleContents(bridge).items;
  assert.deepEqual(items.filter((i) => /flannel/.test(JSON.stringify(i))).map((i) => i.name), []);
  const dests = all(items);
  for (const m of bridge.machines) for (const [, asset] of binariesFor(m, 'bridge')) assert.ok(dests.includes(`bin/${asset}`), `${m.name}: bin/${asset} missing`);
  const names = bundleContents(flannel).items.map((i) => i.name);
  assert.ok(names.includes('flanneld') && names.includes('flannel-cni-plugin'), names.join(', '));
});
