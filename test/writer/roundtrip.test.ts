/**
 * Random trees -> runBackup -> our datastore + pxar readers: same entries, metadata, contents
 * and links, for every crypt mode, unified and split archives, and xattrs when setfattr exists.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, symlinkSync, linkSync, utimesSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { CryptConfig } from '../../src/crypto/crypt-config.js';
import type { CryptMode } from '../../src/manifest/manifest.js';
import { runBackup } from '../../src/writer/backup.js';
import { haveGetfattr } from '../../src/writer/fs-attrs.js';
import { modelFromFs, modelFromSnapshot } from './tree-model.js';

const KEY = CryptConfig.fromKey(Buffer.alloc(32, 7));
const haveSetfattr = haveGetfattr() && spawnSync('setfattr', ['--version']).status === 0;
const haveMkfifo = spawnSync('mkfifo', ['--version']).status === 0;

interface FileSpec { kind: 'file'; name: Buffer; size: number; seed: number; xattr?: [string, Buffer] }
interface DirSpec { kind: 'dir'; name: Buffer; children: NodeSpec[] }
interface LinkSpec { kind: 'symlink'; name: Buffer; target: Buffer }
interface FifoSpec { kind: 'fifo'; name: Buffer }
interface HardSpec { kind: 'hardlink'; name: Buffer }
type NodeSpec = FileSpec | DirSpec | LinkSpec | FifoSpec | HardSpec;

const nameArb = fc
  .uint8Array({ minLength: 1, maxLength: 12 })
  .map((a) => Buffer.from(a.map((b) => (b === 0 || b === 0x2f ? 0x61 : b))))
  .filter((b) => !(b.length === 1 && b[0] === 0x2e) && !(b.length === 2 && b[0] === 0x2e && b[1] === 0x2e));
// Sizes around 0, small, and straddling 64 KiB chunk boundaries (the test chunk size).
const sizeArb = fc.oneof(
  fc.constantFrom(0, 1, 63, 64, 65, 4095, 16383, 16384, 65535, 65536, 65537),
  fc.integer({ min: 0, max: 300_000 }),
);
const leaf: fc.Arbitrary<NodeSpec> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('file' as const), name: nameArb, size: sizeArb, seed: fc.integer(), xattr: fc.option(fc.tuple(fc.constantFrom('user.a', 'user.comment', 'user.z'), fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u))), { nil: undefined }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('symlink' as const), name: nameArb, target: fc.uint8Array({ minLength: 1, maxLength: 60 }).map((u) => Buffer.from(u.map((b) => (b === 0 ? 0x78 : b)))) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fifo' as const), name: nameArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('hardlink' as const), name: nameArb }) },
);
const treeArb = fc.letrec<{ dir: DirSpec; node: NodeSpec }>((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('dir')),
  dir: fc.record({ kind: fc.constant('dir' as const), name: nameArb, children: fc.array(tie('node'), { maxLength: 6 }) }),
})).dir;

function content(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed | 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b[i] = (i & 1024) ? 0x41 + (i % 7) : x & 0xff; // half text-like, half random
  }
  return b;
}

/** Path bytes that survive a trip through a UTF-8 string (needed for subprocess arguments). */
function asArg(p: Buffer): string | undefined {
  const s = p.toString('utf8');
  return Buffer.from(s, 'utf8').equals(p) ? s : undefined;
}

/** Writes the spec; hardlinks point at the first regular file created (if any). */
function materialise(dir: Buffer, spec: DirSpec, firstFile: { path?: Buffer }): void {
  const used = new Set<string>();
  for (const c of spec.children) {
    const key = c.name.toString('hex');
    if (used.has(key)) continue;
    used.add(key);
    const p = Buffer.concat([dir, Buffer.from('/'), c.name]);
    const arg = asArg(p);
    switch (c.kind) {
      case 'dir':
        mkdirSync(p);
        materialise(p, c, firstFile);
        break;
      case 'file':
        writeFileSync(p, content(c.size, c.seed));
        if (c.xattr && haveSetfattr && arg !== undefined) {
          expect(spawnSync('setfattr', ['-n', c.xattr[0], '-v', '0x' + c.xattr[1].toString('hex'), '--', arg]).status).toBe(0);
        }
        utimesSync(p, 1_600_000_000 + (c.seed % 1000), 1_600_000_000 + (c.seed % 100000) + 0.123456789);
        firstFile.path ??= p;
        break;
      case 'symlink':
        symlinkSync(c.target, p);
        break;
      case 'fifo':
        if (haveMkfifo && arg !== undefined) spawnSync('mkfifo', ['--', arg]);
        break;
      case 'hardlink':
        if (firstFile.path !== undefined) linkSync(firstFile.path, p);
        break;
    }
  }
}

describe('backup round trip through our readers', () => {
  it('random trees, every crypt mode, unified and split', async () => {
    const modes: CryptMode[] = ['none', 'sign-only', 'encrypt'];
    let run = 0;
    await fc.assert(
      fc.asyncProperty(treeArb, fc.boolean(), async (tree, split) => {
        const mode = modes[run++ % 3]!;
        await withDir(async ({ path: tmp }) => {
          const src = join(tmp, 'src');
          mkdirSync(src);
          materialise(Buffer.from(src), tree, {});
          const repo = join(tmp, 'store');
          const r = runBackup({
            repository: repo,
            backupType: 'host',
            backupId: 'rt',
            backupTime: 1_700_000_000 + run,
            source: src,
            split,
            chunkSize: 65536,
            cryptMode: mode,
            ...(mode !== 'none' ? { crypt: KEY } : {}),
            prefixDirs: 'lazy',
          });
          expect(r.manifest.files.map((f) => f.cryptMode).every((m) => m === mode)).toBe(true);
          expect(r.manifest.signature === null).toBe(mode === 'none');
          const want = modelFromFs(src, haveSetfattr);
          const got = await modelFromSnapshot(repo, r.snapshot, mode === 'encrypt' ? KEY : undefined);
          expect(got).toEqual(want);
        }, { unsafeCleanup: true });
      }),
      { numRuns: 16 },
    );
  });

  it('records user xattrs on files and directories (when setfattr exists)', async () => {
    if (!haveSetfattr) {
      expect(haveSetfattr).toBe(false);
      return;
    }
    await withDir(async ({ path: tmp }) => {
      const src = join(tmp, 'src');
      mkdirSync(join(src, 'd'), { recursive: true });
      writeFileSync(join(src, 'd', 'f'), 'x');
      expect(spawnSync('setfattr', ['-n', 'user.one', '-v', 'v1', join(src, 'd', 'f')]).status).toBe(0);
      expect(spawnSync('setfattr', ['-n', 'user.dir', '-v', '0x00ff', join(src, 'd')]).status).toBe(0);
      const r = runBackup({ repository: join(tmp, 's'), backupType: 'host', backupId: 'x', source: src, prefixDirs: 'lazy' });
      const got = await modelFromSnapshot(join(tmp, 's'), r.snapshot, undefined);
      expect(got.find((e) => e.path === Buffer.from('d/f').toString('hex'))?.xattrs).toEqual(['user.one=7631']);
      expect(got.find((e) => e.path === Buffer.from('d').toString('hex'))?.xattrs).toEqual(['user.dir=00ff']);
      expect(r.attrsRecorded).toBe(true);
    }, { unsafeCleanup: true });
  });

  it('no half snapshot is visible: only the final directory remains', async () => {
    await withDir(async ({ path: tmp }) => {
      const src = join(tmp, 'src');
      mkdirSync(src);
      writeFileSync(join(src, 'a'), 'a');
      const repo = join(tmp, 's');
      const r = runBackup({ repository: repo, backupType: 'ct', backupId: '101', backupTime: 1_700_000_000, source: src, prefixDirs: 'lazy' });
      expect(readdirSync(join(repo, 'ct', '101')).sort()).toEqual(['2023-11-14T22:13:20Z', 'owner']);
      expect(r.snapshot).toBe('ct/101/2023-11-14T22:13:20Z');
      expect(existsSync(join(repo, '.lock'))).toBe(true);
    }, { unsafeCleanup: true });
  });

  it('does not descend into other filesystems unless asked (mount points stay empty)', async () => {
    await withDir(async ({ path: tmp }) => {
      const src = join(tmp, 'src');
      mkdirSync(join(src, 'mnt'), { recursive: true });
      writeFileSync(join(src, 'a'), 'a');
      const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'pbsfs-writer-test', join(src, 'mnt')]);
      if (m.status !== 0) {
        // needs root and mount(8); nothing to check without a second filesystem
        expect(m.status).not.toBe(0);
        return;
      }
      try {
        writeFileSync(join(src, 'mnt', 'inside'), 'other fs');
        const one = runBackup({ repository: join(tmp, 's'), backupType: 'host', backupId: 'm', backupTime: 1_700_000_000, source: src, prefixDirs: 'lazy' });
        const all = runBackup({ repository: join(tmp, 's'), backupType: 'host', backupId: 'm', backupTime: 1_700_000_001, source: src, prefixDirs: 'lazy', allFileSystems: true });
        const hex = (p: string) => Buffer.from(p).toString('hex');
        const a = await modelFromSnapshot(join(tmp, 's'), one.snapshot, undefined);
        const b = await modelFromSnapshot(join(tmp, 's'), all.snapshot, undefined);
        expect(a.map((e) => e.path)).toEqual(['', hex('a'), hex('mnt')]);
        expect(b.map((e) => e.path)).toEqual(['', hex('a'), hex('mnt'), hex('mnt/inside')]);
      } finally {
        spawnSync('umount', [join(src, 'mnt')]);
      }
    }, { unsafeCleanup: true });
  });

  it('leaves out a datastore that lies inside the backup source', async () => {
    await withDir(async ({ path: tmp }) => {
      writeFileSync(join(tmp, 'a'), 'a');
      const warnings: string[] = [];
      const r = runBackup({ repository: join(tmp, 'store'), backupType: 'host', backupId: 'self', source: tmp, prefixDirs: 'lazy', onWarning: (w) => warnings.push(w) });
      const got = await modelFromSnapshot(join(tmp, 'store'), r.snapshot, undefined);
      expect(got.map((e) => e.path)).toEqual(['', Buffer.from('a').toString('hex')]);
      expect(warnings.join('\n')).toMatch(/datastore being written/);
    }, { unsafeCleanup: true });
  });
});
