/**
 * ext2/3/4 images built at test time with mkfs -d from a known tree, read by the ext4 driver and
 * compared file by file with the source tree, The Sleuth Kit (fls -r -m, icat) and debugfs:
 * names, types, sizes, modes, owners, times (ns, crtime), link targets, content hashes, xattrs
 * and ACLs; htree lookups by hash.
 */
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ext4Driver, Ext4Filesystem } from '../../../src/disk/ext4/index.js';
import { FileReadAt } from '../../../src/io/read-at.js';
import {
  buildSourceTree,
  debugfsStats,
  icatSha256,
  makeImage,
  MANY_FILES,
  NS_EDITS,
  RAW_NAME,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  setNsTimes,
  sourceXattrs,
  SPARSE_SIZE,
  tskListing,
  tskMode,
  walkFs,
  type Listed,
  type MkfsVariant,
} from './ext4-oracles.js';

const VARIANTS: MkfsVariant[] = [
  { name: 'ext4-csum-64bit', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-O', 'metadata_csum,64bit'], sizeMiB: 160, htree: true },
  { name: 'ext4-1k-csum', mkfs: 'mkfs.ext4', args: ['-b', '1024', '-O', 'metadata_csum,64bit,huge_file'], sizeMiB: 160, htree: true },
  { name: 'ext4-no-csum-32bit', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-O', '^metadata_csum,^64bit,uninit_bg'], sizeMiB: 160, htree: true },
  { name: 'ext4-inline', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-O', 'inline_data,metadata_csum'], sizeMiB: 160, htree: false },
  { name: 'ext4-nojournal-metabg', mkfs: 'mkfs.ext4', args: ['-b', '1024', '-O', '^has_journal,meta_bg,^resize_inode,flex_bg', '-G', '4'], sizeMiB: 160, htree: true },
  { name: 'ext3', mkfs: 'mkfs.ext3', args: ['-b', '4096'], sizeMiB: 160, htree: true },
  { name: 'ext2', mkfs: 'mkfs.ext2', args: ['-b', '1024'], sizeMiB: 160, htree: false },
];

let work: string;
let src: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pbsfs-ext4-'));
  src = join(work, 'src');
  buildSourceTree(src);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function expectedType(v: MkfsVariant): string {
  return v.mkfs.slice(5);
}

describe.each(VARIANTS.map((v) => [v.name, v] as const))('%s image', (_n, v) => {
  let img: string;
  let fs: Ext4Filesystem;
  let listed: Listed[];
  let byPath: Map<string, Listed>;

  beforeAll(async () => {
    img = makeImage(work, src, v);
    setNsTimes(img);
    const ra = await FileReadAt.open(img);
    expect(await ext4Driver.probe(ra)).toBe(true);
    fs = (await ext4Driver.open(ra)) as Ext4Filesystem;
    listed = await walkFs(fs);
    byPath = new Map(listed.map((l) => [l.path.toString('latin1'), l]));
  });

  it('names the type, label and UUID as blkid does', () => {
    expect(fs.type).toBe(expectedType(v));
    expect(fs.label).toBe(`lbl-${v.name}`.slice(0, 16));
    expect(fs.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it('lists every source entry with its type, size, mode, owner, mtime, target and content', () => {
    const seen = new Set<string>();
    const visit = (rel: Buffer): void => {
      const abs = Buffer.concat([Buffer.from(src), rel]);
      const st = lstatSync(abs);
      const key = rel.toString('latin1');
      seen.add(key);
      const l = byPath.get(key);
      expect(l, key).toBeDefined();
      expect(l!.mode, key).toBe(st.mode);
      expect([l!.uid, l!.gid], key).toEqual([st.uid, st.gid]);
      expect(l!.nlink, key).toBe(st.nlink);
      if (!st.isDirectory()) expect(l!.size, key).toBe(st.isCharacterDevice() || st.isBlockDevice() ? 0 : st.size);
      expect(l!.mtime[0], key).toBe(Math.floor(st.mtimeMs / 1000));
      if (st.isCharacterDevice() || st.isBlockDevice()) expect(l!.rdev, key).toBe(st.rdev);
      if (st.isSymbolicLink()) expect(l!.target!.equals(readlinkSync(abs, { encoding: 'buffer' })), key).toBe(true);
      if (st.isFile()) expect(l!.sha256, key).toBe(createHash('sha256').update(readFileSync(abs)).digest('hex'));
      if (Buffer.from(rel.toString('utf8')).equals(rel)) expect(Object.fromEntries(l!.xattrs), key).toEqual(Object.fromEntries(sourceXattrs(abs)));
      if (st.isDirectory()) {
        for (const name of readdirBuffers(abs)) visit(Buffer.concat([rel, Buffer.from('/'), name]));
      }
    };
    for (const name of readdirBuffers(Buffer.from(src))) visit(Buffer.concat([Buffer.from('/'), name]));
    const extra = listed.map((l) => l.path.toString('latin1')).filter((p) => !seen.has(p) && !p.startsWith('/lost+found'));
    expect(extra).toEqual([]);
    expect(byPath.get(`/${RAW_NAME.toString('latin1')}`)).toBeDefined();
    expect(byPath.get('/sparse.img')!.size).toBe(SPARSE_SIZE);
    expect(byPath.get('/hardlink')!.ino).toBe(byPath.get('/hello.txt')!.ino);
    expect(byPath.get('/owned')!.uid).toBe(100000);
  });

  it('renders ACLs in the posix_acl_xattr format (access and default)', () => {
    const owned = byPath.get('/owned')!;
    // version 2; USER_OBJ rw, USER 1234 rx, USER 100000 rw, GROUP_OBJ r, GROUP 4321 r, MASK rwx, OTHER r.
    expect(owned.xattrs.get('system.posix_acl_access')).toBe(
      '02000000' + '0100' + '0600' + 'ffffffff' + '0200' + '0500' + 'd2040000' + '0200' + '0600' + 'a0860100' + '0400' + '0400' + 'ffffffff' + '0800' + '0400' + 'e1100000' + '1000' + '0700' + 'ffffffff' + '2000' + '0400' + 'ffffffff',
    );
    expect(byPath.get('/acl-dir')!.xattrs.has('system.posix_acl_default')).toBe(true);
    expect(byPath.get('/acl-dir/inherits')!.xattrs.has('system.posix_acl_access')).toBe(false);
  });

  it('agrees with The Sleuth Kit: fls -r -m rows and icat contents', () => {
    const tsk = tskListing(img);
    for (const l of listed) {
      const key = l.path.toString('latin1');
      if (key.startsWith('/lost+found/')) continue;
      const row = tsk.get(key);
      expect(row, key).toBeDefined();
      expect(row!.ino, key).toBe(l.ino);
      expect(row!.mode, key).toBe(tskMode(l.mode));
      expect([row!.uid, row!.gid], key).toEqual([l.uid, l.gid]);
      if ((l.mode & S_IFMT) !== S_IFDIR) expect(row!.size, key).toBe(l.size);
      expect(row!.times, key).toEqual([l.atime[0], l.mtime[0], l.ctime[0], fs.type === 'ext4' ? (l.crtime?.[0] ?? 0) : 0]);
    }
    for (const l of listed) {
      if ((l.mode & S_IFMT) !== S_IFREG || key(l).startsWith('/many/')) continue;
      expect(icatSha256(img, l.ino), key(l)).toBe(l.sha256);
    }
  });

  it('agrees with debugfs on links, owners, sizes and nanosecond times including crtime', () => {
    const dbg = debugfsStats(img, listed.map((l) => l.ino));
    for (const l of listed) {
      const d = dbg.get(l.ino);
      expect(d, key(l)).toBeDefined();
      expect([d!.links, d!.uid, d!.gid], key(l)).toEqual([l.nlink, l.uid, l.gid]);
      if ((l.mode & S_IFMT) === S_IFREG || (l.mode & S_IFMT) === S_IFLNK) expect(d!.size, key(l)).toBe(l.size);
      expect(d!.times.atime, key(l)).toEqual(l.atime);
      expect(d!.times.mtime, key(l)).toEqual(l.mtime);
      expect(d!.times.ctime, key(l)).toEqual(l.ctime);
      expect(d!.times.crtime, key(l)).toEqual(l.crtime);
    }
    expect(byPath.get('/hello.txt')!.mtime[1]).toBe(123456789);
    expect(byPath.get('/owned')!.crtime).toEqual([Date.UTC(2040, 0, 2, 3, 4, 5) / 1000 + new Date().getTimezoneOffset() * 60, 555]);
    expect(NS_EDITS.length).toBe(4);
  });

  it('reads holes as zeros and any byte range of a file as the source has it', async () => {
    const ino = byPath.get('/sparse.img')!.ino;
    const want = readFileSync(join(src, 'sparse.img'));
    for (const [off, len] of [[0, 10], [4090, 20], [40 * 1024 * 1024 - 3, 8200], [SPARSE_SIZE - 10, 100], [12345678, 65536], [SPARSE_SIZE + 5, 10]] as const) {
      const got = await fs.read(ino, off, len);
      expect(got.equals(want.subarray(off, off + len)), `${off}+${len}`).toBe(true);
    }
    const st = await fs.stat(ino);
    expect(st.blocks * 512).toBeLessThan(1024 * 1024);
  });

  it('finds every name of a large directory by lookup (through the htree hash where indexed)', async () => {
    const many = byPath.get('/many')!.ino;
    const before = fs.stats.htreeLookups;
    for (let i = 0; i < MANY_FILES; i++) {
      const name = Buffer.from(`entry-${i}-${'n'.repeat(i % 40)}`);
      expect(await fs.lookup(many, name), name.toString()).toBe(byPath.get(`/many/${name.toString()}`)!.ino);
    }
    expect(await fs.lookup(many, Buffer.from('entry-nope'))).toBeUndefined();
    if (v.htree) {
      expect(fs.stats.htreeLookups - before).toBe(MANY_FILES + 1);
      expect(fs.stats.htreeFallbacks).toBe(0);
    }
  });
});

function key(l: Listed): string {
  return l.path.toString('latin1');
}

function readdirBuffers(dir: Buffer): Buffer[] {
  return (require_readdir(dir) as Buffer[]).filter((n) => !n.equals(Buffer.from('lost+found')));
}

import { readdirSync } from 'node:fs';
function require_readdir(dir: Buffer): Buffer[] {
  return readdirSync(dir, { encoding: 'buffer' });
}
