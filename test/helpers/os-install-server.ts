// A provisioner of the install test's own (test/os-image.install.test.ts), run with node in
// the lab's hub namespace: what `slipway serve` answers a blank machine's install, and no
// more, so the installer (scripts/os-image/init) is proved on its own.
//
//   GET  /boot.ipxe        iPXE script: the image's kernel + installer initramfs with the
//                          install command line; once the machine reported `installed`,
//                          `exit` (boot from the local disk, as serve's "boot local")
//   GET  /os/<file>        vmlinuz, initrd.img (the image's), disk.img.zst (DISK_FILE:
//                          the image's, or a corrupt copy)
//   GET  /ignition.json    a small Ignition config (one file, one link)
//   GET  /install.env      the contract's KEY=value lines
//   POST /report           appends {at, auth, body} to REPORTS (one JSON line); 200
//
// Every request is printed as "REQ <method> <path> <status>" on stdout. Environment: PORT,
// IMAGE_DIR, DISK_FILE, REPORTS, INSTALL_ENV (the file's text), IGNITION (the config's
// text), CMDLINE (kernel arguments), STALL_AFTER (bytes of disk.img.zst sent before the
// server stops sending: a provisioner that hangs mid-stream).
import { createServer } from 'node:http';
import { appendFileSync, createReadStream, statSync } from 'node:fs';
import { join } from 'node:path';

const env = (k: string) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const port = Number(env('PORT'));
const imageDir = env('IMAGE_DIR');
const files: Record<string, string> = {
  '/os/vmlinuz': join(imageDir, 'vmlinuz'),
  '/os/initrd.img': join(imageDir, 'initrd.img'),
  '/os/disk.img.zst': env('DISK_FILE'),
};
let installed = false;

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]!;
  const done = (status: number, body: string | Buffer, type = 'text/plain') => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
    console.log(`REQ ${req.method} ${path} ${status}`);
  };
  if (req.method === 'POST' && path === '/report') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      appendFileSync(env('REPORTS'), JSON.stringify({ at: Date.now(), auth: req.headers.authorization ?? '', body }) + '\n');
      try {
        if (JSON.parse(body).state === 'installed') installed = true;
      } catch {
        // the test reads the raw body
      }
      done(200, '{}', 'application/json');
    });
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return done(405, 'no');
  if (path === '/boot.ipxe') {
    const base = `http://${req.headers.host}`;
    const script = installed
      ? '#!ipxe\necho install-test: installed: booting from local disk\nexit\n'
      : `#!ipxe\necho install-test: installing\nkernel ${base}/os/vmlinuz initrd=initrd.img ${env('CMDLINE')}\ninitrd --name initrd.img ${base}/os/initrd.img\nboot\n`;
    return done(200, script);
  }
  if (path === '/ignition.json') return done(200, env('IGNITION'), 'application/json');
  if (path === '/install.env') return done(200, env('INSTALL_ENV'));
  const file = files[path];
  if (!file) return done(404, 'not found');
  const size = statSync(file).size;
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  if (req.method === 'HEAD') return void res.end();
  const stallAfter = process.env.STALL_AFTER && path === '/os/disk.img.zst' ? Number(process.env.STALL_AFTER) : undefined;
  const stream = createReadStream(file, stallAfter === undefined ? {} : { end: stallAfter - 1 });
  stream.on('end', () => {
    console.log(`REQ ${req.method} ${path} 200 ${stallAfter === undefined ? 'sent' : `stalled after ${stallAfter} bytes`}`);
    // a stalled server keeps the connection open and sends nothing more
    if (stallAfter === undefined) res.end();
  });
  stream.pipe(res, { end: false });
});
server.listen(port, '0.0.0.0', () => console.log(`READY ${port}`));
