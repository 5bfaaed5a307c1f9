/**
 * The Linux FUSE kernel protocol (include/uapi/linux/fuse.h), the part a read-only filesystem
 * needs: opcodes, flags and the fixed little-endian structures, as encoders and decoders over
 * Buffers.
 *
 * pbsfs speaks this protocol itself over /dev/fuse instead of going through libfuse. That is what
 * lets it hand the kernel nanosecond and pre-1970 timestamps, 64-bit inode numbers, raw-byte
 * (non-UTF-8) names, 1 MiB reads and READDIRPLUS, none of which the libfuse-2 JS binding can carry.
 */

export const FUSE_KERNEL_VERSION = 7;
/** The protocol minor we implement; the kernel adapts to the smaller of both sides. */
export const FUSE_KERNEL_MINOR = 31;
export const FUSE_ROOT_ID = 1;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  TMPFILE: 51,
} as const;

/** Operations that would change the filesystem: a read-only mount answers EROFS. */
export const WRITE_OPS: ReadonlySet<number> = new Set([
  Op.SETATTR,
  Op.SYMLINK,
  Op.MKNOD,
  Op.MKDIR,
  Op.UNLINK,
  Op.RMDIR,
  Op.RENAME,
  Op.LINK,
  Op.WRITE,
  Op.SETXATTR,
  Op.REMOVEXATTR,
  Op.CREATE,
  Op.FALLOCATE,
  Op.RENAME2,
  Op.COPY_FILE_RANGE,
  Op.TMPFILE,
]);

/** INIT flags (fuse_init_in.flags / fuse_init_out.flags). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  DO_READDIRPLUS: 1 << 13,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  /** The kernel takes ENOSYS to OPENDIR as "directories need no open" (Linux 5.1+). */
  NO_OPENDIR_SUPPORT: 1 << 24,
  /** init_in/init_out carry a second flags word (flags2, bits 32-63). */
  INIT_EXT: 1 << 30,
} as const;

/** Bits of the second flags word (flags2 = flags >> 32). */
export const InitFlag2 = {
  /** mmap(MAP_SHARED) of FOPEN_DIRECT_IO files (through the page cache; kernel 6.6+). */
  DIRECT_IO_ALLOW_MMAP: 1 << (36 - 32),
} as const;

/** fuse_open_out.open_flags */
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_CACHE_DIR = 1 << 3;

/** errno values (Linux). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENODATA: 61,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  ENOTCONN: 107,
} as const;
export type ErrnoName = keyof typeof Errno;

export function errnoNumber(name: string): number {
  return (Errno as Record<string, number>)[name] ?? Errno.EIO;
}

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

export function decodeInHeader(b: Buffer): InHeader {
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: b.readBigUInt64LE(8),
    // Node ids are ours (small counters), so a Number holds them exactly.
    nodeid: Number(b.readBigUInt64LE(16)),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
  };
}

/**
 * Little-endian u64 / i64 from a JS number without a BigInt per field (the hot path writes eight
 * per directory entry). Values are safe integers (|v| < 2^53).
 */
function writeU64(b: Buffer, v: number, off: number): void {
  b.writeUInt32LE(v % 0x100000000, off);
  b.writeUInt32LE(Math.floor(v / 0x100000000), off + 4);
}

function writeI64(b: Buffer, v: number, off: number): void {
  if (v >= 0) return writeU64(b, v, off);
  // Two's complement of a negative safe integer: high word from floor division, low word mod 2^32.
  const hi = Math.floor(v / 0x100000000);
  b.writeUInt32LE(v - hi * 0x100000000, off);
  b.writeInt32LE(hi, off + 4);
}

export function encodeOutHeader(b: Buffer, len: number, error: number, unique: bigint): void {
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  b.writeBigUInt64LE(unique, 8);
}

/** Attributes in kernel units: what fuse_attr carries. */
export interface KernelAttr {
  ino: number;
  size: number;
  blocks: number;
  mtimeSec: number;
  mtimeNsec: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  /** Where the source keeps them (a filesystem in a disk image); else they mirror mtime. */
  atimeSec?: number;
  atimeNsec?: number;
  ctimeSec?: number;
  ctimeNsec?: number;
}

/** Writes a fuse_attr at `off`. atime and ctime mirror mtime unless given (pxar has only mtime). */
export function encodeAttr(b: Buffer, off: number, a: KernelAttr): void {
  writeU64(b, a.ino, off);
  writeU64(b, a.size, off + 8);
  writeU64(b, a.blocks, off + 16);
  writeI64(b, a.atimeSec ?? a.mtimeSec, off + 24);
  writeI64(b, a.mtimeSec, off + 32);
  writeI64(b, a.ctimeSec ?? a.mtimeSec, off + 40);
  b.writeUInt32LE(a.atimeSec !== undefined ? (a.atimeNsec ?? 0) : a.mtimeNsec, off + 48);
  b.writeUInt32LE(a.mtimeNsec, off + 52);
  b.writeUInt32LE(a.ctimeSec !== undefined ? (a.ctimeNsec ?? 0) : a.mtimeNsec, off + 56);
  b.writeUInt32LE(a.mode >>> 0, off + 60);
  b.writeUInt32LE(a.nlink >>> 0, off + 64);
  b.writeUInt32LE(a.uid >>> 0, off + 68);
  b.writeUInt32LE(a.gid >>> 0, off + 72);
  b.writeUInt32LE(a.rdev >>> 0, off + 76);
  b.writeUInt32LE(4096, off + 80); // blksize
  b.writeUInt32LE(0, off + 84);
}

/** Writes a fuse_entry_out at `off`. nodeid 0 = a cacheable negative entry. */
export function encodeEntryOut(b: Buffer, off: number, nodeid: number, validSec: number, attr: KernelAttr | undefined): void {
  writeU64(b, nodeid, off);
  writeU64(b, 0, off + 8); // generation: node ids are never reused within a mount
  writeU64(b, validSec, off + 16);
  writeU64(b, validSec, off + 24);
  b.writeUInt32LE(0, off + 32);
  b.writeUInt32LE(0, off + 36);
  if (attr) encodeAttr(b, off + 40, attr);
  else b.fill(0, off + 40, off + ENTRY_OUT_SIZE);
}

export function encodeAttrOut(validSec: number, attr: KernelAttr): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  b.writeBigUInt64LE(BigInt(validSec), 0);
  encodeAttr(b, 16, attr);
  return b;
}

export function encodeOpenOut(fh: number, openFlags: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(fh), 0);
  b.writeUInt32LE(openFlags, 8);
  return b;
}

/** fuse_getxattr_out: the size a value or name list needs. */
export function encodeXattrSize(size: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(size, 0);
  return b;
}

export function encodeStatfs(o: { blocks: number; files: number; bsize: number; namelen: number }): Buffer {
  const b = Buffer.alloc(80);
  b.writeBigUInt64LE(BigInt(o.blocks), 0);
  b.writeBigUInt64LE(0n, 8); // bfree
  b.writeBigUInt64LE(0n, 16); // bavail
  b.writeBigUInt64LE(BigInt(o.files), 24);
  b.writeBigUInt64LE(0n, 32); // ffree
  b.writeUInt32LE(o.bsize, 40);
  b.writeUInt32LE(o.namelen, 44);
  b.writeUInt32LE(o.bsize, 48); // frsize
  return b;
}

/** Size of one fuse_dirent (READDIR) or fuse_direntplus (READDIRPLUS) record, 8-aligned. */
export function direntSize(nameLen: number, plus: boolean): number {
  return (plus ? ENTRY_OUT_SIZE : 0) + ((24 + nameLen + 7) & ~7);
}

/** Writes a dirent record at `off`; returns the offset after it. `ino` 0 is not allowed by readdir. */
export function encodeDirent(b: Buffer, off: number, ino: number, nextOff: number, mode: number, name: Buffer): number {
  writeU64(b, ino, off);
  writeU64(b, nextOff, off + 8);
  b.writeUInt32LE(name.length, off + 16);
  b.writeUInt32LE((mode >>> 12) & 0xf, off + 20);
  name.copy(b, off + 24);
  const end = off + ((24 + name.length + 7) & ~7);
  b.fill(0, off + 24 + name.length, end);
  return end;
}
