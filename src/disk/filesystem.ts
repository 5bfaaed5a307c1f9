/**
 * The contract between the filesystem readers (ext2/3/4, FAT, exFAT, ...) and everything above
 * them. A reader works on a ReadAt (a partition or logical volume inside a VM disk image, which is
 * itself the decoded stream behind a fixed index) and knows nothing of snapshots, the VFS or FUSE;
 * src/vfs maps a Filesystem onto VfsNodes. Names are raw bytes as stored on disk. Everything is
 * read-only: a reader never writes, and never trusts a field of the image it has not bounds-checked
 * (a hostile image gets a FormatError naming the structure, not a crash, a hang or wrong bytes).
 */
import type { ReadAt } from '../io/read-at.js';

export interface FsTime {
  /** Seconds since the epoch (may be negative). */
  sec: number;
  /** 0..999999999. */
  nsec: number;
}

/** Attributes of one file, in the units stat(2) uses. */
export interface FsStat {
  /** The filesystem's own inode number, or a stable synthetic one where it has none (FAT). */
  ino: number;
  /** Full st_mode: file type bits (S_IFREG, S_IFDIR, ...) and permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Bytes (file length, symlink target length, 0 for devices). */
  size: number;
  /** 512-byte blocks allocated. */
  blocks: number;
  atime: FsTime;
  mtime: FsTime;
  ctime: FsTime;
  /** Creation time where the filesystem keeps one. */
  crtime?: FsTime;
  /** Device number for char/block devices (Linux dev_t encoding), else 0. */
  rdev: number;
}

export interface FsDirEntry {
  /** The name bytes exactly as stored (never "." or ".."). */
  name: Buffer;
  ino: number;
}

export interface Filesystem {
  /** Short type name as blkid spells it: "ext4", "ext3", "ext2", "vfat", "exfat", ... */
  readonly type: string;
  readonly label: string | undefined;
  readonly uuid: string | undefined;
  /** Used in error messages: the image and volume this filesystem lies in. */
  readonly name: string;
  readonly rootIno: number;
  stat(ino: number): Promise<FsStat>;
  /** Directory entries in on-disk order, without "." and "..". */
  readdir(ino: number): Promise<FsDirEntry[]>;
  /** One entry of a directory by exact name, without listing it all where the format allows. */
  lookup(dirIno: number, name: Buffer): Promise<number | undefined>;
  readlink(ino: number): Promise<Buffer>;
  /** Bytes [offset, offset + length) of a regular file, clipped at its size; holes read as zeros. */
  read(ino: number, offset: number, length: number): Promise<Buffer>;
  listxattr(ino: number): Promise<Buffer[]>;
  getxattr(ino: number, name: Buffer): Promise<Buffer | undefined>;
}

export interface FilesystemOpenOptions {
  /**
   * ext3/4: "ignore" (the default) shows the blocks as they are on disk; "apply" replays the
   * journal's committed transactions in memory (never on disk). Other formats ignore it.
   */
  journal?: 'ignore' | 'apply';
}

/** One filesystem format: recognises its superblock and opens it. */
export interface FilesystemDriver {
  readonly type: string;
  /** True when `src` starts with this format's superblock (cheap: reads a few KiB at most). */
  probe(src: ReadAt): Promise<boolean>;
  open(src: ReadAt, opts?: FilesystemOpenOptions): Promise<Filesystem>;
}
