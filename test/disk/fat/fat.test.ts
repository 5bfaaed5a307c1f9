/**
 * The FAT12/16/32 reader against images that mkfs.vfat and mtools build at test time from a known
 * tree: every name, type, size, time and content hash must match the source tree and The Sleuth
 * Kit's reading of the same image; label and UUID must match blkid.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fatDriver, FatFilesystem } from '../../../src/disk/fat/index.js';
import { FileReadAt } from '../../../src/io/read-at.js';
import { knownMtime, pattern, readSourceTree, run, sha256, tskContent, tskDeleted, tskList, walkFilesystem, writeSourceTree, type WalkedFile } from './oracle.js';

const MTOOLS_ENV = { LC_ALL: 'C.UTF-8', MTOOLS_SKIP_CHECK: '1' };

let work: string;
let src: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pbsfs-fat-'));
  src = join(work, 'src');
  writeSourceTree(src, 300_000, false);
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/** Builds a FAT image of the source tree, with two deleted files and a fragmented big.bin. */
function buildImage(bits: 12 | 16 | 32): string {
  const img = join(work, `fat${bits}.img`);
  const size = { 12: '4M', 16: '32M', 32: '64M' }[bits];
  run('truncate', ['-s', size, img]);
  run('mkfs.vfat', ['-F', String(bits), '-n', 'PBSFSTEST', '-i', '1234ABCD', ...(bits === 32 ? ['-s', '1'] : []), img]);
  const filler = join(work, 'filler.bin');
  writeFileSync(filler, pattern(20_000, 3));
  run('mcopy', ['-i', img, filler, '::/gap1.bin'], MTOOLS_ENV);
  run('mcopy', ['-i', img, filler, '::/gap2.bin'], MTOOLS_ENV);
  run('mdel', ['-i', img, '::/gap1.bin'], MTOOLS_ENV);
  const top = readdirSync(src).sort().map((n) => join(src, n));
  run('mcopy', ['-s', '-m', '-i', img, ...top, '::/'], MTOOLS_ENV);
  run('mdel', ['-i', img, '::/gap2.bin'], MTOOLS_ENV);
  run('mattrib', ['-i', img, '+r', '::/readonly.txt'], MTOOLS_ENV);
  return img;
}

describe.each([12, 16, 32] as const)('FAT%i image built by mkfs.vfat and mcopy', (bits) => {
  let img: string;
  let fs: FatFilesystem;
  let ours: Map<string, WalkedFile>;
  let reader: FileReadAt;

  beforeAll(async () => {
    img = buildImage(bits);
    reader = await FileReadAt.open(img);
    expect(await fatDriver.probe(reader)).toBe(true);
    fs = (await fatDriver.open(reader)) as FatFilesystem;
    ours = await walkFilesystem(fs);
  });

  afterAll(async () => {
    await reader?.close();
  });

  it(`is read as FAT${bits} with the label and UUID blkid reports`, () => {
    expect(fs.variant).toBe(`fat${bits}`);
    expect(fs.type).toBe('vfat');
    expect(fs.label).toBe(run('blkid', ['-o', 'value', '-s', 'LABEL', img]).trim());
    expect(fs.uuid).toBe(run('blkid', ['-o', 'value', '-s', 'UUID', img]).trim());
    expect(fs.uuid).toBe('1234-ABCD');
  });

  it('lists exactly the source tree: names (long, unicode, 8.3 with lower-case flags), types, sizes, mtimes, content', () => {
    const source = readSourceTree(src);
    expect([...ours.keys()].sort()).toEqual([...source.keys()].sort());
    for (const [path, want] of source) {
      const got = ours.get(path)!;
      expect({ path, dir: got.dir, size: got.size, sha256: got.sha256 }).toEqual({ path, dir: want.dir, size: want.size, sha256: want.sha256 });
      if (!want.dir) expect({ path, mtime: got.mtime }).toEqual({ path, mtime: want.mtime });
    }
  });

  it('agrees with The Sleuth Kit on every entry: inode, name, type, size, atime, mtime, crtime, content', () => {
    const tsk = tskList(img);
    expect(tsk.map((e) => e.path).sort()).toEqual([...ours.keys()].sort());
    for (const t of tsk) {
      const got = ours.get(t.path)!;
      expect({ path: t.path, ino: got.ino, dir: got.dir, mtime: got.mtime, atime: got.atime, crtime: got.crtime ?? 0 }).toEqual({
        path: t.path,
        ino: t.ino,
        dir: t.dir,
        mtime: t.mtime,
        atime: t.atime,
        crtime: t.crtime,
      });
      if (!t.dir) {
        expect({ path: t.path, size: got.size }).toEqual({ path: t.path, size: t.size });
        expect({ path: t.path, sha256: sha256(tskContent(img, t.ino)) }).toEqual({ path: t.path, sha256: got.sha256 });
      }
    }
  });

  it('skips the deleted entries The Sleuth Kit still sees', () => {
    const deleted = tskDeleted(img).join('\n');
    expect(deleted).toMatch(/ap2\.bin/i);
    expect([...ours.keys()].filter((p) => /gap/i.test(p))).toEqual([]);
  });

  it('maps attributes to modes: 0644 files, 0755 directories, no write bits when read-only, owner 0:0', async () => {
    expect(ours.get('hello.txt')!.mode).toBe(0o100644);
    expect(ours.get('readonly.txt')!.mode).toBe(0o100444);
    expect(ours.get('nested')!.mode).toBe(0o040755);
    const st = await fs.stat(fs.rootIno);
    expect(st.mode).toBe(0o040755);
    expect([st.uid, st.gid]).toEqual([0, 0]);
  });

  it('keeps the creation time to 10 ms and the access time as a date', async () => {
    const st = await fs.stat(ours.get('hello.txt')!.ino);
    expect(st.crtime).toBeDefined();
    expect(st.crtime!.nsec % 10_000_000).toBe(0);
    expect(st.atime.sec % 86400).toBe(0);
    expect(st.mtime.sec).toBe(knownMtime(0));
    expect(st.ctime).toEqual(st.mtime);
  });

  it('reads any range of a fragmented multi-cluster file', async () => {
    const want = pattern(300_000, 7);
    const ino = ours.get('big.bin')!.ino;
    for (const [off, len] of [
      [0, 1],
      [511, 2],
      [4095, 4098],
      [123_456, 70_000],
      [299_990, 100],
      [300_000, 10],
    ] as const) {
      expect((await fs.read(ino, off, len)).equals(want.subarray(off, off + len))).toBe(true);
    }
  });

  it('looks names up exactly and gives the same inode numbers when opened again', async () => {
    expect(await fs.lookup(fs.rootIno, Buffer.from('no such file'))).toBeUndefined();
    expect(await fs.lookup(fs.rootIno, Buffer.from('HELLO.TXT'))).toBeUndefined();
    const again = await fatDriver.open(reader);
    expect(await walkFilesystem(again)).toEqual(ours);
  });
});
