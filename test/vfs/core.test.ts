import { describe, expect, it, vi } from 'vitest';
import { ROOT_ID, STATS_XATTR, VfsCore, registerInodeDomain } from '../../src/vfs/core.js';
import { LazyDir, ReadAtFile } from '../../src/vfs/virtual-nodes.js';
import { BufferReadAt } from '../../src/io/read-at.js';
import { coreDriver } from '../helpers/fs-driver.js';
import { defineBehaviourSuite, memoryTree } from '../helpers/memory-suite.js';
import { mem, type MemNode } from '../helpers/memory-tree.js';
import { IntegrityError } from '../../src/errors.js';
import type { VfsNode } from '../../src/vfs/types.js';

describe('VfsCore behaviour (direct)', () => {
  const logs: string[] = [];
  const t = memoryTree();
  const core = new VfsCore(registerInodeDomain(t.root), { log: (l) => logs.push(l) });
  defineBehaviourSuite(() => coreDriver(core));

  it('logs one line per failing file and reason, naming the file', async () => {
    const d = coreDriver(core);
    await d.errnoOf(() => d.read(Buffer.from('corrupt.bin'), 0, 10));
    await d.errnoOf(() => d.read(Buffer.from('corrupt.bin'), 0, 10));
    const lines = logs.filter((l) => l.includes('/corrupt.bin'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/digest 00ff/);
  });
});

describe('VfsCore', () => {
  it('resolves paths (cached) and reads files by path', async () => {
    const t = memoryTree();
    const core = new VfsCore(t.root);
    expect((await core.resolve('/dir/sub/link2')) === t.hardlink).toBe(true);
    expect((await core.resolve('dir/./sub/../sub/link2')) === t.hardlink).toBe(true);
    expect((await core.readFile('dir/link1')).toString()).toBe('shared content\n');
    await expect(core.resolve('dir/nope')).rejects.toThrow(/dir\/nope: no such file/);
    await expect(core.resolve('hello.txt/x')).rejects.toMatchObject({ errno: 'ENOTDIR' });
  });

  it('shows the stats xattr on the root only, and applies uid/gid overrides', async () => {
    const t = memoryTree();
    const core = new VfsCore(t.root, { uid: 12, gid: 34, stats: () => ({ chunksFetched: 7 }) });
    const v = await core.getxattr(ROOT_ID, Buffer.from(STATS_XATTR));
    const j = JSON.parse(v!.toString());
    expect(j.chunksFetched).toBe(7);
    expect(j.vfs.lookups).toBe(0);
    expect(await core.listxattr(ROOT_ID)).toEqual([]);
    const r = await core.lookup(ROOT_ID, Buffer.from('hello.txt'));
    expect([r!.attr.uid, r!.attr.gid]).toEqual([12, 34]);
  });

  it('keeps node ids while referenced and drops them after forget', async () => {
    const t = memoryTree();
    const core = new VfsCore(t.root);
    const a = await core.lookup(ROOT_ID, Buffer.from('hello.txt'));
    const b = await core.lookup(ROOT_ID, Buffer.from('hello.txt'));
    expect(a!.nodeid).toBe(b!.nodeid);
    core.forget(a!.nodeid, 2);
    await expect(core.getattr(a!.nodeid)).rejects.toMatchObject({ errno: 'ENOENT' });
  });

  it('uses node ids as st_ino when several archive domains share a mount', async () => {
    // Two "archives" whose files have the same archive-local inode number.
    const a = registerInodeDomain(mem({ children: [['f', mem({ data: Buffer.from('a'), ino: 5 })]] }));
    const b = registerInodeDomain(mem({ children: [['f', mem({ data: Buffer.from('b'), ino: 5 })]] }));
    const root = new LazyDir(async () => [
      { name: Buffer.from('a'), node: a },
      { name: Buffer.from('b'), node: b },
    ]);
    const core = new VfsCore(root);
    const d = coreDriver(core);
    const fa = await d.lstat(Buffer.from('a/f'));
    const fb = await d.lstat(Buffer.from('b/f'));
    expect(fa.ino).not.toBe(fb.ino);
    expect((await d.read(Buffer.from('b/f'), 0, 9)).toString()).toBe('b');
  });

  it('lists a directory even when one entry cannot be stat()ed, and reports that entry on lookup', async () => {
    const broken: VfsNode = {
      kind: 'file',
      stat: async () => {
        throw new IntegrityError('damaged entry', { file: 'a.didx' });
      },
      listxattr: async () => [],
      getxattr: async () => undefined,
    };
    const root = new LazyDir(async () => [
      { name: Buffer.from('ok'), node: mem({ data: Buffer.from('x') }) },
      { name: Buffer.from('bad'), node: broken },
    ]);
    const core = new VfsCore(root);
    const dh = await core.opendir(ROOT_ID);
    const list = await core.readdir(dh, 0, true, () => true);
    expect(list.map((e) => e.name.toString())).toEqual(['.', '..', 'bad', 'ok']);
    expect(list[2]!.nodeid).toBe(0);
    expect(list[2]!.attr.mode).toBe(0o100000);
    await expect(core.lookup(ROOT_ID, Buffer.from('bad'))).rejects.toMatchObject({ errno: 'EIO' });
  });

  it('prefetches ahead of sequential readers only', async () => {
    const data = Buffer.alloc(64 * 1024 * 1024, 1);
    const prefetches: [number, number][] = [];
    const src = Object.assign(new BufferReadAt('img', data), { prefetch: (o: number, l: number) => void prefetches.push([o, l]) });
    const file = new ReadAtFile(() => src, data.length, { mtimeSec: 0 }, 0o444);
    const core = new VfsCore(new LazyDir(async () => [{ name: Buffer.from('img'), node: file }]), { readahead: 2 });
    const r = await core.lookup(ROOT_ID, Buffer.from('img'));
    const fh = await core.open(r!.nodeid);
    // Random reads: no prefetch.
    for (const off of [5_000_000, 100, 40_000_000, 7]) await core.read(fh, off, 4096);
    expect(prefetches).toEqual([]);
    // Sequential reads: a window of 2 chunks (4 MiB hint) ahead, issued once per new range. The
    // first one starts within 1 MiB of where the last random read (at 7) ended, so it already
    // counts (see the split-read case below): the second read is the sequential run's second.
    for (let off = 0; off < 4 * 131072; off += 131072) await core.read(fh, off, 131072);
    expect(prefetches.length).toBeGreaterThan(0);
    expect(prefetches[0]).toEqual([2 * 131072, 8 * 1024 * 1024]);
    const end = prefetches.reduce((m, [o, l]) => Math.max(m, o + l), 0);
    expect(end).toBeLessThanOrEqual(4 * 131072 + 8 * 1024 * 1024);
    await core.release(fh);
    expect(core.openFileCount).toBe(0);
  });
});

describe('VfsCore drop-behind', () => {
  const MiB = 1024 * 1024;
  async function setup(size: number, dropBehindFileBytes: number | undefined) {
    const data = Buffer.alloc(size, 1);
    const forgets: [number, number][] = [];
    const src = Object.assign(new BufferReadAt('img', data), { forget: (o: number, l: number) => void forgets.push([o, l]) });
    const file = new ReadAtFile(() => src, data.length, { mtimeSec: 0 }, 0o444);
    const core = new VfsCore(new LazyDir(async () => [{ name: Buffer.from('img'), node: file }]), {
      readahead: 0,
      ...(dropBehindFileBytes !== undefined ? { dropBehindFileBytes } : {}),
    });
    const nodeid = (await core.lookup(ROOT_ID, Buffer.from('img')))!.nodeid;
    return { core, nodeid, forgets };
  }
  async function stream(core: VfsCore, fh: number, from: number, to: number, step = 128 * 1024): Promise<void> {
    for (let off = from; off < to; off += step) await core.read(fh, off, step);
  }

  it('tells a large file\'s source to forget what a sequential reader left a chunk behind', async () => {
    const { core, nodeid, forgets } = await setup(64 * MiB, 32 * MiB);
    const fh = await core.open(nodeid);
    await stream(core, fh, 0, 16 * MiB);
    expect(forgets.length).toBeGreaterThan(0);
    // Always the whole range behind, from the file's start; never within a chunk of the reader.
    for (const [o] of forgets) expect(o).toBe(0);
    const ends = forgets.map(([o, l]) => o + l);
    expect(ends).toEqual([...ends].sort((a, b) => a - b));
    expect(ends[ends.length - 1]).toBeLessThanOrEqual(16 * MiB - 128 * 1024 - 4 * MiB);
    expect(ends[ends.length - 1]).toBeGreaterThanOrEqual(16 * MiB - 128 * 1024 - 5 * MiB);
    // At most once per MiB of progress.
    for (let i = 1; i < ends.length; i++) expect(ends[i]! - ends[i - 1]!).toBeGreaterThanOrEqual(MiB);
    await core.release(fh);
  });

  it('counts a read split in two requests that arrive out of order as sequential', async () => {
    const { core, nodeid, forgets } = await setup(64 * MiB, 32 * MiB);
    const fh = await core.open(nodeid);
    // What the kernel makes of 1 MiB reads into a buffer that is not page-aligned.
    for (let at = 0; at < 16 * MiB; at += MiB) {
      const cut = at + MiB - 4096 + 16;
      await core.read(fh, cut, at + MiB - cut);
      await core.read(fh, at, cut - at);
    }
    expect(forgets.length).toBeGreaterThan(0);
    await core.release(fh);
  });

  it('leaves random readers, small files, mounts without the option and shared files alone', async () => {
    const big = await setup(64 * MiB, 32 * MiB);
    const fh = await big.core.open(big.nodeid);
    for (const off of [40 * MiB, 3 * MiB, 60 * MiB, 9 * MiB, 20 * MiB]) await big.core.read(fh, off, 4096);
    expect(big.forgets).toEqual([]);
    // Two handles on one file: the other may be reading the same chunks a little behind.
    const other = await big.core.open(big.nodeid);
    await stream(big.core, fh, 0, 16 * MiB);
    expect(big.forgets).toEqual([]);
    await big.core.release(other);
    await stream(big.core, fh, 16 * MiB, 24 * MiB);
    expect(big.forgets.length).toBeGreaterThan(0);
    await big.core.release(fh);

    const small = await setup(16 * MiB, 32 * MiB);
    const sfh = await small.core.open(small.nodeid);
    await stream(small.core, sfh, 0, 16 * MiB);
    expect(small.forgets).toEqual([]);

    const off = await setup(64 * MiB, undefined);
    const ofh = await off.core.open(off.nodeid);
    await stream(off.core, ofh, 0, 32 * MiB);
    expect(off.forgets).toEqual([]);
  });
});

describe('VfsCore READDIR without OPENDIR (zero-message opendir)', () => {
  const openDirs = (core: VfsCore): number => (core.statsSnapshot().vfs as { openDirs: number }).openDirs;
  /** Reads a listing as the kernel does: from `offset`, `per` entries per request, until an empty reply. */
  async function listUnopened(core: VfsCore, nodeid: number, per: number): Promise<string[]> {
    const names: string[] = [];
    for (let off = 0; ; ) {
      let n = 0;
      const got = await core.readdirUnopened(nodeid, off, true, () => n++ < per);
      if (got.length === 0) return names;
      names.push(...got.map((e) => e.name.toString('hex')));
      off += got.length;
    }
  }

  it('lists a directory in pieces by node id, as OPENDIR + READDIR would, and drops the state at the end', async () => {
    const core = new VfsCore(memoryTree().root);
    const dir = (await core.lookup(ROOT_ID, Buffer.from('dir')))!;
    const dh = await core.opendir(dir.nodeid);
    const viaHandle = (await core.readdir(dh, 0, false, () => true)).map((e) => e.name.toString('hex'));
    core.releasedir(dh);
    expect(viaHandle.length).toBe(5); // ".", "..", link1, sub, sym
    expect(await listUnopened(core, dir.nodeid, 2)).toEqual(viaHandle);
    expect(openDirs(core)).toBe(0);
    // Again after the end: a fresh listing.
    expect(await listUnopened(core, ROOT_ID, 3)).toEqual(await listUnopened(core, ROOT_ID, 100));
    expect(openDirs(core)).toBe(0);
  });

  it('serves two readers of one directory at different positions from one listing', async () => {
    const core = new VfsCore(memoryTree().root);
    const all = await listUnopened(core, ROOT_ID, 100);
    let n = 0;
    const a1 = await core.readdirUnopened(ROOT_ID, 0, true, () => n++ < 4);
    n = 0;
    const b1 = await core.readdirUnopened(ROOT_ID, 6, true, () => n++ < 3);
    expect(openDirs(core)).toBe(1);
    n = 0;
    const a2 = await core.readdirUnopened(ROOT_ID, 4, true, () => n++ < 2);
    expect([...a1, ...a2, ...b1].map((e) => e.name.toString('hex'))).toEqual(all.slice(0, 9));
  });

  it('keeps a bounded number of unfinished listings; a dropped one is listed again, unchanged', async () => {
    // 300 directories, each read only partly (a reader that stopped early, like `ls | head`).
    const dirs = Array.from({ length: 300 }, (_, i) => [`d${String(i).padStart(3, '0')}`, mem({ children: [['a', mem({ data: Buffer.from('x') })], ['b', mem({ data: Buffer.from('y') })]] })] as [string, MemNode]);
    const core = new VfsCore(mem({ children: dirs }));
    const ids: number[] = [];
    for (const [name] of dirs) {
      const id = (await core.lookup(ROOT_ID, Buffer.from(name)))!.nodeid;
      ids.push(id);
      let n = 0;
      expect(await core.readdirUnopened(id, 0, true, () => n++ < 3)).toHaveLength(3);
    }
    expect(openDirs(core)).toBe(256);
    // The first directories' listings were dropped: continuing them still gives the right entry.
    const rest = await core.readdirUnopened(ids[0]!, 3, true, () => true);
    expect(rest.map((e) => e.name.toString())).toEqual(['b']);
    expect(await core.readdirUnopened(ids[0]!, 4, true, () => true)).toEqual([]);
  });

  it('drops listings left unfinished for 10 s when another directory is first read', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const core = new VfsCore(memoryTree().root);
      const dir = (await core.lookup(ROOT_ID, Buffer.from('dir')))!.nodeid;
      const sub = (await core.lookup(dir, Buffer.from('sub')))!.nodeid;
      let n = 0;
      await core.readdirUnopened(ROOT_ID, 0, true, () => n++ < 3);
      vi.advanceTimersByTime(6_000);
      n = 0;
      await core.readdirUnopened(dir, 0, true, () => n++ < 3);
      expect(openDirs(core)).toBe(2);
      vi.advanceTimersByTime(5_000); // the root's listing: 11 s unused; dir's: 5 s
      n = 0;
      await core.readdirUnopened(sub, 0, true, () => n++ < 1);
      expect(openDirs(core)).toBe(2); // dir and sub
      // The root's reader comes back after all: a fresh listing, the same entries.
      const all = await listUnopened(core, ROOT_ID, 100);
      n = 0;
      const rest = await core.readdirUnopened(ROOT_ID, 3, true, () => n++ < 100);
      expect(rest.map((e) => e.name.toString('hex'))).toEqual(all.slice(3));
    } finally {
      vi.useRealTimers();
    }
  });

  it('reports an unknown node id as ENOENT and a file as ENOTDIR', async () => {
    const core = new VfsCore(memoryTree().root);
    await expect(core.readdirUnopened(987654, 0, true, () => true)).rejects.toMatchObject({ errno: 'ENOENT' });
    const file = (await core.lookup(ROOT_ID, Buffer.from('hello.txt')))!;
    await expect(core.readdirUnopened(file.nodeid, 0, true, () => true)).rejects.toMatchObject({ errno: 'ENOTDIR' });
    expect(openDirs(core)).toBe(0);
  });
});
