/**
 * Mounting a VfsCore: checks the mount point, opens /dev/fuse, starts the session, attaches it
 * with mount(8) and waits until the kernel's INIT has been answered (from then on the mount
 * answers requests). `unmount()` detaches it; `done` settles when the kernel ends the session.
 */
import { opendirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { IoError, NotFoundError, UsageError } from '../errors.js';
import { closeFuseDevice, findMount, kernelMount, kernelUnmount, openFuseDevice, setReadAheadKb, FuseSetupError } from '../../native-shims/fuse.js';
import { fusermountMount } from '../../native-shims/fusermount.js';
import type { VfsCore } from '../vfs/core.js';
import { FuseAdapter } from './adapter.js';
import { FuseSession } from './session.js';

export interface MountOptions {
  allowOther?: boolean;
  /** Shown as the source in /proc/mounts. */
  source?: string;
  log?: (line: string) => void;
  /** Kernel read-ahead window for the mount in KiB (default 4096). */
  readAheadKb?: number;
  /** Regular files larger than this bypass the kernel page cache (see FuseAdapter). */
  pageCacheMaxFileBytes?: number;
  /** Bound of the adapter's own cache of small reads of those files (default 16 MiB). */
  smallReadCacheBytes?: number;
  /** See AdapterOptions.zeroMessageOpendir (default true; false for tests of the OPENDIR path). */
  zeroMessageOpendir?: boolean;
}

export interface MountedFs {
  readonly mountpoint: string;
  /** Settles when the filesystem is unmounted (by anyone). */
  readonly done: Promise<void>;
  /** fusermount -u; with `lazy`, detaches even while files are open. */
  unmount(lazy?: boolean): Promise<'unmounted' | 'busy' | 'not-mounted' | 'failed'>;
  /** Hits and misses of the mount's own cache of small reads of direct-I/O files. */
  pageCacheStats(): { hits: number; misses: number };
}

/**
 * Throws a clear error unless `mountpoint` is an existing, empty directory that is not a mount.
 * A non-empty directory is refused: the mount would hide its files until unmounted.
 */
export function checkMountpoint(mountpoint: string): string {
  const abs = resolve(mountpoint);
  let st;
  try {
    st = statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError('mount point does not exist', { file: abs });
    if (code === 'ENOTCONN') {
      throw new IoError('mount point is a stale FUSE mount (its process died); run: pbsfs umount ' + abs, { file: abs });
    }
    throw new IoError(`cannot use mount point: ${code ?? String(e)}`, { file: abs });
  }
  if (!st.isDirectory()) throw new UsageError('mount point is not a directory', { file: abs });
  const m = findMount(abs);
  if (m !== undefined) throw new UsageError(`mount point is already a mount (${m.fstype} from ${m.source})`, { file: abs });
  if (!isEmptyDir(abs)) throw new UsageError('mount point is not empty (mounting would hide its files); use an empty directory', { file: abs });
  return abs;
}

function isEmptyDir(path: string): boolean {
  let d;
  try {
    d = opendirSync(path);
  } catch (e) {
    throw new IoError(`cannot use mount point: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { file: path });
  }
  try {
    return d.readSync() === null;
  } finally {
    d.closeSync();
  }
}

export async function mountCore(core: VfsCore, mountpoint: string, o: MountOptions = {}): Promise<MountedFs> {
  const abs = checkMountpoint(mountpoint);
  const asRoot = process.getuid?.() === 0;
  let fd: number;
  try {
    // Root opens /dev/fuse and mounts it with mount(8); a normal user gets the descriptor of a
    // mount that fusermount made.
    fd = asRoot ? openFuseDevice() : await fusermountMount(abs, { source: o.source ?? 'pbsfs', allowOther: o.allowOther ?? false });
  } catch (e) {
    throw new IoError(e instanceof FuseSetupError ? e.message : String(e), { file: asRoot ? '/dev/fuse' : abs });
  }
  let initDone!: () => void;
  const initialised = new Promise<void>((r) => (initDone = r));
  const adapter = new FuseAdapter(core, {
    onInit: () => initDone(),
    ...(o.log ? { log: o.log } : {}),
    ...(o.pageCacheMaxFileBytes !== undefined ? { pageCacheMaxFileBytes: o.pageCacheMaxFileBytes } : {}),
    ...(o.smallReadCacheBytes !== undefined ? { smallReadCacheBytes: o.smallReadCacheBytes } : {}),
    ...(o.zeroMessageOpendir !== undefined ? { zeroMessageOpendir: o.zeroMessageOpendir } : {}),
  });
  const session = new FuseSession(fd, adapter.dispatch, (e) => o.log?.(`pbsfs: /dev/fuse: ${e.message}`));
  session.start();
  if (asRoot) {
    try {
      await kernelMount(fd, abs, {
        source: o.source ?? 'pbsfs',
        allowOther: o.allowOther ?? false,
        userId: process.getuid?.() ?? 0,
        groupId: process.getgid?.() ?? 0,
      });
    } catch (e) {
      session.abort();
      closeFuseDevice(fd);
      throw new IoError(e instanceof Error ? e.message : String(e), { file: abs });
    }
  }
  await initialised;
  // Backup data is read in chunks of MiBs: let the kernel read ahead that far (root only; best
  // effort). Only once the kernel has taken our INIT reply, which resets the window to at most
  // its own default: `initialised` settles as the reply is made, and the reply is written in a
  // later microtask, so wait one turn of the event loop. (Set before that, the window silently
  // stayed at 128 KiB and every sequential reader crawled in 128 KiB steps.)
  await new Promise((r) => setImmediate(r));
  setReadAheadKb(abs, o.readAheadKb ?? 4096);
  const done = session.done.then(() => closeFuseDevice(fd));
  return {
    mountpoint: abs,
    done,
    async unmount(lazy = false) {
      const r = await kernelUnmount(abs, lazy);
      return r.result;
    },
    pageCacheStats: () => adapter.pageCacheStats,
  };
}
