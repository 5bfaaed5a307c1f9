/**
 * An in-memory VfsNode tree for tests of the VFS core and the FUSE adapter: directories, files,
 * symlinks, devices, xattrs, hardlinks (two names sharing one inode number), a file whose reads
 * fail, and non-UTF-8 names.
 */
import type { VfsDirEntry, VfsFileHandle, VfsKind, VfsNode, VfsStat } from '../../src/vfs/types.js';
import { IntegrityError } from '../../src/errors.js';

const TYPE_BITS: Record<VfsKind, number> = {
  directory: 0o040000,
  file: 0o100000,
  symlink: 0o120000,
  chardev: 0o020000,
  blockdev: 0o060000,
  fifo: 0o010000,
  socket: 0o140000,
};

export interface MemSpec {
  kind?: VfsKind;
  perm?: number;
  uid?: number;
  gid?: number;
  mtimeSec?: number;
  mtimeNsec?: number;
  data?: Buffer;
  target?: Buffer;
  rdev?: number;
  xattrs?: [string, Buffer][];
  children?: [Buffer | string, MemNode][];
  ino?: number;
  nlink?: number;
  /** Reads of this file fail with an IntegrityError. */
  corrupt?: boolean;
}

let nextIno = 1000;

export class MemNode implements VfsNode {
  readonly kind: VfsKind;
  readonly ino: number;
  openCount = 0;
  readCount = 0;
  constructor(readonly spec: MemSpec) {
    this.kind = spec.kind ?? (spec.children ? 'directory' : spec.target ? 'symlink' : 'file');
    this.ino = spec.ino ?? nextIno++;
  }
  async stat(): Promise<VfsStat> {
    const s = this.spec;
    const size = this.kind === 'file' ? (s.data?.length ?? 0) : this.kind === 'symlink' ? s.target!.length : 0;
    return {
      ino: this.ino,
      mode: TYPE_BITS[this.kind] | (s.perm ?? (this.kind === 'directory' ? 0o755 : 0o644)),
      nlink: s.nlink ?? (this.kind === 'directory' ? 2 : 1),
      uid: s.uid ?? 0,
      gid: s.gid ?? 0,
      size,
      blocks: Math.ceil(size / 512),
      mtimeSec: s.mtimeSec ?? 1700000000,
      mtimeNsec: s.mtimeNsec ?? 0,
      rdev: s.rdev ?? 0,
    };
  }
  get readdir(): (() => Promise<VfsDirEntry[]>) | undefined {
    if (this.kind !== 'directory') return undefined;
    return async () =>
      (this.spec.children ?? [])
        .map(([n, node]) => ({ name: typeof n === 'string' ? Buffer.from(n) : n, node }))
        .sort((a, b) => Buffer.compare(a.name, b.name));
  }
  get lookup(): ((name: Buffer) => Promise<VfsNode | undefined>) | undefined {
    if (this.kind !== 'directory') return undefined;
    return async (name) => (this.spec.children ?? []).find(([n]) => Buffer.from(n).equals(name))?.[1];
  }
  get readlink(): (() => Promise<Buffer>) | undefined {
    return this.kind === 'symlink' ? async () => this.spec.target! : undefined;
  }
  get open(): (() => Promise<VfsFileHandle>) | undefined {
    if (this.kind !== 'file') return undefined;
    return async () => {
      this.openCount++;
      const data = this.spec.data ?? Buffer.alloc(0);
      return {
        read: async (offset: number, length: number) => {
          this.readCount++;
          if (this.spec.corrupt) {
            throw new IntegrityError('chunk 0 (digest 00ff): digest mismatch', { file: 'mem.didx', offset: 0 });
          }
          return data.subarray(Math.min(offset, data.length), Math.min(data.length, offset + length));
        },
        release: async () => {
          this.openCount--;
        },
      };
    };
  }
  async listxattr(): Promise<Buffer[]> {
    return (this.spec.xattrs ?? []).map(([n]) => Buffer.from(n));
  }
  async getxattr(name: Buffer): Promise<Buffer | undefined> {
    return (this.spec.xattrs ?? []).find(([n]) => n === name.toString())?.[1];
  }
}

export const mem = (spec: MemSpec): MemNode => new MemNode(spec);
