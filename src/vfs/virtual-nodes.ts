/**
 * Nodes that pbsfs makes up itself rather than decodes from an archive: directories of
 * snapshots and archives, and files backed by a ReadAt (a disk image over its fixed index, a
 * decoded blob). Each gets an inode number from one process-wide counter, so they never collide
 * with each other; they live in the core's "virtual" inode domain (see core.ts).
 */
import type { ReadAt } from '../io/read-at.js';
import type { VfsDirEntry, VfsFileHandle, VfsNode, VfsStat } from './types.js';

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

let nextVirtualIno = 1;
/** A fresh inode number for a made-up node (unique within this process). */
export function allocVirtualIno(): number {
  return nextVirtualIno++;
}

export interface NodeTimes {
  mtimeSec: number;
  mtimeNsec?: number;
}

export function compareNames(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

/** A directory whose children are computed once, on first use (e.g. from a manifest). */
export class LazyDir implements VfsNode {
  readonly kind = 'directory' as const;
  readonly ino = allocVirtualIno();
  private children: Promise<VfsDirEntry[]> | undefined;
  private byName: Map<string, VfsNode> | undefined;

  constructor(
    private readonly load: () => Promise<VfsDirEntry[]>,
    private readonly times: NodeTimes = { mtimeSec: 0 },
    private readonly mode = 0o555,
  ) {}

  private entries(): Promise<VfsDirEntry[]> {
    if (this.children === undefined) {
      const p = this.load().then((list) => {
        const sorted = [...list].sort((a, b) => compareNames(a.name, b.name));
        this.byName = new Map(sorted.map((e) => [e.name.toString('latin1'), e.node]));
        return sorted;
      });
      // A failed load (e.g. a damaged manifest) is retried on the next access, not cached.
      p.catch(() => {
        if (this.children === p) this.children = undefined;
      });
      this.children = p;
    }
    return this.children;
  }

  async stat(): Promise<VfsStat> {
    return {
      ino: this.ino,
      mode: S_IFDIR | this.mode,
      nlink: 2,
      uid: 0,
      gid: 0,
      size: 0,
      blocks: 0,
      mtimeSec: this.times.mtimeSec,
      mtimeNsec: this.times.mtimeNsec ?? 0,
      rdev: 0,
    };
  }

  async readdir(): Promise<VfsDirEntry[]> {
    return this.entries();
  }

  async lookup(name: Buffer): Promise<VfsNode | undefined> {
    await this.entries();
    return this.byName!.get(name.toString('latin1'));
  }

  async listxattr(): Promise<Buffer[]> {
    return [];
  }

  async getxattr(): Promise<Buffer | undefined> {
    return undefined;
  }
}

/** Hints a VfsFileHandle may offer the core's sequential-read prefetcher. */
export interface PrefetchingHandle extends VfsFileHandle {
  /** Starts fetching (into the chunk cache) everything needed for [offset, offset+length). */
  prefetch(offset: number, length: number): void;
}

export function isPrefetching(h: VfsFileHandle): h is PrefetchingHandle {
  return typeof (h as Partial<PrefetchingHandle>).prefetch === 'function';
}

/** A regular file whose bytes come from a ReadAt (a disk image, a decoded blob, test data). */
export class ReadAtFile implements VfsNode {
  readonly kind = 'file' as const;
  readonly ino = allocVirtualIno();

  constructor(
    private readonly src: () => Promise<ReadAt> | ReadAt,
    private readonly size: number,
    private readonly times: NodeTimes = { mtimeSec: 0 },
    private readonly mode = 0o444,
  ) {}

  async stat(): Promise<VfsStat> {
    return {
      ino: this.ino,
      mode: S_IFREG | this.mode,
      nlink: 1,
      uid: 0,
      gid: 0,
      size: this.size,
      blocks: Math.ceil(this.size / 512),
      mtimeSec: this.times.mtimeSec,
      mtimeNsec: this.times.mtimeNsec ?? 0,
      rdev: 0,
    };
  }

  async open(): Promise<VfsFileHandle> {
    const src = await this.src();
    const h: VfsFileHandle = {
      read: (offset, length) => src.readAt(offset, length),
      ...(src.readHeld ? { readHeld: (offset: number, length: number) => src.readHeld!(offset, length) } : {}),
      ...(src.forget ? { forget: (offset: number, length: number) => src.forget!(offset, length) } : {}),
      release: async () => undefined,
    };
    // A source that can fetch ahead (an index stream) lets the core's read-ahead reach it.
    if (src.prefetch === undefined) return h;
    return { ...h, prefetch: (offset: number, length: number) => src.prefetch!(offset, length) } as PrefetchingHandle;
  }

  async listxattr(): Promise<Buffer[]> {
    return [];
  }

  async getxattr(): Promise<Buffer | undefined> {
    return undefined;
  }
}
