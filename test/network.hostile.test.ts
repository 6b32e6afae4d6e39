// Bad input for every field issue 20 added (links, linkDefaults, proxy, files, units,
// sysctls, kernelArgs), on the rack fixture (test/fixtures/rack/cluster.yaml): `validate`
// and `render` (and `plan` for a clash with a file Slipway renders, which validate finds
// by building the plan too) exit 1 with a FILE:LINE:COL message naming the field (and the
// other entry's FILE:LINE:COL when two entries clash), and leave an existing state
// directory and output directory exactly as they were.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, slipway } from './helpers/cli.ts';
import { snapshot } from './helpers/fs-snapshot.ts';
import { applyEdits, position, runCli } from './helpers/edits.ts';

const FIXTURE = join(ROOT, 'test/fixtures/rack');
const base = readFileSync(join(FIXTURE, 'cluster.yaml'), 'utf8');

interface Case {
  name: string;
  /** [find, replace] on the fixture, in order (each must apply) */
  edits: [string | RegExp, string][];
  path: string;
  message: string | RegExp;
  /** text in the edited file where the problem is reported (default: the first edit's replacement); ▸ marks the point inside it */
  at?: string;
  /** the commands that must refuse it (default validate and render) */
  verbs?: ('validate' | 'render' | 'plan')[];
}

/** clashes with what Slipway renders: validate builds the plan as render and plan do */
const PLANNER: Case['verbs'] = ['validate', 'render', 'plan'];
/** "(spec.files[1]: FILE:LINE:COL)": the other entry of a clash, located */
const other = (path: string) => `\\(${path.replace(/[.[\]]/g, '\\$&')}: \\S+bad\\.yaml:\\d+:\\d+\\)`;

const CASES: Case[] = [
  // links
  { name: 'VLAN id 4095', edits: [['id: 200', 'id: 4095']], path: 'spec.machines[0].links[2].id', message: /4095 is out of range: .*VLAN id, 1\.\.4094/, at: '4095' },
  { name: 'VLAN id 0 in a role default', edits: [['on: eno1, id: 100', 'on: eno1, id: 0']], path: 'spec.linkDefaults.worker[1].id', message: /0 is out of range/, at: '0, mtu' },
  { name: 'a bond member that is another machine\'s MAC', edits: [['"52:54:00:20:31:11"', '"52:54:00:20:30:12"']], path: 'spec.machines[0].links[0].members[1]', message: /52:54:00:20:30:12 is a NIC of machine cp2, not of cp1/ },
  { name: 'a bond member listed twice', edits: [['"52:54:00:20:31:11"', '"52:54:00:20:30:11"']], path: 'spec.machines[0].links[0].members[1]', message: /is already a member of bond bond0/, at: '"52:54:00:20:30:11", ▸"52:54:00:20:30:11"]' },
  { name: 'a bond member that is not a MAC or a name', edits: [['"52:54:00:20:31:11"', '"52:54:00:20:31:1g"']], path: 'spec.machines[0].links[0].members[1]', message: /is not valid: expected a member NIC: its MAC or its kernel name/ },
  { name: 'two links with one address', edits: [['addresses: [10.40.0.11/24]', 'addresses: [10.20.30.21/24]']], path: 'spec.machines[0].links[2].addresses[0]', message: /10\.20\.30\.21 is also the node address of w1: two links with one address/, at: '10.20.30.21/24]' },
  { name: 'one address on two machines\' links', edits: [['addresses: [10.40.0.11/24]', 'addresses: [10.40.0.22/24]']], path: 'spec.machines[4].links[1].addresses[0]', message: /10\.40\.0\.22 is also on cp1's link storage0: two links with one address/, at: '10.40.0.22/24, "fd00' },
  { name: 'MTU below 1280 with IPv6', edits: [['mtu: 9000\n          addresses: [10.40.0.22/24', 'mtu: 1000\n          addresses: [10.40.0.22/24']], path: 'spec.machines[4].links[1].mtu', message: /MTU 1000 is below 1280, the least IPv6 works with/, at: '1000' },
  { name: 'MTU 60', edits: [['mtu: 9000\n          addresses: [10.40.0.22/24', 'mtu: 60\n          addresses: [10.40.0.22/24']], path: 'spec.machines[4].links[1].mtu', message: /60 is out of range/, at: '60\n' },
  { name: 'a VIP on a node link that does not hold its subnet', edits: [['ip: 10.20.30.12/24', 'ip: 10.20.30.12/30']], path: 'spec.machines[1].links[1]', message: /cp2's node link node0 is on 10\.20\.30\.12\/30, which does not hold the vip 10\.20\.30\.10/, at: '{name: node0, kind: vlan, on: bond0, id: 100, node: true}' },
  { name: 'a VLAN on a link the machine lacks', edits: [['on: bond0, id: 200', 'on: bond1, id: 200']], path: 'spec.machines[0].links[2].on', message: /cp1 has no link named bond1/, at: 'bond1' },
  { name: 'a VLAN larger than its parent', edits: [['{name: eno1, mtu: 9000}', '{name: eno1}']], path: 'spec.linkDefaults.worker[1].mtu', message: /MTU 9000 is larger than eno1's 1500/, at: '9000, node: true}' },
  { name: 'lacpRate on an active-backup bond', edits: [['mode: active-backup\n', 'mode: active-backup\n          lacpRate: fast\n']], path: 'spec.machines[0].links[0].lacpRate', message: /lacpRate is LACP's \(mode: 802\.3ad\); bond bond0 is active-backup/, at: 'fast\n          members: ["52:54:00:20:30:11"' },
  { name: 'a bond mode networkd has but Slipway does not offer', edits: [['mode: 802.3ad', 'mode: balance-rr']], path: 'spec.machines[1].links[0].mode', message: /must be one of: active-backup, 802\.3ad, balance-xor/, at: 'balance-rr' },
  { name: 'interface and links both', edits: [['ip: 10.20.30.11/24\n      links:', 'ip: 10.20.30.11/24\n      interface: eth0\n      links:']], path: 'spec.machines[0].interface', message: /both "interface" and "links"/, at: 'eth0\n      links:' },
  { name: 'two links, none the node link', edits: [['{name: lan0, mac: "52:54:00:20:30:22", node: true,', '{name: lan0, mac: "52:54:00:20:30:22",']], path: 'spec.machines[4].links', message: /w2 has 2 links and none has node: true/, at: '- {name: lan0' },
  { name: 'a link name with a newline and a section', edits: [['name: storage0', 'name: "storage0\\n[Network]"']], path: 'spec.machines[0].links[2].name', message: /is not valid: expected the link's name/, at: '"storage0' },
  { name: 'a route to something that is no CIDR', edits: [['to: 10.41.0.0/16', 'to: 10.41.0.0/40']], path: 'spec.machines[4].links[1].routes[0].to', message: /"10\.41\.0\.0\/40" is not an IPv4 CIDR/, at: '10.41.0.0/40' },
  { name: 'an unknown link field', edits: [['id: 200', 'id: 200, vlanId: 3']], path: 'spec.machines[0].links[2].vlanId', message: /unknown field "vlanId"/, at: 'vlanId' },
  // proxy
  { name: 'a proxy URL with a password', edits: [['http: http://10.20.30.5:3128', 'http: http://ops:secret@10.20.30.5:3128']], path: 'spec.proxy.http', message: /no user:password: it would be written in clear/, at: 'http://ops' },
  { name: 'a proxy URL with a newline', edits: [['https: http://10.20.30.5:3128', 'https: "http://10.20.30.5:3128\\nEnvironment=X=1"']], path: 'spec.proxy.https', message: /is not valid: expected HTTPS proxy URL/, at: '"http://10.20.30.5:3128\\n' },
  { name: 'a noProxy entry with a comma', edits: [['[.example.internal]', '[".example.internal,evil"]']], path: 'spec.proxy.noProxy[0]', message: /is not valid: expected a host, domain/, at: '".example.internal,evil"' },
  // files
  { name: 'a relative file path', edits: [['path: /etc/log-shipper.conf', 'path: etc/log-shipper.conf']], path: 'spec.files[1].path', message: /is not valid: expected absolute path on the machine/, at: 'etc/log-shipper.conf' },
  { name: 'a file path through ..', edits: [['path: /etc/log-shipper.conf', 'path: /etc/../etc/shadow']], path: 'spec.files[1].path', message: /is not valid: expected absolute path/, at: '/etc/../etc/shadow' },
  { name: 'a mode written as a YAML number', edits: [['mode: "0640"', 'mode: 0640']], path: 'spec.files[1].mode', message: 'must be string', at: '0640' },
  { name: 'a mode that is not octal', edits: [['mode: "0640"', 'mode: "0980"']], path: 'spec.files[1].mode', message: /is not valid: expected permission bits as a quoted octal string/, at: '"0980"' },
  { name: 'an owner with a newline', edits: [['owner: root:adm', 'owner: "root:adm\\nx"']], path: 'spec.files[1].owner', message: /is not valid: expected USER\[:GROUP\]/, at: '"root:adm' },
  { name: 'both contents and source', edits: [['      contents: |\n        target', '      source: site.crt\n      contents: |\n        target']], path: 'spec.files[1].source', message: /both "contents" and "source": give one/, at: 'site.crt\n      contents' },
  { name: 'neither contents nor source', edits: [['      mode: "0644"\n      source: site.crt\n', '      mode: "0644"\n']], path: 'spec.files[0]', message: /needs "contents" \(inline\) or "source"/, at: 'path: /usr/local' },
  { name: 'a source that does not exist', edits: [['source: site.crt', 'source: missing.crt']], path: 'spec.files[0].source', message: /cannot read .*missing\.crt: ENOENT/, at: 'missing.crt' },
  { name: 'a source outside the cluster file\'s directory', edits: [['source: site.crt', 'source: ../../etc/shadow']], path: 'spec.files[0].source', message: /is not valid: expected a file beside the cluster file/, at: '../../etc/shadow' },
  { name: 'a selector naming no machine', edits: [['machines: [w2]', 'machines: [w9]']], path: 'spec.units[1].machines[0]', message: /no machine is named w9/, at: 'w9' },
  { name: 'one path twice for one machine', edits: [['  units:\n', '    - {path: /etc/log-shipper.conf, contents: "x", machines: [w1]}\n  units:\n']], path: 'spec.files[2]', message: new RegExp(`path /etc/log-shipper\\.conf is also spec\\.files\\[1\\] for w1 ${other('spec.files[1]')}`), at: '{path: /etc/log-shipper.conf, contents' },
  { name: 'a file Slipway renders (/etc/hosts)', edits: [['path: /etc/log-shipper.conf', 'path: /etc/hosts']], path: 'spec.files[1]', message: /\/etc\/hosts on machine w1 is also a file Slipway renders \(its host phase\)/, at: 'path: /etc/hosts', verbs: PLANNER },
  { name: 'a file where Slipway needs a directory (/etc/kubernetes)', edits: [['path: /etc/log-shipper.conf', 'path: /etc/kubernetes']], path: 'spec.files[1]', message: /\/etc\/kubernetes on machine w1 is a file, but \/etc\/kubernetes\/\S+ puts a directory there \(a file Slipway renders\)/, at: 'path: /etc/kubernetes', verbs: PLANNER },
  { name: 'a file where a unit\'s enable link goes', edits: [['path: /etc/log-shipper.conf', 'path: /etc/systemd/system/multi-user.target.wants/log-shipper.service']], path: 'spec.units[0]', message: new RegExp(`multi-user\\.target\\.wants/log-shipper\\.service on machine w1 is also written by spec\\.files\\[1\\]: one path, two entries ${other('spec.files[1]')}`), at: 'name: log-shipper.service', verbs: PLANNER },
  { name: 'a file where the kernel arguments go', edits: [['path: /etc/log-shipper.conf', 'path: /etc/slipway/kernel-args']], path: 'spec.kernelArgs[0]', message: new RegExp(`/etc/slipway/kernel-args on machine w1 is also written by spec\\.files\\[1\\]: one path, two entries ${other('spec.files[1]')}`), at: '{args: [intel_iommu', verbs: PLANNER },
  { name: 'a unit also written by spec.files', edits: [['path: /etc/log-shipper.conf', 'path: /etc/systemd/system/log-shipper.service']], path: 'spec.units[0].name', message: new RegExp(`log-shipper\\.service is also written by spec\\.files\\[1\\] \\(/etc/systemd/system/log-shipper\\.service\\) ${other('spec.files[1]')}`), at: 'log-shipper.service\n      contents' },
  // units
  { name: 'an enabled unit without [Install]', edits: [['        [Install]\n        WantedBy=multi-user.target\n    - name: site-cleanup.timer', '    - name: site-cleanup.timer']], path: 'spec.units[0].enabled', message: /log-shipper\.service is enabled but its \[Install\] section names no WantedBy=/, at: 'name: log-shipper.service' },
  { name: 'a unit Slipway renders (kubelet.service)', edits: [['name: log-shipper.service', 'name: kubelet.service']], path: 'spec.units[0]', message: /\/etc\/systemd\/system\/kubelet\.service on machine cp1 is also a file Slipway renders \(its node phase\)/, at: 'name: kubelet.service', verbs: PLANNER },
  { name: 'a unit name with a space', edits: [['name: log-shipper.service', 'name: "log shipper.service"']], path: 'spec.units[0].name', message: /is not valid: expected unit name/, at: '"log shipper.service"' },
  { name: 'a unit of a kind Slipway does not install', edits: [['name: log-shipper.service', 'name: log-shipper.device']], path: 'spec.units[0].name', message: /is not valid: expected unit name/, at: 'log-shipper.device' },
  // sysctls
  { name: 'a sysctl that undoes one Kubernetes needs', edits: [['{name: net.core.somaxconn, value: "4096"}', '{name: net.ipv4.ip_forward, value: "0"}']], path: 'spec.sysctls[0]', message: /net\.ipv4\.ip_forward = 0 on machine cp1, but Slipway sets net\.ipv4\.ip_forward = 1/, at: '{name: net.ipv4.ip_forward', verbs: PLANNER },
  { name: 'a sysctl value with a newline', edits: [['value: "4096"', 'value: "4096\\nkernel.panic = 1"']], path: 'spec.sysctls[0].value', message: /is not valid: expected its value as sysctl\.d takes it/, at: '"4096\\n' },
  { name: 'a sysctl name that is not one', edits: [['name: net.core.somaxconn', 'name: "net core"']], path: 'spec.sysctls[0].name', message: /is not valid: expected a sysctl key/, at: '"net core"' },
  // kernel arguments
  { name: 'a kernel argument with a space', edits: [['intel_iommu=on,', '"quiet splash",']], path: 'spec.kernelArgs[0].args[0]', message: /"quiet splash" is not valid: expected one kernel argument/ },
  { name: 'a kernel argument with quotes', edits: [['intel_iommu=on,', `'acpi_osi="!Windows"',`]], path: 'spec.kernelArgs[0].args[0]', message: /is not valid: expected one kernel argument.*no spaces, quotes or newlines/ },
  { name: 'a kernel argument with a newline', edits: [['intel_iommu=on,', '"intel_iommu=on\\nAPPEND x",']], path: 'spec.kernelArgs[0].args[0]', message: /is not valid: expected one kernel argument/ },
  { name: 'a kernel argument that ends the kernel\'s own ("--")', edits: [['intel_iommu=on,', '"--",']], path: 'spec.kernelArgs[0].args[0]', message: /"--" is not valid/ },
  { name: 'root= in the kernel arguments', edits: [['hugepages=16]', 'root=/dev/sda1]']], path: 'spec.kernelArgs[0].args[1]', message: /root= is Slipway's: the installed system boots with "root=LABEL=ROOT rw console=tty0 console=ttyS0,115200n8"/ },
  { name: 'the installer\'s own flag in the kernel arguments', edits: [['hugepages=16]', 'slipway.install=http://10.20.30.9/x]']], path: 'spec.kernelArgs[0].args[1]', message: /slipway\.install= is Slipway's: .*slipway\.\* drive Ignition and the installer/ },
  { name: 'ro in the kernel arguments', edits: [['hugepages=16]', 'ro]']], path: 'spec.kernelArgs[0].args[1]', message: /ro is Slipway's/ },
  { name: 'kernel arguments longer than the loader\'s line takes', edits: [['["console=ttyS1,115200n8"]', `[${Array.from({ length: 5 }, (_, i) => `p${i}=${'x'.repeat(200)}`).join(', ')}]`]], path: 'spec.kernelArgs[1].args', message: /machine w1's kernel arguments are 1047 bytes with this entry; at most 1024/, at: '[p0=' },
  { name: 'kernel arguments for a machine that is not there', edits: [['roles: [worker]}\n  ssh', 'machines: [w9]}\n  ssh']], path: 'spec.kernelArgs[1].machines[0]', message: /no machine is named w9/, at: 'w9' },
];

test('bad input for every new field: refused with FILE:LINE:COL, nothing written', { concurrency: 3 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-net-hostile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, base);
  copyFileSync(join(FIXTURE, 'site.crt'), join(dir, 'site.crt'));
  const r = slipway(['render', '-f', good, '-o', join(dir, 'out'), '--state', join(dir, 'state')]);
  assert.equal(r.code, 0, r.stderr);

  await Promise.all(CASES.map((c) =>
    t.test(c.name, async () => {
      const cdir = mkdtempSync(join(dir, 'case-'));
      const state = join(cdir, 'state');
      const out = join(cdir, 'out');
      cpSync(join(dir, 'state'), state, { recursive: true, preserveTimestamps: true });
      cpSync(join(dir, 'out'), out, { recursive: true, preserveTimestamps: true });
      copyFileSync(join(FIXTURE, 'site.crt'), join(cdir, 'site.crt'));
      const [stateBefore, outBefore] = await Promise.all([snapshot(state), snapshot(out)]);
      const text = applyEdits(base, c);
      const file = join(cdir, 'bad.yaml');
      writeFileSync(file, text);
      const where = `${file}:${position(text, c.at ?? c.edits[0]![1])}: ${c.path}: `;
      for (const verb of c.verbs ?? ['validate', 'render']) {
        const res = await runCli(verb === 'validate' ? [verb, '-f', file] : [verb, '-f', file, '-o', out, '--state', state]);
        assert.equal(res.code, 1, `${verb} exit code; stderr:\n${res.stderr}`);
        const line = res.stderr.split('\n').find((l) => l.startsWith(where));
        assert.ok(line, `${verb}: no problem at ${where} in:\n${res.stderr}`);
        const message = line.slice(where.length);
        if (typeof c.message === 'string') assert.ok(message.includes(c.message), `${verb}: "${message}" lacks "${c.message}"`);
        else assert.match(message, c.message, verb);
      }
      const [stateAfter, outAfter] = await Promise.all([snapshot(state), snapshot(out)]);
      assert.deepEqual(stateAfter, stateBefore, 'the state directory is unchanged');
      assert.deepEqual(outAfter, outBefore, 'the output directory is unchanged');
    })));
});
