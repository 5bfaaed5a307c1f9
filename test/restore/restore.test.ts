import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { dir, type DirectoryResult } from 'tmp-promise';
import { IoError } from '../../src/errors.js';
import { BufferReadAt, FileReadAt, type ReadAt } from '../../src/io/read-at.js';
import { restorePxar } from '../../src/restore/restore.js';
import { pxarDir } from '../helpers/paths.js';
import { buildV1 } from '../pxar/build.js';
import { RICH_V1 } from '../pxar/spec-examples.js';
import { loadListing } from '../pxar/listing.js';
import { compareTree } from './compare.js';

const isRoot = process.getuid?.() === 0;
const temps: DirectoryResult[] = [];
async function tempDir(): Promise<string> {
  const t = await dir({ unsafeCleanup: true });
  temps.push(t);
  return t.path;
}
afterEach(async () => {
  for (const t of temps.splice(0)) await t.cleanup();
});

async function open(which: 'v1' | 'v2'): Promise<{ archive: ReadAt; payload: ReadAt | undefined; close: () => Promise<void> }> {
  if (which === 'v1') {
    const a = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
    return { archive: a, payload: undefined, close: () => a.close() };
  }
  const m = await FileReadAt.open(join(pxarDir, 'archive-v2.mpxar'));
  const p = await FileReadAt.open(join(pxarDir, 'archive-v2.ppxar'));
  return { archive: m, payload: p, close: async () => (await m.close(), await p.close()) };
}

describe('restore', () => {
  for (const which of ['v1', 'v2'] as const) {
    it(`restores archive-${which} completely and exactly`, async () => {
      const t = await tempDir();
      const target = join(t, 'out');
      const { archive, payload, close } = await open(which);
      const progress: number[] = [];
      const s = await restorePxar(archive, payload, target, { devices: true, onProgress: (p) => progress.push(p.position) });
      await close();
      expect(s.timeMethod).not.toBe('node');
      expect(s.warnings).toEqual([]);
      const listing = loadListing(which);
      expect(s.files).toBe(listing.filter((e) => e.kind === 'file').length);
      expect(s.hardlinks).toBe(listing.filter((e) => e.kind === 'hardlink').length);
      expect(s.bytes).toBe(listing.filter((e) => e.kind === 'file').reduce((a, e) => a + e.size!, 0));
      expect(progress.length).toBeGreaterThan(10);
      expect(progress[progress.length - 1]).toBeGreaterThan(0);
      if (!isRoot) return; // owners and devices need root; the suite runs as root.
      compareTree(target, which, t);
    });
  }

  it('restores one subtree; a hardlink whose target lies outside it becomes a copy', async () => {
    const t = await tempDir();
    const { archive, payload, close } = await open('v2');
    const s = await restorePxar(archive, payload, t, { path: '/hardlinks/sub' });
    await close();
    expect(readdirSync(t)).toEqual(['sub']);
    const listing = loadListing('v2');
    const link1 = listing.find((e) => e.path === '/hardlinks/link1')!;
    const data = readFileSync(join(t, 'sub', 'link2'));
    expect(createHash('sha256').update(data).digest('hex')).toBe(link1.sha256);
    const sub = listing.find((e) => e.path === '/hardlinks/sub')!;
    const st = lstatSync(join(t, 'sub'), { bigint: true });
    expect(st.mtimeNs).toBe(BigInt(sub.mtime!.secs) * 1_000_000_000n + BigInt(sub.mtime!.nanos));
    expect(s.files).toBe(1);
  });

  it('restores a single file with a pre-1970 nanosecond mtime', async () => {
    const t = await tempDir();
    const { archive, payload, close } = await open('v1');
    await restorePxar(archive, payload, t, { path: 'hello.txt' });
    await close();
    const exp = loadListing('v1').find((e) => e.path === '/hello.txt')!;
    const st = lstatSync(join(t, 'hello.txt'), { bigint: true });
    expect(st.mtimeNs).toBe(BigInt(exp.mtime!.secs) * 1_000_000_000n + BigInt(exp.mtime!.nanos));
    expect(readFileSync(join(t, 'hello.txt')).toString('hex')).toBe(exp.content_hex);
  });

  it('never replaces existing files', async () => {
    const t = await tempDir();
    const { archive, payload, close } = await open('v1');
    await restorePxar(archive, payload, t, { path: '/hello.txt' });
    await expect(restorePxar(archive, payload, t, { path: '/hello.txt' })).rejects.toBeInstanceOf(IoError);
    await close();
  });

  it('never writes through a symlink the archive planted (duplicate names)', async () => {
    const t = await tempDir();
    const outside = await tempDir();
    const bytes = buildV1({
      kind: 'dir',
      name: '',
      children: [
        { kind: 'symlink', name: 'a', target: outside },
        { kind: 'dir', name: 'a', children: [{ kind: 'file', name: 'x', data: 'pwned' }] },
        { kind: 'file', name: 'a', data: 'pwned' },
      ],
    });
    const target = join(t, 'out');
    const err = await restorePxar(new BufferReadAt('evil.pxar', bytes), undefined, target).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IoError);
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(target, 'a')).isSymbolicLink()).toBe(true);
    expect(existsSync(join(outside, 'x'))).toBe(false);
  });

  it('makes hardlinks by archive offset, never by the stored path', async () => {
    // §15.3 with the hardlink's stored path "a.txt" replaced by "../.." (same length).
    const bytes = Buffer.from(RICH_V1);
    const at = bytes.indexOf(Buffer.from('a.txt\0'), 0x1ab);
    bytes.write('../..\0', at, 'latin1');
    const t = await tempDir();
    const target = join(t, 'out');
    const s = await restorePxar(new BufferReadAt('evil-link.pxar', bytes), undefined, target);
    expect(s.hardlinks).toBe(1);
    expect(lstatSync(join(target, 'h')).ino).toBe(lstatSync(join(target, 'a.txt')).ino);
    expect(readFileSync(join(target, 'h')).toString()).toBe('hello');
    expect(readdirSync(t)).toEqual(['out']);
  });

  it('keeps all-zero blocks as holes', async () => {
    const t = await tempDir();
    const { archive, payload, close } = await open('v1');
    await restorePxar(archive, payload, t, { path: '/sparse-zeros.img' });
    await close();
    const exp = loadListing('v1').find((e) => e.path === '/sparse-zeros.img')!;
    const st = lstatSync(join(t, 'sparse-zeros.img'));
    expect(st.size).toBe(exp.size);
    expect(st.blocks * 512).toBeLessThan(exp.size! / 2);
    expect(createHash('sha256').update(readFileSync(join(t, 'sparse-zeros.img'))).digest('hex')).toBe(exp.sha256);
  });
});
