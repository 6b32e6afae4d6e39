// Reads an etcd snapshot file (a bbolt database, plus the 32-byte sha256 trailer etcd's
// Maintenance.Snapshot appends) and says what `etcdctl snapshot status` says of it:
// revision, total keys, the crc32c hash over every bucket, key and value. Pure and read
// only, so `etcd snapshot` can check what it wrote and `etcd restore` can refuse a file
// that is not a snapshot before it touches a machine. Layout: go.etcd.io/bbolt page.go,
// node.go, bucket.go; the hash: etcd 3.4 clientv3/snapshot Status().
import { createHash } from 'node:crypto';

export interface SnapshotStatus {
  /** the highest main revision in the "key" bucket */
  revision: number;
  /** entries in every bucket, as etcdctl counts them */
  totalKey: number;
  /** crc32c (Castagnoli) over bucket names, keys and values, as etcdctl computes it */
  hash: number;
  /** bytes of the database (without the sha256 trailer) */
  totalSize: number;
  /** whether the file carried etcd's sha256 trailer (then it was checked) */
  checksummed: boolean;
  /** bucket names in order */
  buckets: string[];
}

export class NotASnapshot extends Error {}

const MAGIC = 0xed0cdaed;
const PAGE_HEADER = 16;
const BRANCH = 0x01;
const LEAF = 0x02;
const META = 0x04;
const BUCKET_LEAF_FLAG = 0x01;
/** bbolt trees are a handful of levels deep; anything deeper is a loop in a damaged file. */
const MAX_DEPTH = 64;

// crc32c, the table Go's hash/crc32 MakeTable(Castagnoli) builds
const CRC32C = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32cUpdate(crc: number, b: Uint8Array): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < b.length; i++) c = CRC32C[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** FNV-1a 64 over the meta fields before the checksum (bbolt meta.sum64). */
function fnv64a(b: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const x of b) h = BigInt.asUintN(64, (h ^ BigInt(x)) * 0x100000001b3n);
  return h;
}

interface Meta {
  pageSize: number;
  root: bigint;
  txid: bigint;
}

function readMeta(db: Buffer, off: number): Meta | string {
  if (off + PAGE_HEADER + 64 > db.length) return 'too short for a bbolt meta page';
  const flags = db.readUInt16LE(off + 8);
  if (!(flags & META)) return 'no bbolt meta page';
  const m = off + PAGE_HEADER;
  if (db.readUInt32LE(m) !== MAGIC) return 'no bbolt magic number';
  if (db.readUInt32LE(m + 4) !== 2) return `bbolt version ${db.readUInt32LE(m + 4)}, not 2`;
  if (fnv64a(db.subarray(m, m + 56)) !== db.readBigUInt64LE(m + 56)) return 'bbolt meta page checksum mismatch';
  return { pageSize: db.readUInt32LE(m + 8), root: db.readBigUInt64LE(m + 16), txid: db.readBigUInt64LE(m + 48) };
}

type Visit = (key: Buffer, value: Buffer, flags: number) => void;

/** In-order walk of one B+tree: `page(pgid)` gives a page's bytes and where it starts. */
function walk(buf: Buffer, off: number, page: (pgid: bigint) => number, visit: Visit, depth: number, where: string): void {
  if (depth > MAX_DEPTH) throw new NotASnapshot(`${where}: tree deeper than ${MAX_DEPTH} levels (damaged file)`);
  if (off + PAGE_HEADER > buf.length) throw new NotASnapshot(`${where}: page at byte ${off} is past the end`);
  const flags = buf.readUInt16LE(off + 8);
  const count = buf.readUInt16LE(off + 10);
  const elems = off + PAGE_HEADER;
  if (elems + count * 16 > buf.length) throw new NotASnapshot(`${where}: page at byte ${off} has elements past the end`);
  for (let i = 0; i < count; i++) {
    const e = elems + i * 16;
    if (flags & BRANCH) {
      walk(buf, page(buf.readBigUInt64LE(e + 8)), page, visit, depth + 1, where);
    } else if (flags & LEAF) {
      const f = buf.readUInt32LE(e);
      const k = e + buf.readUInt32LE(e + 4);
      const v = k + buf.readUInt32LE(e + 8);
      const end = v + buf.readUInt32LE(e + 12);
      if (end > buf.length) throw new NotASnapshot(`${where}: an entry runs past the end`);
      visit(buf.subarray(k, v), buf.subarray(v, end), f);
    } else {
      throw new NotASnapshot(`${where}: page at byte ${off} is neither branch nor leaf (flags ${flags})`);
    }
  }
}

/** What `etcdctl snapshot status` reports of a snapshot's bytes; throws NotASnapshot naming why not. */
export function snapshotStatus(file: Buffer, name = 'the file'): SnapshotStatus {
  let db = file;
  let checksummed = false;
  // etcd's snapshot stream ends with sha256(db); etcdctl snapshot restore checks it the same way.
  if (file.length % 512 === 32) {
    db = file.subarray(0, file.length - 32);
    const want = file.subarray(file.length - 32);
    if (!createHash('sha256').update(db).digest().equals(want)) throw new NotASnapshot(`${name} is not an intact etcd snapshot: its sha256 trailer does not match its contents (truncated or damaged)`);
    checksummed = true;
  }
  const m0 = readMeta(db, 0);
  if (typeof m0 === 'string') throw new NotASnapshot(`${name} is not an etcd snapshot (a bbolt database): ${m0}`);
  const m1 = readMeta(db, m0.pageSize);
  // bbolt uses the valid meta page with the higher transaction id
  const meta = typeof m1 !== 'string' && m1.txid > m0.txid ? m1 : m0;
  const { pageSize } = meta;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw new NotASnapshot(`${name}: bbolt page size ${pageSize} is not plausible`);
  const page = (pgid: bigint): number => {
    const off = Number(pgid) * pageSize;
    if (pgid < 2n || off >= db.length) throw new NotASnapshot(`${name}: page ${pgid} is outside the file (truncated or damaged)`);
    return off;
  };
  let hash = 0;
  let totalKey = 0;
  let revision = 0;
  const buckets: string[] = [];
  walk(db, page(meta.root), page, (name_, value, flags) => {
    if (!(flags & BUCKET_LEAF_FLAG)) throw new NotASnapshot(`${name}: root entry ${JSON.stringify(name_.toString('latin1'))} is not a bucket`);
    buckets.push(name_.toString('latin1'));
    hash = crc32cUpdate(hash, name_);
    const isKey = name_.toString('latin1') === 'key';
    const visit: Visit = (k, v, f) => {
      hash = crc32cUpdate(hash, k);
      // a nested bucket's value is nil to ForEach; etcd has none, but hash what Go would
      if (!(f & BUCKET_LEAF_FLAG)) hash = crc32cUpdate(hash, v);
      if (isKey) {
        if (k.length < 8) throw new NotASnapshot(`${name}: a key in bucket "key" is not a revision`);
        revision = Number(k.readBigInt64BE(0));
      }
      totalKey++;
    };
    if (value.length < 16) throw new NotASnapshot(`${name}: bucket header of ${JSON.stringify(name_.toString('latin1'))} is short`);
    const root = value.readBigUInt64LE(0);
    // root 0: an inline bucket, its page right after the 16-byte header
    if (root === 0n) walk(value, 16, () => {
      throw new NotASnapshot(`${name}: an inline bucket points at a page`);
    }, visit, 0, name);
    else walk(db, page(root), page, visit, 0, name);
  }, 0, name);
  if (!buckets.includes('key') || !buckets.includes('meta')) throw new NotASnapshot(`${name} is a bbolt database but not etcd's: it has no "key" and "meta" buckets (buckets: ${buckets.join(', ') || 'none'})`);
  return { revision, totalKey, hash, totalSize: db.length, checksummed, buckets };
}
