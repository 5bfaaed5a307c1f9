/**
 * On-disk inodes: location (group, inode table, index), the metadata_csum inode checksum, and the
 * decoded fields (32-bit owners, 48-bit block counts, nanosecond times with the epoch bits,
 * crtime, device numbers).
 */
import { IntegrityError } from '../../errors.js';
import type { FsTime } from '../filesystem.js';
import { crc32cUpdate, le32 } from './crc32c.js';
import type { GroupDescriptors } from './group-descriptors.js';
import { hasRoCompat, RO_COMPAT, type Superblock } from './superblock.js';
import type { BlockVolume } from './volume.js';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

export const INODE_FLAGS = {
  INDEX: 0x1000,
  HUGE_FILE: 0x40000,
  EXTENTS: 0x80000,
  EA_INODE: 0x200000,
  INLINE_DATA: 0x10000000,
  ENCRYPT: 0x800,
  CASEFOLD: 0x40000000,
} as const;

/** Size of the i_block area (extent root, block map, fast symlink or inline data). */
export const I_BLOCK_SIZE = 60;

export interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** 512-byte units. */
  blocks512: number;
  flags: number;
  generation: number;
  fileAcl: number;
  atime: FsTime;
  mtime: FsTime;
  ctime: FsTime;
  crtime: FsTime | undefined;
  /** The 60 bytes of i_block. */
  iBlock: Buffer;
  /** The in-inode xattr area (after i_extra_isize), possibly empty. */
  xattrArea: Buffer;
  /** Byte offset of the inode on the volume (error messages). */
  offset: number;
  /** Seed of the checksums of blocks owned by this inode (extent, directory, ...). */
  csumSeed: number;
}

function time(raw: Buffer, secOff: number, extraOff: number, hasExtra: boolean): FsTime {
  let sec = raw.readInt32LE(secOff);
  let nsec = 0;
  if (hasExtra) {
    const extra = raw.readUInt32LE(extraOff);
    sec += (extra & 3) * 2 ** 32;
    nsec = extra >>> 2;
    if (nsec > 999_999_999) nsec = 999_999_999;
  }
  return { sec, nsec };
}

/** The Linux dev_t (glibc makedev) of an ext4 device inode's i_block. */
export function deviceNumber(iBlock: Buffer): number {
  const old = iBlock.readUInt32LE(0);
  let major: number;
  let minor: number;
  if (old !== 0) {
    major = (old >>> 8) & 0xff;
    minor = old & 0xff;
  } else {
    const d = iBlock.readUInt32LE(4);
    major = (d & 0xfff00) >>> 8;
    minor = (d & 0xff) | ((d >>> 12) & 0xfff00);
  }
  return (major & 0xfff) * 256 + (minor & 0xff) + (minor & 0xffffff00) * 4096 + Math.floor(major / 4096) * 2 ** 32 * 4096;
}

export class InodeTable {
  constructor(
    private readonly sb: Superblock,
    private readonly vol: BlockVolume,
    private readonly groups: GroupDescriptors,
  ) {}

  /** Byte offset of inode `ino` on the volume. */
  async locate(ino: number): Promise<number> {
    const sb = this.sb;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) throw this.vol.error(`inode ${ino} does not exist (${sb.inodesCount} inodes)`);
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const gd = await this.groups.get(group);
    return gd.inodeTable * sb.blockSize + index * sb.inodeSize;
  }

  async read(ino: number): Promise<Inode> {
    const sb = this.sb;
    const offset = await this.locate(ino);
    const blk = Math.floor(offset / sb.blockSize);
    const raw = await this.vol.bytes(blk, offset % sb.blockSize, sb.inodeSize, `inode ${ino}`);
    return this.decode(ino, raw, offset);
  }

  private decode(ino: number, raw: Buffer, offset: number): Inode {
    const sb = this.sb;
    const big = sb.inodeSize > 128;
    let extraIsize = big ? raw.readUInt16LE(0x80) : 0;
    if (big && (128 + extraIsize > sb.inodeSize || (extraIsize & 3) !== 0)) {
      throw this.vol.error(`inode ${ino}: extra size ${extraIsize} does not fit a ${sb.inodeSize}-byte inode`, offset + 0x80);
    }
    if (!big) extraIsize = 0;
    const fits = (fieldOff: number, len = 4): boolean => fieldOff + len <= 128 + extraIsize;
    const generation = raw.readUInt32LE(0x64);
    const seed = crc32cUpdate(crc32cUpdate(sb.csumSeed, le32(ino)), le32(generation));
    if (sb.metadataCsum) this.verify(ino, raw, offset, seed, fits(0x82, 2));
    const flags = raw.readUInt32LE(0x20);
    const hugeFs = hasRoCompat(sb, RO_COMPAT.HUGE_FILE);
    let blocks = raw.readUInt32LE(0x1c) + (hugeFs ? raw.readUInt16LE(0x74) * 2 ** 32 : 0);
    if (hugeFs && (flags & INODE_FLAGS.HUGE_FILE) !== 0) blocks *= sb.blockSize / 512;
    return {
      ino,
      mode: raw.readUInt16LE(0x0),
      uid: raw.readUInt16LE(0x2) + raw.readUInt16LE(0x78) * 65536,
      gid: raw.readUInt16LE(0x18) + raw.readUInt16LE(0x7a) * 65536,
      size: raw.readUInt32LE(0x4) + raw.readUInt32LE(0x6c) * 2 ** 32,
      nlink: raw.readUInt16LE(0x1a),
      blocks512: blocks,
      flags,
      generation,
      fileAcl: raw.readUInt32LE(0x68) + raw.readUInt16LE(0x76) * 2 ** 32,
      atime: time(raw, 0x8, 0x8c, fits(0x8c)),
      mtime: time(raw, 0x10, 0x88, fits(0x88)),
      ctime: time(raw, 0xc, 0x84, fits(0x84)),
      crtime: fits(0x90) ? time(raw, 0x90, 0x94, fits(0x94)) : undefined,
      iBlock: Buffer.from(raw.subarray(0x28, 0x28 + I_BLOCK_SIZE)),
      xattrArea: big ? Buffer.from(raw.subarray(128 + extraIsize)) : Buffer.alloc(0),
      offset,
      csumSeed: seed,
    };
  }

  private verify(ino: number, raw: Buffer, offset: number, seed: number, hasHi: boolean): void {
    let c = crc32cUpdate(seed, raw.subarray(0, 0x7c));
    c = crc32cUpdate(c, ZERO2);
    c = crc32cUpdate(c, raw.subarray(0x7e, 128));
    if (raw.length > 128) {
      c = crc32cUpdate(c, raw.subarray(128, 0x82));
      if (hasHi) {
        c = crc32cUpdate(c, ZERO2);
        c = crc32cUpdate(c, raw.subarray(0x84));
      } else {
        c = crc32cUpdate(c, raw.subarray(0x82));
      }
    }
    const lo = raw.readUInt16LE(0x7c);
    const stored = hasHi ? (lo | (raw.readUInt16LE(0x82) << 16)) >>> 0 : lo;
    const got = hasHi ? c >>> 0 : c & 0xffff;
    if (stored !== got) {
      throw new IntegrityError(`ext4 inode ${ino} checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${got.toString(16)})`, {
        file: this.vol.name,
        offset,
      });
    }
  }
}

const ZERO2 = Buffer.alloc(2);
