// Hostile and careless cluster files (issue 14): injections into every string that reaches
// a rendered file, out-of-range numbers, addresses no host can use, YAML bombs and odd
// encodings. Each must be refused by `validate` and `render` alike (exit 1) with a
// FILE:LINE:COL message that says what is expected, and leave an existing state directory
// and output directory exactly as they were: a refused file changes nothing. (`plan` reads
// the file through the same loader; cli.bad-input.test.ts runs it on its cases.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXAMPLE_HA, slipway } from './helpers/cli.ts';
import { snapshot } from './helpers/fs-snapshot.ts';
import { applyEdits, position, runCli } from './helpers/edits.ts';

const base = readFileSync(EXAMPLE_HA, 'utf8');

interface Case {
  name: string;
  /** [find, replace] applied to examples/lab.yaml, in order (each must apply) */
  edits: [string | RegExp, string][];
  /** the problem's path and (part of) its message, as `validate` prints them */
  path: string;
  message: string | RegExp;
  /** text in the edited file where the problem is reported (default: the first edit's replacement) */
  at?: string;
  /** the file's bytes, when they are not the edited text (encodings) */
  bytes?: (text: string) => Buffer;
}

const W1 = '    - name: w1\n      mac: "52:54:00:20:30:21"\n      ip: 10.20.30.21/24\n      roles: [worker]\n';
/** w1 with extra lines (its labels, interface, disk...) */
const w1 = (extra: string): [string, string] => [W1, W1 + extra];
const label = (yaml: string): [string, string] => w1(`      labels: {${yaml}}\n`);
const cp1 = (field: string, value: string): [string | RegExp, string][] => [[/( {6}interface: eth0 .*\n)/, `      ${field}: ${value}\n`]];
/** a top-level spec field (YAML), added before ssh: */
const specField = (yaml: string): [string, string][] => [['  ssh:\n', `  ${yaml}\n  ssh:\n`]];

const LABEL_VALUE = /is not valid: expected a Kubernetes label value/;
const LABEL_KEY = /key .* is not valid: expected a Kubernetes label key/;
const IFACE = /is not valid: expected NIC name for the static network config \(default: the NIC with this MAC\): a Linux interface name/;
const DHCP_IFACE = /is not valid: expected interface the DHCP configs name \(default eth0\): a Linux interface name/;
const DISK = /is not valid: expected install disk: a device path under \/dev/;
const SSH = /is not valid: expected one OpenSSH public key on one line/;

/** w1's label `rack` set to `value` (YAML), refused at `at`. */
const labelValue = (name: string, value: string, at: string, message: Case['message'] = LABEL_VALUE): Case => ({ name, edits: [label(`rack: ${value}`)], path: 'spec.machines[3].labels.rack', message, at });
/** w1's `disk` set to `value` (YAML), refused at `at`. */
const disk = (name: string, value: string, at: string): Case => ({ name, edits: [w1(`      disk: ${value}\n`)], path: 'spec.machines[3].disk', message: DISK, at });
/** cp1's `interface` set to `value` (YAML), refused at `at`. */
const iface = (name: string, value: string, at: string): Case => ({ name, edits: cp1('interface', value), path: 'spec.machines[0].interface', message: IFACE, at });

const CASES: Case[] = [
  // Injections: node labels reach kubelet.service's --node-labels.
  labelValue('label value with a newline and a unit line', '"r1\\nExecStartPre=/bin/touch /tmp/pwned"', '"r1\\n', /"r1\\nExecStartPre=\/bin\/touch \/tmp\/pwned" is not valid: expected a Kubernetes label value/),
  labelValue('label value with a carriage return', '"r1\\r[Service]"', '"r1\\r'),
  labelValue('label value with a comma (splits --node-labels)', '"r1,evil=1"', '"r1,evil'),
  labelValue('label value with a space', '"r 1"', '"r 1"'),
  labelValue('label value with $ (systemd expands it)', '"$HOME"', '"$HOME"'),
  labelValue('label value with %', '"r%n"', '"r%n"'),
  labelValue('label value with =', '"a=b"', '"a=b"'),
  labelValue('label value of 64 characters', 'r'.repeat(64), 'rrrr'),
  labelValue('label value starting with a dash', '"-r1"', '"-r1"'),
  labelValue('label value that is a number', '1', 'rack: ▸1}', 'must be string'),
  labelValue('label value null', 'null', 'null', 'must be string'),
  { name: 'label key with spaces', edits: [label('"my rack": r1')], path: 'spec.machines[3].labels["my rack"]', message: LABEL_KEY, at: '"my rack"' },
  { name: 'label key with a newline', edits: [label('"rack\\nx": r1')], path: 'spec.machines[3].labels["rack\\nx"]', message: LABEL_KEY, at: '"rack\\nx"' },
  { name: 'label key with two slashes', edits: [label('"a/b/c": r1')], path: 'spec.machines[3].labels.a/b/c', message: LABEL_KEY, at: '"a/b/c"' },
  { name: 'label key with an uppercase prefix', edits: [label('"Example.com/rack": r1')], path: 'spec.machines[3].labels.Example.com/rack', message: LABEL_KEY, at: '"Example.com' },
  { name: 'label key with a 64-character name', edits: [label(`${'k'.repeat(64)}: r1`)], path: `spec.machines[3].labels.${'k'.repeat(64)}`, message: LABEL_KEY, at: 'kkkk' },
  { name: 'label key the kubelet refuses (kubernetes.io)', edits: [label('kubernetes.io/rack: r1')], path: 'spec.machines[3].labels.kubernetes.io/rack', message: /the kubelet refuses node labels in the kubernetes\.io and k8s\.io namespaces.*example\.com\/rack/, at: 'r1}' },
  { name: 'label key the kubelet refuses (node-role)', edits: [label('node-role.kubernetes.io/worker: ""')], path: 'spec.machines[3].labels.node-role.kubernetes.io/worker', message: /the kubelet refuses node labels/, at: '""' },
  // machines[].interface reaches networkd's [Match] Name= and keepalived's interface.
  iface('interface with a newline and a section', '"eth0\\n[Network]\\nDNS=6.6.6.6"', '"eth0\\n'),
  iface('interface with a space', '"eth 0"', '"eth 0"'),
  iface('interface of 16 characters', 'enp0s31f6abcdefg', 'enp0s31f6abcdefg'),
  iface('interface with a slash', '"eth0/1"', '"eth0/1"'),
  iface('interface ".."', '".."', '".."'),
  iface('interface with a zero-width space', '"eth0\\u200b"', '"eth0\\u200b"'),
  iface('interface empty', '""', '""'),
  // dhcp.interface reaches dnsmasq.conf and kea-dhcp4.json.
  { name: 'dhcp.interface with a dnsmasq line', edits: [['      subnet: 10.20.30.0/24\n', '      subnet: 10.20.30.0/24\n      interface: "eth0\\ndhcp-boot=evil"\n']], path: 'spec.provisioner.dhcp.interface', message: DHCP_IFACE, at: '"eth0\\ndhcp' },
  { name: 'dhcp.interface with a comma', edits: [['      subnet: 10.20.30.0/24\n', '      subnet: 10.20.30.0/24\n      interface: "eth0,eth1"\n']], path: 'spec.provisioner.dhcp.interface', message: DHCP_IFACE, at: '"eth0,eth1"' },
  { name: 'dhcp.interface with a space', edits: [['      subnet: 10.20.30.0/24\n', '      subnet: 10.20.30.0/24\n      interface: "eth0 x"\n']], path: 'spec.provisioner.dhcp.interface', message: DHCP_IFACE, at: '"eth0 x"' },
  // ssh keys reach authorized_keys, one per line.
  { name: 'ssh key with a newline (two authorized_keys lines)', edits: [['ops@example"]', 'ops@example\\nssh-ed25519 AAAAevil attacker"]']], path: 'spec.ssh.authorizedKeys[0]', message: SSH, at: '"ssh-ed25519' },
  { name: 'ssh key with a carriage return', edits: [['ops@example"]', 'ops@example\\r"]']], path: 'spec.ssh.authorizedKeys[0]', message: SSH, at: '"ssh-ed25519' },
  { name: 'ssh key with a NUL', edits: [['ops@example"]', 'ops@\\0example"]']], path: 'spec.ssh.authorizedKeys[0]', message: SSH, at: '"ssh-ed25519' },
  { name: 'ssh key empty', edits: [[/authorizedKeys: \[.*\]/, 'authorizedKeys: [""]']], path: 'spec.ssh.authorizedKeys[0]', message: SSH, at: '""' },
  // DNS names reach certificates, kubeconfigs, /etc/hosts and the kubelet config.
  { name: 'endpoint with a newline (/etc/hosts line)', edits: [['endpoint: k8s-api.lab.local', 'endpoint: "k8s-api.lab.local\\n6.6.6.6 evil"']], path: 'spec.controlPlane.endpoint', message: /"k8s-api\.lab\.local\\n6\.6\.6\.6 evil" is not a DNS name/, at: '"k8s-api' },
  { name: 'endpoint with a space', edits: [['endpoint: k8s-api.lab.local', 'endpoint: "k8s api"']], path: 'spec.controlPlane.endpoint', message: /is not a DNS name/, at: '"k8s api"' },
  // ntp.servers reach timesyncd.conf's NTP= (a space-separated list on one line); os picks what is installed.
  { name: 'ntp server with a newline (a second timesyncd line)', edits: specField('ntp: {servers: ["10.20.30.2\\nFallbackNTP=evil.example"]}'), path: 'spec.ntp.servers[0]', message: /is not valid: expected an NTP server: an IPv4 address or a DNS name/, at: '"10.20.30.2' },
  { name: 'ntp server with a space (two servers in one)', edits: specField('ntp: {servers: ["a.example b.example"]}'), path: 'spec.ntp.servers[0]', message: /expected an NTP server/, at: '"a.example b' },
  { name: 'ntp servers empty', edits: specField('ntp: {servers: []}'), path: 'spec.ntp.servers', message: /must NOT have fewer than 1 items/, at: '[]' },
  { name: 'an OS that cannot be installed', edits: specField('os: flatcar'), path: 'spec.os', message: /debian-12/, at: 'flatcar' },
  { name: 'endpoint with an underscore', edits: [['endpoint: k8s-api.lab.local', 'endpoint: k8s_api.lab']], path: 'spec.controlPlane.endpoint', message: /is not a DNS name/, at: 'k8s_api' },
  { name: 'dnsDomain with a newline', edits: [['dnsDomain: cluster.local', 'dnsDomain: "cluster.local\\nx"']], path: 'spec.network.dnsDomain', message: /is not a DNS name/, at: '"cluster.local\\nx"' },
  { name: 'dnsDomain with a semicolon', edits: [['dnsDomain: cluster.local', 'dnsDomain: "cluster.local;"']], path: 'spec.network.dnsDomain', message: /is not a DNS name/, at: '"cluster.local;"' },
  // Names reach hostnames, unit names, certificate subjects and file paths.
  { name: 'cluster name with a newline', edits: [['name: lab ', 'name: "lab\\nx" ']], path: 'metadata.name', message: /"lab\\nx" is not valid: expected DNS-1123 label/, at: '"lab\\nx"' },
  { name: 'cluster name in capitals', edits: [['name: lab ', 'name: Lab ']], path: 'metadata.name', message: /"Lab" is not valid: expected DNS-1123 label/, at: 'Lab ' },
  { name: 'machine name with a path', edits: [['name: cp1', 'name: "../cp1"']], path: 'spec.machines[0].name', message: /"\.\.\/cp1" is not valid: expected DNS-1123 label/, at: '"../cp1"' },
  { name: 'machine name with a dot', edits: [['name: cp1', 'name: cp1.lab']], path: 'spec.machines[0].name', message: /expected DNS-1123 label/, at: 'cp1.lab' },
  { name: 'machine name of 64 characters', edits: [['name: cp1', `name: c${'p'.repeat(63)}`]], path: 'spec.machines[0].name', message: /expected DNS-1123 label/, at: 'cppp' },
  { name: 'machine name with a Cyrillic letter', edits: [['name: cp1', 'name: cр1']], path: 'spec.machines[0].name', message: /expected DNS-1123 label/, at: 'cр1' },
  { name: 'MAC with a newline', edits: [['"52:54:00:20:30:11"', '"52:54:00:20:30:11\\nx"']], path: 'spec.machines[0].mac', message: /"52:54:00:20:30:11\\nx" is not a MAC address/, at: '"52:54:00:20:30:11\\nx"' },
  { name: 'Kubernetes version with a newline', edits: [['v1.34.2 ', '"v1.34.2\\nx" ']], path: 'spec.kubernetesVersion', message: /is not valid: expected one of the minor lines/, at: '"v1.34.2\\nx"' },
  // disk: a path under /dev, nothing else.
  disk('disk outside /dev by ..', '../../../etc/shadow', '../../../etc/shadow'),
  disk('disk /dev/../etc/shadow', '/dev/../etc/shadow', '/dev/../etc'),
  disk('disk relative', 'sda', 'sda'),
  disk('disk with a space', '"/dev/sd a"', '"/dev/sd a"'),
  disk('disk with a newline', '"/dev/sda\\nx"', '"/dev/sda\\nx"'),
  disk('disk /dev itself', '/dev', '/dev\n'),
  // Numbers: certificate dates inside X.509's range, a leaf never past its CA; ports; VRRP ids.
  { name: 'caValidityDays past X.509 dates', edits: [['keyAlgorithm: ecdsa-p256 ', 'caValidityDays: 99999999\n    keyAlgorithm: ecdsa-p256 ']], path: 'spec.pki.caValidityDays', message: /99999999 is out of range: must be <= 36500 \(days the CAs are valid, 1\.\.36500\)/, at: '99999999' },
  { name: 'certValidityDays past X.509 dates', edits: [['keyAlgorithm: ecdsa-p256 ', 'certValidityDays: 99999999\n    keyAlgorithm: ecdsa-p256 ']], path: 'spec.pki.certValidityDays', message: /out of range: must be <= 36500/, at: '99999999' },
  { name: 'caValidityDays zero', edits: [['keyAlgorithm: ecdsa-p256 ', 'caValidityDays: 0\n    keyAlgorithm: ecdsa-p256 ']], path: 'spec.pki.caValidityDays', message: /0 is out of range: must be >= 1/, at: 'caValidityDays: ▸0' },
  { name: 'leaf outliving its CA', edits: [['keyAlgorithm: ecdsa-p256 ', 'caValidityDays: 100\n    certValidityDays: 365\n    keyAlgorithm: ecdsa-p256 ']], path: 'spec.pki.certValidityDays', message: 'certValidityDays (365) is longer than caValidityDays (100): a certificate cannot outlive the CA that signs it', at: 'certValidityDays: ▸365' },
  { name: 'default leaf outliving a short CA', edits: [['keyAlgorithm: ecdsa-p256 ', 'caValidityDays: 30\n    keyAlgorithm: ecdsa-p256 ']], path: 'spec.pki.caValidityDays', message: 'certValidityDays (365) is longer than caValidityDays (30)', at: 'caValidityDays: ▸30' },
  { name: 'httpPort out of range', edits: [['httpPort: 8080', 'httpPort: 70000']], path: 'spec.provisioner.httpPort', message: /70000 is out of range: must be <= 65535/, at: '70000' },
  { name: 'vrid out of range', edits: [['    port: 6443 ', '    vrid: 256\n    port: 6443 ']], path: 'spec.controlPlane.vrid', message: /256 is out of range: must be <= 255/, at: '256' },
  // Addresses no host can use.
  { name: 'machine IP is the network address', edits: [['10.20.30.21/24', '10.20.30.0/24']], path: 'spec.machines[3].ip', message: 'machine address 10.20.30.0 is the network address of the DHCP subnet 10.20.30.0/24, not a host address', at: '10.20.30.0/24\n      roles: [worker]' },
  { name: 'machine IP is the broadcast address', edits: [['10.20.30.21/24', '10.20.30.255/24']], path: 'spec.machines[3].ip', message: 'machine address 10.20.30.255 is the broadcast address of the DHCP subnet 10.20.30.0/24', at: '10.20.30.255' },
  { name: 'machine IP is the router', edits: [['10.20.30.21/24', '10.20.30.1/24']], path: 'spec.machines[3].ip', message: '10.20.30.1 is the router (spec.provisioner.dhcp.router)', at: '10.20.30.1/24' },
  { name: 'machine IP with a leading zero', edits: [['10.20.30.21/24', '10.20.30.021/24']], path: 'spec.machines[3].ip', message: '"10.20.30.021/24" is not an IPv4 address', at: '10.20.30.021' },
  { name: 'machine IP with prefix /33', edits: [['10.20.30.21/24', '10.20.30.21/33']], path: 'spec.machines[3].ip', message: '"10.20.30.21/33" is not an IPv4 address', at: '10.20.30.21/33' },
  { name: 'machine IP with a newline', edits: [['10.20.30.21/24', '"10.20.30.21/24\\nx"']], path: 'spec.machines[3].ip', message: /is not valid: expected static address after install/, at: '"10.20.30.21/24\\nx"' },
  { name: 'VIP is the router', edits: [['vip: 10.20.30.10 ', 'vip: 10.20.30.1 ']], path: 'spec.controlPlane.vip', message: 'vip 10.20.30.1 is also the router (spec.provisioner.dhcp.router)', at: '10.20.30.1 ' },
  { name: 'VIP is the broadcast address', edits: [['vip: 10.20.30.10 ', 'vip: 10.20.30.255 ']], path: 'spec.controlPlane.vip', message: 'vip 10.20.30.255 is the broadcast address', at: '10.20.30.255' },
  { name: 'VIP with a newline', edits: [['vip: 10.20.30.10 ', 'vip: "10.20.30.10\\nx" ']], path: 'spec.controlPlane.vip', message: /is not valid: expected IPv4 address/, at: '"10.20.30.10\\nx"' },
  { name: 'provisioner address is the network address', edits: [['address: 10.20.30.2', 'address: 10.20.30.0']], path: 'spec.provisioner.address', message: 'provisioner address 10.20.30.0 is the network address', at: '10.20.30.0\n' },
  { name: 'router is the broadcast address', edits: [['router: 10.20.30.1', 'router: 10.20.30.255']], path: 'spec.provisioner.dhcp.router', message: 'router 10.20.30.255 is the broadcast address', at: '10.20.30.255' },
  { name: 'DNS server that is not an address', edits: [['dns: [10.20.30.1]', 'dns: ["10.20.30.1; evil"]']], path: 'spec.provisioner.dhcp.dns[0]', message: /is not valid: expected IPv4 address/, at: '"10.20.30.1; evil"' },
  { name: 'pool starting at the network address', edits: [['      dns: [10.20.30.1]\n', '      dns: [10.20.30.1]\n      pool: {start: 10.20.30.0, end: 10.20.30.9}\n']], path: 'spec.provisioner.dhcp.pool.start', message: 'pool start 10.20.30.0 is the network address', at: '10.20.30.0,' },
  { name: 'pool ending at the broadcast address', edits: [['      dns: [10.20.30.1]\n', '      dns: [10.20.30.1]\n      pool: {start: 10.20.30.200, end: 10.20.30.255}\n']], path: 'spec.provisioner.dhcp.pool.end', message: 'pool end 10.20.30.255 is the broadcast address', at: '10.20.30.255}' },
  { name: 'pool holding the provisioner address', edits: [['      dns: [10.20.30.1]\n', '      dns: [10.20.30.1]\n      pool: {start: 10.20.30.2, end: 10.20.30.9}\n']], path: 'spec.provisioner.dhcp.pool', message: 'the pool 10.20.30.2-10.20.30.9 holds the provisioner address 10.20.30.2', at: '{start' },
  { name: 'pool holding the router', edits: [['      dns: [10.20.30.1]\n', '      dns: [10.20.30.1]\n      pool: {start: 10.20.30.1, end: 10.20.30.1}\n']], path: 'spec.provisioner.dhcp.pool', message: 'holds the router 10.20.30.1', at: '{start' },
  // YAML itself.
  {
    name: 'YAML alias bomb',
    edits: [[/^/, 'x-a: &a [x, x, x, x, x, x, x, x, x]\nx-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nx-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nx-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nx-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n']],
    path: '(file)',
    message: /YAML: aliases expand to too much data \(more than 100 alias uses: an alias bomb\?\)/,
    at: '*a',
  },
  { name: 'YAML duplicate key', edits: [['    port: 6443 ', '    port: 6443\n    port: 6444 ']], path: '(file)', message: /YAML: Map keys must be unique/, at: 'port: 6444' },
  { name: 'YAML tab indentation', edits: [['    port: 6443 ', '\tport: 6443 ']], path: '(file)', message: /YAML: /, at: '\tport' },
  // Encodings: bytes that are not UTF-8 arrive as U+FFFD, which no name accepts.
  {
    name: 'label value with invalid UTF-8',
    edits: [label('rack: "r1XX"')],
    bytes: (t) => Buffer.concat([Buffer.from(t.slice(0, t.indexOf('XX'))), Buffer.from([0xc3, 0x28]), Buffer.from(t.slice(t.indexOf('XX') + 2))]),
    path: 'spec.machines[3].labels.rack',
    message: LABEL_VALUE,
    at: '"r1XX"',
  },
  labelValue('label value with a right-to-left override', '"r1\\u202e"', '"r1\\u202e"'),
];

test('at least 60 hostile cluster files', () => assert.ok(CASES.length >= 60, `${CASES.length} cases`));

test('hostile cluster files: refused with FILE:LINE:COL, nothing written', { concurrency: 3 }, async (t) => {
  // One real render first, so every case meets an existing state and output directory.
  const dir = mkdtempSync(join(tmpdir(), 'slipway-hostile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, base);
  const r = slipway(['render', '-f', good, '-o', join(dir, 'out'), '--state', join(dir, 'state')]);
  assert.equal(r.code, 0, r.stderr);

  const cases = CASES.map((c) =>
    t.test(c.name, async () => {
      const cdir = mkdtempSync(join(dir, 'case-'));
      const state = join(cdir, 'state');
      const out = join(cdir, 'out');
      cpSync(join(dir, 'state'), state, { recursive: true, preserveTimestamps: true });
      cpSync(join(dir, 'out'), out, { recursive: true, preserveTimestamps: true });
      const [stateBefore, outBefore] = await Promise.all([snapshot(state), snapshot(out)]);
      const text = applyEdits(base, c);
      const file = join(cdir, 'bad.yaml');
      writeFileSync(file, c.bytes ? c.bytes(text) : text);
      const where = `${file}:${position(text, c.at ?? c.edits[0]![1])}: ${c.path}: `;
      for (const verb of ['validate', 'render']) {
        const res = await runCli(verb === 'validate' ? [verb, '-f', file] : [verb, '-f', file, '-o', out, '--state', state]);
        assert.equal(res.code, 1, `${verb} exit code; stderr:\n${res.stderr}`);
        const line = res.stderr.split('\n').find((l) => l.startsWith(where));
        assert.ok(line, `${verb}: no problem at ${where} in:\n${res.stderr}`);
        const message = line.slice(where.length);
        if (typeof c.message === 'string') assert.ok(message.includes(c.message), `${verb}: "${message}" lacks "${c.message}"`);
        else assert.match(message, c.message, verb);
        assert.doesNotMatch(res.stderr, /\n\s+at |TypeError|RangeError|ReferenceError/, `${verb}: a stack trace instead of a message`);
      }
      assert.deepEqual(await snapshot(state), stateBefore, 'the state directory changed');
      assert.deepEqual(await snapshot(out), outBefore, 'the output directory changed');
    }),
  );
  await Promise.all(cases);
});
