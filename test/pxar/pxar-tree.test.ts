import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { FileReadAt, type ReadAt } from '../../src/io/read-at.js';
import { openPxarTree, type PxarTreeOptions } from '../../src/vfs/pxar-tree.js';
import type { VfsNode } from '../../src/vfs/types.js';
import { pxarDir } from '../helpers/paths.js';
import { loadListing, pathBytes, type ListingEntry } from './listing.js';

async function walk(root: VfsNode, path: Buffer): Promise<VfsNode | undefined> {
  let cur: VfsNode | undefined = root;
  for (const c of path.toString('latin1').split('/').filter((x) => x !== '')) {
    cur = await cur!.lookup!(Buffer.from(c, 'latin1'));
    if (cur === undefined) return undefined;
  }
  return cur;
}

async function contents(n: VfsNode, size: number): Promise<Buffer> {
  const h = await n.open!();
  const parts: Buffer[] = [];
  for (let off = 0; off < size; off += 100_000) parts.push(await h.read(off, 100_000));
  expect((await h.read(size, 10)).length).toBe(0);
  await h.release();
  return Buffer.concat(parts);
}

const KINDS: Record<string, string> = { file: 'file', hardlink: 'file', directory: 'directory', symlink: 'symlink', chardev: 'chardev', blockdev: 'blockdev', fifo: 'fifo', socket: 'socket' };

for (const which of ['v1', 'v2'] as const) {
  for (const nlink of ['auto', 'off'] as const) {
    describe(`pxar VFS nodes over archive-${which} (nlink ${nlink})`, () => {
      const files: FileReadAt[] = [];
      let archive: ReadAt;
      let payload: ReadAt | undefined;
      beforeAll(async () => {
        archive = await FileReadAt.open(join(pxarDir, which === 'v1' ? 'archive-v1.pxar' : 'archive-v2.mpxar'));
        files.push(archive as FileReadAt);
        if (which === 'v2') {
          payload = await FileReadAt.open(join(pxarDir, 'archive-v2.ppxar'));
          files.push(payload as FileReadAt);
        }
      });
      afterAll(async () => {
        for (const f of files) await f.close();
      });

      it('serves every listed entry with the listed metadata', async () => {
        const opts: PxarTreeOptions = { nlink };
        const root = await openPxarTree(archive, payload, opts);
        const listing = loadListing(which);
        const byPath = new Map<string, ListingEntry>(listing.map((e) => [e.path_hex, e]));
        // Expected link counts: hardlink names per target path.
        const links = new Map<string, number>();
        for (const e of listing.filter((x) => x.kind === 'hardlink')) {
          const t = Buffer.concat([Buffer.from('/'), Buffer.from(e.hardlink_target!.replace(/\0$/, ''))]).toString('hex');
          links.set(t, (links.get(t) ?? 0) + 1);
        }
        const inos = new Map<number, string>();
        for (const exp of listing) {
          const node = await walk(root, pathBytes(exp));
          expect(node, exp.path).toBeDefined();
          const st = await node!.stat();
          expect(node!.kind, exp.path).toBe(KINDS[exp.kind]);
          const meta = exp.kind === 'hardlink' ? byPath.get(Buffer.concat([Buffer.from('/'), Buffer.from(exp.hardlink_target!.replace(/\0$/, ''))]).toString('hex'))! : exp;
          expect(st.mode, exp.path).toBe(meta.mode_dec);
          expect([st.uid, st.gid], exp.path).toEqual([meta.uid, meta.gid]);
          expect([st.mtimeSec, st.mtimeNsec], exp.path).toEqual([meta.mtime!.secs, meta.mtime!.nanos]);
          if (meta.kind === 'file') {
            expect(st.size, exp.path).toBe(meta.size);
            expect(st.blocks).toBe(Math.ceil(meta.size! / 512));
            const data = await contents(node!, meta.size!);
            expect(createHash('sha256').update(data).digest('hex'), exp.path).toBe(meta.sha256);
            const targetKey = meta.path_hex;
            const want = nlink === 'off' ? (exp.kind === 'hardlink' ? 2 : 1) : 1 + (links.get(targetKey) ?? 0);
            expect(st.nlink, exp.path).toBe(want);
            // Hardlinks share the target's inode number.
            const seen = inos.get(st.ino);
            if (seen !== undefined) expect(seen, exp.path).toBe(targetKey);
            else inos.set(st.ino, targetKey);
          } else {
            expect(inos.has(st.ino), `${exp.path} has a unique inode`).toBe(false);
            inos.set(st.ino, exp.path_hex);
          }
          if (exp.kind === 'symlink') {
            const t = await node!.readlink!();
            expect(t.toString(), exp.path).toBe(exp.symlink_target!.replace(/\0$/, ''));
            expect(st.size).toBe(t.length);
          }
          if (exp.kind === 'chardev' || exp.kind === 'blockdev') {
            const maj = exp.device_major!;
            const min = exp.device_minor!;
            expect(st.rdev, exp.path).toBe(((maj & 0xfff) << 8) | (min & 0xff) | ((min & ~0xff) << 12));
          } else {
            expect(st.rdev).toBe(0);
          }
          const names = (await node!.listxattr()).map((b) => b.toString());
          for (const x of meta.xattrs ?? []) {
            expect(names, exp.path).toContain(x.name);
            expect((await node!.getxattr(Buffer.from(x.name)))!.toString('hex'), exp.path).toBe(x.value_hex);
          }
          if (meta.fcaps_hex !== undefined) {
            expect((await node!.getxattr(Buffer.from('security.capability')))!.toString('hex')).toBe(meta.fcaps_hex);
          }
          expect(names.includes('system.posix_acl_default'), exp.path).toBe((meta.acl?.default ?? null) !== null);
          expect(await node!.getxattr(Buffer.from('user.nonexistent'))).toBeUndefined();
        }
        expect((await root.stat()).ino).toBe(1);
      });

      it('forget() on a file reaches its source as the range of that file\'s own bytes', async () => {
        const forgets: [ReadAt, number, number][] = [];
        const spy = (src: ReadAt): ReadAt =>
          Object.assign(Object.create(src) as ReadAt, { forget: (o: number, l: number) => void forgets.push([src, o, l]) });
        const root = await openPxarTree(spy(archive), payload === undefined ? undefined : spy(payload), { nlink });
        const listing = loadListing(which).filter((e) => e.kind === 'file' && e.size! > 2);
        expect(listing.length).toBeGreaterThan(0);
        for (const exp of listing) {
          const h = await (await walk(root, pathBytes(exp)))!.open!();
          const size = exp.size!;
          forgets.length = 0;
          h.forget!(1, size); // clipped to the file: bytes 1..size
          h.forget!(size, 10); // past the end: nothing
          await new Promise((r) => setImmediate(r));
          expect(forgets.length, exp.path).toBe(1);
          const [src, o, l] = forgets[0]!;
          expect(l, exp.path).toBe(size - 1);
          // The range holds exactly the file's bytes from offset 1.
          const bytes = await src.readAt(o - 1, l + 1);
          expect(createHash('sha256').update(bytes).digest('hex'), exp.path).toBe(exp.sha256);
          await h.release();
        }
      });

      it('lists directories sorted by name bytes, with the listed children', async () => {
        const root = await openPxarTree(archive, payload, { nlink });
        const listing = loadListing(which);
        for (const exp of listing.filter((x) => x.kind === 'directory')) {
          const node = await walk(root, pathBytes(exp));
          const kids = await node!.readdir!();
          const names = kids.map((k) => k.name);
          const sorted = [...names].sort(Buffer.compare);
          expect(names).toEqual(sorted);
          const prefix = exp.path === '/' ? '2f' : exp.path_hex + '2f';
          const want = listing.filter((x) => x.path_hex.length > prefix.length && x.path_hex.startsWith(prefix) && !Buffer.from(x.path_hex.slice(prefix.length), 'hex').includes(0x2f)).length;
          expect(kids.length, exp.path).toBe(want);
          expect(await node!.lookup!(Buffer.from('no-such-name'))).toBeUndefined();
        }
      });
    });
  }
}

describe('pxar VFS: the eager hardlink scan', () => {
  /** The v2 metadata stream, counting the reads made through it. */
  async function counted(): Promise<{ src: ReadAt; reads: () => number; close: () => Promise<void> }> {
    const f = await FileReadAt.open(join(pxarDir, 'archive-v2.mpxar'));
    let n = 0;
    const src = Object.assign(Object.create(f) as ReadAt, {
      readAt: (o: number, l: number) => {
        n++;
        return f.readAt(o, l);
      },
    });
    return { src, reads: () => n, close: () => f.close() };
  }
  const ticks = async (k: number): Promise<void> => {
    for (let i = 0; i < k; i++) await new Promise((r) => setImmediate(r));
  };

  it('starts on its own after opening, or only once nlinkScanAfter settles', async () => {
    const free = await counted();
    await openPxarTree(free.src, undefined, { nlink: 'scan', nlinkScanEagerly: true });
    const afterOpen = free.reads();
    await ticks(20);
    expect(free.reads()).toBeGreaterThan(afterOpen); // scanned unprompted
    await free.close();

    const gated = await counted();
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    await openPxarTree(gated.src, undefined, { nlink: 'scan', nlinkScanEagerly: true, nlinkScanAfter: gate });
    const before = gated.reads();
    await ticks(20);
    expect(gated.reads()).toBe(before); // waits for the gate (a mount: mounted, decode threads up)
    open();
    await ticks(20);
    expect(gated.reads()).toBeGreaterThan(before);
    await gated.close();
  });
});

describe('pxar VFS without a payload stream', () => {
  it('browses a split archive from the .mpxar alone and refuses to open files', async () => {
    const m = await FileReadAt.open(join(pxarDir, 'archive-v2.mpxar'));
    const root: VfsNode = await openPxarTree(m);
    const f = await root.lookup!(Buffer.from('hello.txt'));
    expect((await f!.stat()).size).toBe(14);
    await expect(f!.open!()).rejects.toThrow(/payload stream/);
    await m.close();
  });
});

describe('pxar VFS limits', () => {
  it('refuses to descend deeper than maxDepth (typed LimitError), and serves everything above it', async () => {
    const { buildV1 } = await import('./build.js');
    const { BufferReadAt } = await import('../../src/io/read-at.js');
    const { LimitError } = await import('../../src/errors.js');
    type Dir = { kind: 'dir'; name: string; children: Dir[] };
    let tree: Dir = { kind: 'dir', name: 'd', children: [] };
    for (let i = 0; i < 40; i++) tree = { kind: 'dir', name: 'd', children: [tree] };
    const root = await openPxarTree(new BufferReadAt('deep.pxar', buildV1({ kind: 'dir', name: '', children: [tree] })), undefined, { maxDepth: 30 });
    let node: VfsNode = root;
    for (let depth = 1; depth <= 30; depth++) node = (await node.lookup!(Buffer.from('d')))!;
    expect(node.kind).toBe('directory');
    await expect(node.lookup!(Buffer.from('d'))).rejects.toBeInstanceOf(LimitError);
    await expect(node.readdir!()).rejects.toBeInstanceOf(LimitError);
  });

  it('a damaged archive still answers stat (nlink without the scan) and fails where the damage is', async () => {
    const { readFileSync } = await import('node:fs');
    const { BufferReadAt } = await import('../../src/io/read-at.js');
    const { PbsfsError } = await import('../../src/errors.js');
    const bytes = Buffer.from(readFileSync(join(pxarDir, 'archive-v2.mpxar')));
    const root: VfsNode = await openPxarTree(new BufferReadAt('x.mpxar', bytes));
    const link1 = (await (await root.lookup!(Buffer.from('hardlinks')))!.lookup!(Buffer.from('link1')))!;
    // Damage the FILENAME item of /special/blockdev (after the tree was opened, before any stat).
    const fnType = Buffer.alloc(8);
    fnType.writeBigUInt64LE(0x16701121063917b3n);
    const at = bytes.lastIndexOf(fnType, bytes.indexOf(Buffer.from('blockdev\0')));
    expect(at).toBeGreaterThan(0);
    bytes.writeBigUInt64LE(1n, at);
    // The hardlink scan fails, so link1 reports 1 instead of its 3 names; stat still works.
    expect((await link1.stat()).nlink).toBe(1);
    const fresh: VfsNode = await openPxarTree(new BufferReadAt('x.mpxar', bytes));
    await expect(fresh.lookup!(Buffer.from('special'))).rejects.toBeInstanceOf(PbsfsError);
    expect((await fresh.lookup!(Buffer.from('hello.txt')))!.kind).toBe('file');
  });
});
