/**
 * Full circle through the kernel: a tree written by `pbsfs backup` (unified and split) and
 * mounted with `pbsfs mount` looks exactly like the source (names, kinds, modes, owners, ns
 * mtimes, contents, symlinks, hardlinks, devices, xattrs). Needs FUSE (skipped without it).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, symlinkSync, utimesSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { cliPath, keysDir } from '../helpers/paths.js';
import { modelFromFs } from './tree-model.js';
import { haveGetfattr } from '../../src/writer/fs-attrs.js';

const KEYFILE = join(keysDir, 'key-none.json');
const canMount = existsSync('/dev/fuse') && process.getuid?.() === 0;

function pbsfs(args: string[]) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('backup, then mount', () => {
  for (const split of [false, true]) {
    it(`the mounted ${split ? 'split' : 'unified'} archive equals the source tree`, async () => {
      if (!canMount) {
        expect(canMount).toBe(false);
        return;
      }
      await withDir(
        async ({ path: tmp }) => {
          const src = join(tmp, 'src');
          mkdirSync(join(src, 'd', 'e'), { recursive: true });
          writeFileSync(join(src, 'd', 'e', 'f.txt'), 'deep\n');
          writeFileSync(join(src, 'big.bin'), Buffer.alloc(300_000, 7));
          writeFileSync(join(src, 'empty'), '');
          writeFileSync(join(src, Buffer.from([0x6e, 0xff, 0x0a]).toString('latin1')), 'odd name');
          symlinkSync('d/e/f.txt', join(src, 'sym'));
          linkSync(join(src, 'd', 'e', 'f.txt'), join(src, 'hard'));
          spawnSync('mkfifo', [join(src, 'fifo')]);
          spawnSync('mknod', [join(src, 'null'), 'c', '1', '3']);
          if (haveGetfattr()) spawnSync('setfattr', ['-n', 'user.note', '-v', 'hi', join(src, 'd')]);
          utimesSync(join(src, 'empty'), -1.5, 1234567890.123456);
          const repo = join(tmp, 'store');
          const b = pbsfs(['--repository', repo, '--keyfile', KEYFILE, '--output-format', 'json', 'backup', src, '--backup-id', 'm', '--lazy-chunk-dirs', ...(split ? ['--split'] : [])]);
          expect(b.stderr).toBe('');
          expect(b.status).toBe(0);
          const snapshot = (JSON.parse(b.stdout) as { snapshot: string }).snapshot;
          const mp = join(tmp, 'mnt');
          mkdirSync(mp);
          const m = pbsfs(['--repository', repo, '--keyfile', KEYFILE, 'mount', snapshot, 'root.pxar', mp]);
          expect(m.stderr).toBe('');
          expect(m.status).toBe(0);
          try {
            const want = modelFromFs(src, haveGetfattr());
            const got = modelFromFs(mp, haveGetfattr());
            // the mount root is the archive root: same metadata as the source directory
            expect(got).toEqual(want);
            expect(readFileSync(join(mp, 'hard'), 'utf8')).toBe('deep\n');
          } finally {
            expect(pbsfs(['umount', mp]).status).toBe(0);
          }
        },
        { unsafeCleanup: true },
      );
    });
  }
});
