/**
 * The exFAT reader against an image made by mkfs.exfat and filled through a loop device mounted
 * with exfat-fuse (this kernel has no exfat driver): names, types, sizes, times and content must
 * match the source tree and The Sleuth Kit; label and UUID must match blkid.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exfatDriver, ExfatFilesystem } from '../../../src/disk/exfat/index.js';
import { fatDriver } from '../../../src/disk/fat/index.js';
import { FileReadAt } from '../../../src/io/read-at.js';
import { pattern, readSourceTree, run, sha256, tskContent, tskList, walkFilesystem, writeSourceTree, type WalkedFile } from './oracle.js';

let work: string;
let src: string;
let img: string;
let reader: FileReadAt;
let fs: ExfatFilesystem;
let ours: Map<string, WalkedFile>;

/** mkfs.exfat, then the tree copied in through exfat-fuse on a loop device; always unmounted. */
function buildImage(): void {
  img = join(work, 'exfat.img');
  run('truncate', ['-s', '64M', img]);
  run('mkfs.exfat', ['-L', 'PBSFS exFAT', img]);
  const mnt = join(work, 'mnt');
  mkdirSync(mnt);
  const loop = run('losetup', ['-f', '--show', img]).trim();
  try {
    run('mount.exfat-fuse', [loop, mnt]);
    try {
      execFileSync('cp', ['-a', src + '/.', mnt + '/']);
    } finally {
      run('fusermount', ['-u', mnt]);
    }
  } finally {
    run('losetup', ['-d', loop]);
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pbsfs-exfat-'));
  src = join(work, 'src');
  writeSourceTree(src, 1_000_000, true);
  buildImage();
  reader = await FileReadAt.open(img);
  expect(await exfatDriver.probe(reader)).toBe(true);
  expect(await fatDriver.probe(reader)).toBe(false);
  fs = (await exfatDriver.open(reader)) as ExfatFilesystem;
  ours = await walkFilesystem(fs);
}, 120_000);

afterAll(async () => {
  await reader?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('exFAT image built by mkfs.exfat and filled through exfat-fuse', () => {
  it('has the label and UUID blkid reports', () => {
    expect(fs.type).toBe('exfat');
    expect(fs.label).toBe('PBSFS exFAT');
    expect(fs.label).toBe(run('blkid', ['-o', 'value', '-s', 'LABEL', img]).trim());
    expect(fs.uuid).toBe(run('blkid', ['-o', 'value', '-s', 'UUID', img]).trim());
  });

  it('lists exactly the source tree (astral-plane names too): types, sizes, mtimes, content', () => {
    const source = readSourceTree(src);
    expect([...ours.keys()].sort()).toEqual([...source.keys()].sort());
    for (const [path, want] of source) {
      const got = ours.get(path)!;
      expect({ path, dir: got.dir, sha256: got.sha256, mtime: got.mtime }).toEqual({ path, dir: want.dir, sha256: want.sha256, mtime: want.mtime });
      if (!want.dir) expect({ path, size: got.size }).toEqual({ path, size: want.size });
    }
  });

  it('agrees with The Sleuth Kit on every entry: inode, name, type, size, mtime, content', () => {
    const tsk = tskList(img);
    expect(tsk.map((e) => e.path).sort()).toEqual([...ours.keys()].sort());
    for (const t of tsk) {
      const got = ours.get(t.path)!;
      expect({ path: t.path, ino: got.ino, dir: got.dir, mtime: got.mtime }).toEqual({ path: t.path, ino: t.ino, dir: t.dir, mtime: t.mtime });
      if (!t.dir) {
        expect({ path: t.path, size: got.size }).toEqual({ path: t.path, size: t.size });
        expect({ path: t.path, sha256: sha256(tskContent(img, t.ino)) }).toEqual({ path: t.path, sha256: got.sha256 });
      }
    }
  });

  it('maps attributes to modes: 0644 files, 0755 directories', () => {
    expect(ours.get('hello.txt')!.mode).toBe(0o100644);
    expect(ours.get('nested')!.mode).toBe(0o040755);
  });

  it('reads any range of a multi-cluster file', async () => {
    const want = pattern(1_000_000, 7);
    const ino = ours.get('big.bin')!.ino;
    for (const [off, len] of [
      [0, 10],
      [4095, 8200],
      [777_777, 222_223],
      [999_999, 50],
    ] as const) {
      expect((await fs.read(ino, off, len)).equals(want.subarray(off, off + len))).toBe(true);
    }
  });

  it('gives the same inodes after reopening, and rebuilds evicted nodes from their position', async () => {
    const again = await exfatDriver.open(reader);
    const ino = ours.get('nested/level1/level2/level3/deep.txt')!.ino;
    expect((await again.stat(ino)).size).toBe(5);
    expect((await again.read(ino, 0, 100)).toString()).toBe('deep\n');
  });
});
