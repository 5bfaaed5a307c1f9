/**
 * A behavioural suite over an in-memory tree, run twice: against the VfsCore directly and
 * against a kernel mount of the same tree. Both must give the same answers.
 */
import { expect, it } from 'vitest';
import { mem, type MemNode } from './memory-tree.js';
import { p, type FsDriver } from './fs-driver.js';

export const BAD_NAME = Buffer.from('626164ff6e616d65', 'hex'); // "bad\xffname"
export const BIG = Buffer.alloc(3 * 1024 * 1024 + 17);
for (let i = 0; i + 4 <= BIG.length; i += 4) BIG.writeUInt32LE((i * 2654435761) >>> 0, i);

export interface MemoryTree {
  root: MemNode;
  hardlink: MemNode;
  corrupt: MemNode;
}

export function memoryTree(): MemoryTree {
  const hardlink = mem({ data: Buffer.from('shared content\n'), nlink: 2, ino: 77 });
  const corrupt = mem({ data: Buffer.from('never readable'), corrupt: true });
  const root = mem({
    mtimeSec: 1700000001,
    mtimeNsec: 1,
    children: [
      ['hello.txt', mem({ data: Buffer.from('Hello, world!\n'), mtimeSec: -123456789, mtimeNsec: 5, uid: 2000000000, gid: 4000000000 })],
      ['empty', mem({ data: Buffer.alloc(0) })],
      ['big.bin', mem({ data: BIG, perm: 0o600, uid: 1000, gid: 100, xattrs: [['user.comment', Buffer.from('hi')], ['user.bin', Buffer.from([0, 255])]] })],
      [BAD_NAME, mem({ data: Buffer.from('non-utf8 name\n') })],
      ['corrupt.bin', corrupt],
      [
        'dir',
        mem({
          children: [
            ['link1', hardlink],
            ['sub', mem({ children: [['link2', hardlink]] })],
            ['sym', mem({ target: Buffer.from('../hello.txt') })],
          ],
          xattrs: [['user.dirattr', Buffer.from('on a dir')]],
        }),
      ],
      ['empty-dir', mem({ children: [] })],
      ['chardev', mem({ kind: 'chardev', rdev: (1 << 8) | 3, perm: 0o600 })],
      ['fifo', mem({ kind: 'fifo' })],
      ['mode000', mem({ data: Buffer.from('secret\n'), perm: 0o000, uid: 65534, gid: 65534 })],
    ],
  });
  return { root, hardlink, corrupt };
}

export function defineBehaviourSuite(driver: () => FsDriver): void {
  it('lists directories sorted by name bytes, raw names included', async () => {
    const d = driver();
    const names = await d.list(Buffer.alloc(0));
    const expected = ['big.bin', 'chardev', 'corrupt.bin', 'dir', 'empty', 'empty-dir', 'fifo', 'hello.txt', 'mode000']
      .map((s) => Buffer.from(s))
      .concat([BAD_NAME])
      .sort(Buffer.compare);
    expect(names.map((n) => n.toString('hex'))).toEqual(expected.map((n) => n.toString('hex')));
    expect(await d.list(p('empty-dir'))).toEqual([]);
    expect((await d.list(p('dir'))).map(String)).toEqual(['link1', 'sub', 'sym']);
  });

  it('reports mode, owner, size and nanosecond mtimes (also before 1970)', async () => {
    const d = driver();
    const st = await d.lstat(p('hello.txt'));
    expect(st.mode).toBe(0o100644);
    expect(st.size).toBe(14);
    expect(st.uid).toBe(2000000000);
    expect(st.gid).toBe(4000000000);
    expect(st.mtimeNs).toBe(-123456789n * 1_000_000_000n + 5n);
    const big = await d.lstat(p('big.bin'));
    expect(big.mode).toBe(0o100600);
    expect(big.size).toBe(BIG.length);
    expect([big.uid, big.gid]).toEqual([1000, 100]);
    const root = await d.lstat(Buffer.alloc(0));
    expect(root.mode).toBe(0o040755);
    expect(root.mtimeNs).toBe(1700000001_000000001n);
    expect((await d.lstat(p('mode000'))).mode).toBe(0o100000);
  });

  it('gives hardlinked names one inode with nlink 2', async () => {
    const d = driver();
    const a = await d.lstat(p('dir', 'link1'));
    const b = await d.lstat(p('dir', 'sub', 'link2'));
    expect(a.ino).toBe(b.ino);
    expect(a.nlink).toBe(2);
    expect(await d.read(p('dir', 'sub', 'link2'), 0, 100)).toEqual(Buffer.from('shared content\n'));
    const other = await d.lstat(p('hello.txt'));
    expect(other.ino).not.toBe(a.ino);
  });

  it('reads symlinks, devices and fifos', async () => {
    const d = driver();
    expect((await d.readlink(p('dir', 'sym'))).toString()).toBe('../hello.txt');
    const sym = await d.lstat(p('dir', 'sym'));
    expect(sym.mode & 0o170000).toBe(0o120000);
    expect(sym.size).toBe(12);
    const cd = await d.lstat(p('chardev'));
    expect(cd.mode).toBe(0o020600);
    expect(cd.rdev).toBe((1 << 8) | 3);
    expect((await d.lstat(p('fifo'))).mode & 0o170000).toBe(0o010000);
  });

  it('reads any range, short at EOF and empty past it', async () => {
    const d = driver();
    expect(await d.read(p('hello.txt'), 7, 100)).toEqual(Buffer.from('world!\n'));
    expect((await d.read(p('hello.txt'), 100, 10)).length).toBe(0);
    expect((await d.read(p('empty'), 0, 10)).length).toBe(0);
    expect(await d.read(p(BAD_NAME), 0, 100)).toEqual(Buffer.from('non-utf8 name\n'));
    for (const [off, len] of [
      [0, 1],
      [4095, 2],
      [131071, 131073],
      [1048576 - 3, 1048576 + 7],
      [BIG.length - 5, 100],
    ] as const) {
      expect((await d.read(p('big.bin'), off, len)).equals(BIG.subarray(off, off + len))).toBe(true);
    }
  });

  it('answers ENOENT, ENOTDIR and EIO, and keeps other files working', async () => {
    const d = driver();
    expect(await d.errnoOf(() => d.lstat(p('missing')))).toBe('ENOENT');
    expect(await d.errnoOf(() => d.lstat(p('dir', 'nope', 'x')))).toBe('ENOENT');
    expect(await d.errnoOf(() => d.list(p('hello.txt')))).toBe('ENOTDIR');
    expect(await d.errnoOf(() => d.read(p('corrupt.bin'), 0, 10))).toBe('EIO');
    expect(await d.read(p('hello.txt'), 0, 5)).toEqual(Buffer.from('Hello'));
  });
}
