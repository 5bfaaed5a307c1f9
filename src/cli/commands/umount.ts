/**
 * `pbsfs umount MOUNTPOINT`: unmounts a pbsfs (or any FUSE) mount with fusermount -u. A mount
 * whose process was killed (stat fails with ENOTCONN) is detached lazily (fusermount -uz). A busy
 * mount (files open, or a shell's cwd inside) is left alone with a clear message, unless --lazy.
 */
import type { Command } from 'commander';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { findMount, kernelUnmount } from '../../../native-shims/fuse.js';
import { IoError, NotFoundError, UsageError } from '../../errors.js';
import { action } from '../context.js';

function isStale(path: string): boolean {
  try {
    statSync(path);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

export function register(program: Command): void {
  program
    .command('umount')
    .description('unmount a pbsfs mount (also a stale one left by a killed process)')
    .argument('<mountpoint>')
    .option('--lazy', 'detach now even if files are open (the tree goes away once they are closed)')
    .action(
      action(async (mountpoint: string, opts: { lazy?: boolean }) => {
        const abs = resolve(mountpoint);
        const m = findMount(abs);
        if (m === undefined) {
          if (isStale(abs)) {
            // Not in our mount table view but dead: still try the lazy way.
            const r = await kernelUnmount(abs, true);
            if (r.result === 'unmounted') return;
          }
          throw new NotFoundError('not a mount point', { file: abs });
        }
        if (!m.fstype.startsWith('fuse')) throw new UsageError(`not a FUSE mount (${m.fstype})`, { file: abs });
        const stale = isStale(abs);
        const r = await kernelUnmount(abs, stale || Boolean(opts.lazy));
        if (r.result === 'unmounted') return;
        if (r.result === 'busy') {
          throw new IoError('mount point is busy: files are open there (or a process has its working directory inside); close them and retry, or use --lazy', {
            file: abs,
          });
        }
        throw new IoError(`cannot unmount: ${r.message}`, { file: abs });
      }),
    );
}
