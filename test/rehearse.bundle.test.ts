// The rehearsal's bundle (src/rehearse/bundle.ts): the images it builds and,
// for the VM engine, the stand-in OS's kernel and initramfs as os/ entries, in the format
// `bundle create` writes: `bundle verify` re-checks every digest, `bundle inspect` names
// the OS. (The VM rehearsal boots its machines from those os/ files through serve --bundle:
// test/rehearse.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRehearsalBundle } from '../src/rehearse/bundle.ts';
import { slipway } from './helpers/cli.ts';

test('the VM rehearsal bundle carries the OS under os/ and passes bundle verify', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-rh-bundle-'));
  try {
    const kernel = Buffer.from('a kernel, for the test\n'.repeat(1000));
    const initrd = Buffer.from('an initramfs, for the test\n'.repeat(3000));
    writeFileSync(join(dir, 'vmlinuz'), kernel);
    writeFileSync(join(dir, 'initrd.img'), initrd);
    const bundle = join(dir, 'b.tar');
    const refs = await writeRehearsalBundle(bundle, { name: 'lab', kubernetesVersion: 'v1.20.2' }, 'k8s.gcr.io/pause:3.2', {
      name: 'debian-stand-in', channel: 'rehearsal', version: 'abc123',
      files: [{ path: 'os/vmlinuz', source: join(dir, 'vmlinuz'), name: 'kernel' }, { path: 'os/initrd.img', source: join(dir, 'initrd.img'), name: 'initramfs' }],
    });
    assert.deepEqual(refs, ['k8s.gcr.io/pause:3.2', 'docker.io/slipway/smoke-http:1']);
    const verify = slipway(['bundle', 'verify', bundle]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const inspect = slipway(['bundle', 'inspect', bundle, '--json']);
    assert.equal(inspect.code, 0, inspect.stderr);
    const m = JSON.parse(inspect.stdout) as { os: { name: string; version: string }; files: { path: string; sha256: string }[] };
    assert.deepEqual(m.os, { name: 'debian-stand-in', channel: 'rehearsal', version: 'abc123' });
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(m.files.find((f) => f.path === 'os/vmlinuz')?.sha256, sha(kernel));
    assert.equal(m.files.find((f) => f.path === 'os/initrd.img')?.sha256, sha(initrd));

  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
