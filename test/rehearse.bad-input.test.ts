// `slipway rehearse` refuses what it cannot do with a clear message, a non-zero exit and
// nothing left behind: not root, systemd-nspawn missing (naming the Debian package),
// binaries of another version than the file's, flannel with no flannel binary, an
// invalid file, a bad flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ROOT } from './helpers/cli.ts';
import { leftovers } from './helpers/rehearse.ts';

const K8S_BIN = `${process.env.SLIPWAY_CACHE ?? '/var/cache/slipway'}/kubernetes/v1.20.2/bin`;
const EXAMPLE = readFileSync(join(ROOT, 'examples/rehearsal.yaml'), 'utf8');

function rehearse(args: string[], opts: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}) {
  const argv = [...(opts.prefix ?? []), process.execPath, BIN, 'rehearse', ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 120_000, env: opts.env ?? process.env });
  return { code: r.status, out: r.stdout + r.stderr };
}

function withFile(text: string, fn: (file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-rehearse-bad-'));
  try {
    chmodSync(dir, 0o755); // readable by the unprivileged user of the not-root case
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, text, { mode: 0o644 });
    const before = leftovers();
    fn(file);
    assert.deepEqual(leftovers(), before, 'left something behind');
    assert.ok(!existsSync(join(dir, '.slipway')), 'created a state directory beside the file');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('not root: says so, exit 1', () => {
  withFile(EXAMPLE, (file) => {
    const r = rehearse(['-f', file], { prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /slipway rehearse needs root .* run it with sudo/);
  });
});

test('systemd-nspawn missing: names the tool and its Debian package, exit 1', () => {
  withFile(EXAMPLE, (file) => {
    // A PATH with every tool the rehearsal uses but systemd-nspawn.
    const path = mkdtempSync(join(tmpdir(), 'slipway-path-'));
    try {
      for (const t of ['ip', 'curl', 'etcdctl', 'debootstrap', 'nsenter', 'sh', 'bash', 'sha256sum']) {
        const found = spawnSync('sh', ['-c', `command -v ${t}`], { encoding: 'utf8' }).stdout.trim();
        if (found) symlinkSync(found, join(path, t));
      }
      const r = rehearse(['-f', file], { env: { ...process.env, PATH: path } });
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /missing tools: systemd-nspawn \(Debian package systemd-container: boots each machine as a system container\)/);
      assert.match(r.out, /install with: apt-get install systemd-container/);
    } finally {
      rmSync(path, { recursive: true, force: true });
    }
  });
});

test('binaries of another version than the file says: both versions named, exit 1', { skip: !existsSync(K8S_BIN) && `no binaries in ${K8S_BIN}` }, () => {
  withFile(EXAMPLE.replace('kubernetesVersion: v1.20.2', 'kubernetesVersion: v1.20.3'), (file) => {
    const r = rehearse(['-f', file, '--binaries', K8S_BIN]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /kube-apiserver is v1\.20\.2, but the cluster file says kubernetesVersion: v1\.20\.3/);
  });
  withFile(EXAMPLE.replace('kubernetesVersion: v1.20.2', 'kubernetesVersion: v1.20.3'), (file) => {
    const r = rehearse(['-f', file]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /no Kubernetes binaries for v1\.20\.3 in .*: pass --binaries DIR, or build them from Debian's source with scripts\/build-kubernetes\.sh v1\.20\.3/);
  });
});

test('a --binaries directory lacking a component: named, exit 1', () => {
  withFile(EXAMPLE, (file) => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-bins-'));
    try {
      mkdirSync(join(dir, 'bin'));
      const r = rehearse(['-f', file, '--binaries', join(dir, 'bin')]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /lacks kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('cni: flannel without a flannel binary: says to use cni: bridge, exit 1', { skip: !existsSync(K8S_BIN) && `no binaries in ${K8S_BIN}` }, () => {
  withFile(EXAMPLE.replace(/cni: bridge .*/, 'cni: flannel'), (file) => {
    const r = rehearse(['-f', file]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /network\.cni is flannel, but .* has no flanneld .*set network\.cni: bridge/);
  });
});

test('an invalid cluster file: FILE:LINE:COL, exit 1, nothing started', () => {
  withFile(EXAMPLE.replace('mac: "52:54:00:20:30:21"', 'mac: "52:54:00:20:30"'), (file) => {
    const r = rehearse(['-f', file]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: spec\\.machines\\[3\\]\\.mac`));
  });
});

test('usage errors: exit 2', () => {
  withFile(EXAMPLE, (file) => {
    assert.equal(rehearse(['-f', file, '--engine', 'docker']).code, 2);
    assert.equal(rehearse(['-f', file, '--timeout', 'soon']).code, 2);
    assert.equal(rehearse([]).code, 2);
  });
});
