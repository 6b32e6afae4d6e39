// The state directory's databases are 0600 like its keys, journals included, whatever
// the umask, and an older slipway's 0644 files are tightened at open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteLeaseStore } from './leases.ts';
import { SqliteStore } from '../../store/sqlite.ts';

const mode = (f: string) => (statSync(f).mode & 0o777).toString(8);

test('dhcp-leases.sqlite and its WAL are 0600, also when they existed 0644', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-leases-mode-'));
  const old = process.umask(0o022);
  try {
    const file = join(dir, 'dhcp-leases.sqlite');
    const a = await SqliteLeaseStore.open(file);
    a.bind('02:00:00:00:00:01', '10.20.30.50', 10_000, { now: 0 });
    await a.flush();
    assert.ok(existsSync(`${file}-wal`), 'a WAL while open');
    assert.equal(mode(file), '600');
    assert.equal(mode(`${file}-wal`), '600');
    await a.close();

    const loose = join(dir, 'loose.sqlite');
    writeFileSync(loose, '', { mode: 0o644 });
    writeFileSync(`${loose}-wal`, '', { mode: 0o644 });
    const b = await SqliteLeaseStore.open(loose);
    b.bind('02:00:00:00:00:02', '10.20.30.51', 10_000, { now: 0 });
    await b.flush();
    assert.equal(mode(loose), '600');
    assert.equal(mode(`${loose}-wal`), '600');
    await b.close();
  } finally {
    process.umask(old);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve.db and its WAL are 0600', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slipway-store-mode-'));
  const old = process.umask(0o022);
  try {
    const file = join(dir, 'serve.db');
    const s = new SqliteStore(file);
    s.recordDiscovered('02:00:00:00:00:03', 'dhcp');
    assert.equal(mode(file), '600');
    assert.equal(mode(`${file}-wal`), '600');
    assert.equal(mode(`${file}-shm`), '600');
    s.close();
  } finally {
    process.umask(old);
    rmSync(dir, { recursive: true, force: true });
  }
});
