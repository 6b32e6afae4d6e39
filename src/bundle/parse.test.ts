// The small parsers bundle create relies on: upstream checksum files in each published
// shape, --mirror rules, image references, WWW-Authenticate challenges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pickDigest } from './checksums.ts';
import { parseMirrors } from './mirror.ts';
import { parseRef, refString } from './oci/ref.ts';
import { parseChallenges } from './oci/auth.ts';
import { parsePlatform, platformMatches } from './oci/types.ts';

const h64 = (c: string) => c.repeat(64);
const h128 = (c: string) => c.repeat(128);

test('checksum files: a bare digest, sha256sum lines, and Flatcar DIGESTS sections', () => {
  assert.equal(pickDigest(h64('a'), { algorithm: 'sha256', url: 'u' }), h64('a'));
  assert.equal(pickDigest(`${h64('A')}\n`, { algorithm: 'sha256', url: 'u' }), h64('a'));
  const sums = `${h64('1')}  etcd-v3.6.4-darwin-amd64.zip\n${h64('2')}  etcd-v3.6.4-linux-amd64.tar.gz\n${h64('3')} *runc.amd64\n`;
  assert.equal(pickDigest(sums, { algorithm: 'sha256', url: 'u', entry: 'etcd-v3.6.4-linux-amd64.tar.gz' }), h64('2'));
  assert.equal(pickDigest(sums, { algorithm: 'sha256', url: 'u', entry: 'runc.amd64' }), h64('3'));
  assert.throws(() => pickDigest(sums, { algorithm: 'sha256', url: 'http://x/SUMS', entry: 'nope.tgz' }), /http:\/\/x\/SUMS: no sha256 digest for nope\.tgz/);
  assert.throws(() => pickDigest(sums, { algorithm: 'sha256', url: 'u' }), /more than one/);
  // BLAKE2b-512 digests are as long as SHA-512's: the section decides
  const digests = `# MD5 HASH\n${'c'.repeat(32)}  f.vmlinuz\n# SHA1 HASH\n${'d'.repeat(40)}  f.vmlinuz\n# SHA512 HASH\n${h128('e')}  f.vmlinuz\n# BLAKE2B HASH\n${h128('f')}  f.vmlinuz\n`;
  assert.equal(pickDigest(digests, { algorithm: 'sha512', url: 'u', entry: 'f.vmlinuz' }), h128('e'));
  assert.throws(() => pickDigest(`# BLAKE2B HASH\n${h128('f')}  f.vmlinuz\n`, { algorithm: 'sha512', url: 'u', entry: 'f.vmlinuz' }), /no sha512 digest/);
});

test('mirrors: URL prefixes (longest wins), registry hosts, and one catch-all', () => {
  const m = parseMirrors(['https://github.com=http://gh.local/gh', 'https://github.com/etcd-io=http://etcd.local', 'docker.io=http://hub.local:5000', 'http://files.local/base/']);
  assert.equal(m.file('https://github.com/etcd-io/etcd/releases/x.tgz'), 'http://etcd.local/etcd/releases/x.tgz');
  assert.equal(m.file('https://github.com/containerd/c.tgz'), 'http://gh.local/gh/containerd/c.tgz');
  assert.equal(m.file('https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet'), 'http://files.local/base/dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet');
  assert.deepEqual(m.registry('docker.io'), { base: 'http://hub.local:5000' });
  assert.deepEqual(m.registry('registry.k8s.io'), { base: 'http://files.local/base', ns: 'registry.k8s.io' });
  const none = parseMirrors([]);
  assert.equal(none.file('https://dl.k8s.io/x'), 'https://dl.k8s.io/x');
  assert.deepEqual(none.registry('docker.io'), { base: 'https://registry-1.docker.io' });
  assert.deepEqual(none.registry('quay.io'), { base: 'https://quay.io' });
  assert.throws(() => parseMirrors(['http://a/', 'http://b/']), /only one mirror without/);
  assert.throws(() => parseMirrors(['ftp://a/']), /only http and https/);
  assert.throws(() => parseMirrors(['not a host=http://x']), /neither a URL nor a registry/);
});

test('image references normalize as containerd reads them', () => {
  assert.deepEqual(parseRef('nginx'), { registry: 'docker.io', repository: 'library/nginx', tag: 'latest', digest: undefined });
  assert.deepEqual(parseRef('registry.k8s.io/coredns/coredns:v1.12.1'), { registry: 'registry.k8s.io', repository: 'coredns/coredns', tag: 'v1.12.1', digest: undefined });
  assert.deepEqual(parseRef('localhost:5000/a/b@sha256:' + h64('0')), { registry: 'localhost:5000', repository: 'a/b', tag: undefined, digest: 'sha256:' + h64('0') });
  assert.equal(refString(parseRef('index.docker.io/flannel/flannel:v0.26.7')), 'docker.io/flannel/flannel:v0.26.7');
  assert.throws(() => parseRef('Registry.k8s.io/Pause:3.10'), /bad repository name component "Pause"/);
  assert.throws(() => parseRef('x@sha256:123'), /bad digest/);
});

test('WWW-Authenticate: quoted values with commas, several challenges', () => {
  const c = parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push"');
  assert.deepEqual(c, [{ scheme: 'Bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull,push' } }]);
  const two = parseChallenges('Basic realm="x", Bearer realm=http://t/token, service=s');
  assert.equal(two.length, 2);
  assert.deepEqual(two[1], { scheme: 'Bearer', params: { realm: 'http://t/token', service: 's' } });
});

test('platforms: a wanted variant must match, an unwanted one is ignored', () => {
  assert.ok(platformMatches({ os: 'linux', architecture: 'arm64', variant: 'v8' }, parsePlatform('linux/arm64')));
  assert.ok(!platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, parsePlatform('linux/arm/v7')));
  assert.ok(!platformMatches(undefined, parsePlatform('linux/amd64')));
  assert.throws(() => parsePlatform('amd64'), /os\/arch/);
});
