// The staged loaders are regular files: Debian's ipxe package ships
// /usr/lib/ipxe/ipxe.efi as a symlink to /boot/ipxe.efi, and hard-linking that symlink
// into <state>/tftp gave a link pointing out of the root, which TFTP and /assets/ipxe/
// then refused (UEFI HTTP boot got 404). Here in a temp dir: a Debian-like symlinked
// loader, a relative symlink in <assets>/ipxe/, and a symlink an older Slipway staged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, lstatSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newLogger } from '../src/serve/log.ts';
import { Assets } from '../src/serve/http/assets.ts';
import { stageTftpRoot } from '../src/serve/tftp-root.ts';
import { startTestTftp, tftpGet } from './helpers/tftp.ts';

test('symlinked loaders are staged as the regular files they point to, and served over HTTP and TFTP', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-tftp-root-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bytes = (name: string) => Buffer.from(`${name} ${'x'.repeat(3000)}\n`); // > one TFTP block
  // Debian's layout: /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi (absolute)
  mkdirSync(join(dir, 'boot'));
  mkdirSync(join(dir, 'lib'));
  writeFileSync(join(dir, 'boot', 'ipxe.efi'), bytes('ipxe.efi'));
  symlinkSync(join(dir, 'boot', 'ipxe.efi'), join(dir, 'lib', 'ipxe.efi'));
  writeFileSync(join(dir, 'lib', 'undionly.kpxe'), bytes('undionly.kpxe'));
  // <assets>/ipxe/snponly.efi -> ../store/snponly.efi (relative), which wins over Debian's
  mkdirSync(join(dir, 'assets', 'ipxe'), { recursive: true });
  mkdirSync(join(dir, 'assets', 'store'));
  writeFileSync(join(dir, 'assets', 'store', 'snponly.efi'), bytes('snponly.efi from assets'));
  symlinkSync('../store/snponly.efi', join(dir, 'assets', 'ipxe', 'snponly.efi'));
  writeFileSync(join(dir, 'lib', 'snponly.efi'), bytes('snponly.efi from debian'));
  // what an older Slipway left: the symlink itself, hard-linked (here: a copy of the link)
  const state = join(dir, 'state');
  mkdirSync(join(state, 'tftp'), { recursive: true });
  symlinkSync(join(dir, 'boot', 'ipxe.efi'), join(state, 'tftp', 'ipxe.efi'));

  const debian = { 'ipxe.efi': join(dir, 'lib', 'ipxe.efi'), 'undionly.kpxe': join(dir, 'lib', 'undionly.kpxe'), 'snponly.efi': join(dir, 'lib', 'snponly.efi') };
  const log = newLogger({ level: 'silent' });
  const root = await stageTftpRoot(state, join(dir, 'assets'), log, debian);
  const want: Record<string, Buffer> = { 'ipxe.efi': bytes('ipxe.efi'), 'undionly.kpxe': bytes('undionly.kpxe'), 'snponly.efi': bytes('snponly.efi from assets') };
  for (const [name, content] of Object.entries(want)) {
    const st = lstatSync(join(root, name));
    assert.ok(st.isFile() && !st.isSymbolicLink(), `${name} is staged as a regular file`);
    assert.deepEqual(readFileSync(join(root, name)), content, `${name} has its loader's bytes`);
  }
  // staging again (serve restarts) keeps them as they are
  await stageTftpRoot(state, join(dir, 'assets'), log, debian);
  assert.ok(lstatSync(join(root, 'ipxe.efi')).isFile());

  // HTTP: /assets/ipxe/<name> as serve mounts the staged root
  const loaders = new Assets(root, 'ipxe/');
  const http = createServer((req, res) => {
    void loaders.serve(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/assets\//, ''), req, res).then((ok) => ok || res.writeHead(404).end());
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => http.close(() => r())));
  const port = (http.address() as AddressInfo).port;
  // TFTP: Slipway's server on the same root
  const tftp = await startTestTftp({ root, port: 0 });
  t.after(() => tftp.close());
  for (const [name, content] of Object.entries(want)) {
    const res = await fetch(`http://127.0.0.1:${port}/assets/ipxe/${name}`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 200, `GET /assets/ipxe/${name}`);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), content);
    const got = await tftpGet(tftp.port, name, { timeoutMs: 5_000 });
    assert.equal(got.error, undefined, `TFTP ${name}: ${JSON.stringify(got.error)}`);
    assert.deepEqual(got.data, content);
  }
});
