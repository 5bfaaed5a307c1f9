/**
 * The FUSE-free virtual filesystem contract (modelled on borg's vfs.py: one core, thin adapters).
 *
 * A backup is presented as a tree of VfsNodes. The CLI (`ls`, `cat`, `restore`) and the FUSE
 * adapter both walk this tree; neither knows whether a node is a pxar entry, a disk image, a blob,
 * a snapshot directory or a datastore group. Names are raw bytes (pxar names need not be UTF-8).
 * Everything is read-only.
 */
import type { HeldBytes } from '../io/read-at.js';

/** Attributes of a node, in the units stat(2) uses. */
export interface VfsStat {
  /** Stable inode number (derived from archive offsets for pxar entries). */
  ino: number;
  /** Full st_mode: file type bits and permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Size in bytes (file length, symlink target length, 0 for devices). */
  size: number;
  /** 512-byte blocks. */
  blocks: number;
  /** mtime as seconds (may be negative) and nanoseconds 0..999999999. */
  mtimeSec: number;
  mtimeNsec: number;
  /** Device number for char/block devices (Linux dev_t encoding), else 0. */
  rdev: number;
  /** atime, ctime and creation time where the source keeps them (filesystems in disk images). */
  atimeSec?: number;
  atimeNsec?: number;
  ctimeSec?: number;
  ctimeNsec?: number;
  crtimeSec?: number;
  crtimeNsec?: number;
}

export interface VfsDirEntry {
  name: Buffer;
  node: VfsNode;
}

/** An open regular file. Reads past the end return fewer bytes (0 at EOF). */
export interface VfsFileHandle {
  read(offset: number, length: number): Promise<Buffer>;
  /** Optional: read()'s bytes lent until release() (see HeldBytes), without a copy. */
  readHeld?(offset: number, length: number): Promise<HeldBytes>;
  /** Optional hint: [offset, offset + length) will not be read again soon (see ReadAt.forget). */
  forget?(offset: number, length: number): void;
  release(): Promise<void>;
}

export type VfsKind = 'directory' | 'file' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

export interface VfsNode {
  readonly kind: VfsKind;
  stat(): Promise<VfsStat>;
  /**
   * The attributes when they are at hand without I/O, else undefined (then use stat()). Lets a
   * listing of thousands of entries skip a promise per entry.
   */
  statSync?(): VfsStat | undefined;
  /** Directories: children in a stable order (sorted by name bytes). */
  readdir?(): Promise<VfsDirEntry[]>;
  /** Directories: one child by name, without listing the whole directory when avoidable. */
  lookup?(name: Buffer): Promise<VfsNode | undefined>;
  /** Symlinks: the target bytes. */
  readlink?(): Promise<Buffer>;
  /** Regular files. */
  open?(): Promise<VfsFileHandle>;
  /**
   * Archive nodes reached through a hardlink entry: the path of the entry they link to, as
   * stored in the archive (what `ls` shows as "link to"). Absent elsewhere.
   */
  hardlinkTarget?(): Buffer | undefined;
  /** Extended attributes, including system.posix_acl_* and security.capability renderings. */
  listxattr(): Promise<Buffer[]>;
  getxattr(name: Buffer): Promise<Buffer | undefined>;
}
