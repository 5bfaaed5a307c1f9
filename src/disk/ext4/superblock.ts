/**
 * The ext2/3/4 superblock (1024 bytes at byte 1024 of the volume): geometry, features and the
 * checksum seed. Everything later bounds-checks against what is decoded and validated here.
 */
import { FormatError, IntegrityError, UnsupportedError } from '../../errors.js';
import { crc32cUpdate } from './crc32c.js';

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
export const EXT4_MAGIC = 0xef53;

export const COMPAT = { HAS_JOURNAL: 0x4, EXT_ATTR: 0x8, DIR_INDEX: 0x20, SPARSE_SUPER2: 0x200 } as const;
export const INCOMPAT = {
  COMPRESSION: 0x1,
  FILETYPE: 0x2,
  RECOVER: 0x4,
  JOURNAL_DEV: 0x8,
  META_BG: 0x10,
  EXTENTS: 0x40,
  BIT64: 0x80,
  MMP: 0x100,
  FLEX_BG: 0x200,
  EA_INODE: 0x400,
  DIRDATA: 0x1000,
  CSUM_SEED: 0x2000,
  LARGEDIR: 0x4000,
  INLINE_DATA: 0x8000,
  ENCRYPT: 0x10000,
  CASEFOLD: 0x20000,
} as const;
export const RO_COMPAT = {
  SPARSE_SUPER: 0x1,
  LARGE_FILE: 0x2,
  BTREE_DIR: 0x4,
  HUGE_FILE: 0x8,
  GDT_CSUM: 0x10,
  DIR_NLINK: 0x20,
  EXTRA_ISIZE: 0x40,
  BIGALLOC: 0x200,
  METADATA_CSUM: 0x400,
} as const;

/** Incompat features this reader understands; any other bit means the layout is unknown. */
const KNOWN_INCOMPAT =
  INCOMPAT.FILETYPE |
  INCOMPAT.RECOVER |
  INCOMPAT.META_BG |
  INCOMPAT.EXTENTS |
  INCOMPAT.BIT64 |
  INCOMPAT.MMP |
  INCOMPAT.FLEX_BG |
  INCOMPAT.EA_INODE |
  INCOMPAT.CSUM_SEED |
  INCOMPAT.LARGEDIR |
  INCOMPAT.INLINE_DATA |
  INCOMPAT.ENCRYPT |
  INCOMPAT.CASEFOLD;

const EXT2_INCOMPAT = INCOMPAT.FILETYPE | INCOMPAT.META_BG;
const EXT3_INCOMPAT = EXT2_INCOMPAT | INCOMPAT.RECOVER;
const EXT3_RO_COMPAT = RO_COMPAT.SPARSE_SUPER | RO_COMPAT.LARGE_FILE | RO_COMPAT.BTREE_DIR;

/** s_flags: directory hashes computed with unsigned chars. */
const FLAG_UNSIGNED_HASH = 0x2;

export interface Superblock {
  inodesCount: number;
  blocksCount: number;
  firstDataBlock: number;
  blockSize: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  groupCount: number;
  inodeSize: number;
  firstIno: number;
  revLevel: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  uuid: Buffer;
  volumeName: Buffer;
  journalInum: number;
  journalDev: number;
  hashSeed: [number, number, number, number];
  defHashVersion: number;
  descSize: number;
  firstMetaBg: number;
  backupBgs: [number, number];
  /** 3 when directory hashes use unsigned chars (added to the legacy/half-MD4/TEA versions). */
  hashUnsignedOffset: number;
  metadataCsum: boolean;
  /** Seed of every metadata_csum checksum (crc32c of the UUID, or s_checksum_seed). */
  csumSeed: number;
  /** The raw 1024 bytes (the journal test compares them). */
  raw: Buffer;
}

export function hasIncompat(sb: Superblock, f: number): boolean {
  return (sb.featureIncompat & f) !== 0;
}
export function hasRoCompat(sb: Superblock, f: number): boolean {
  return (sb.featureRoCompat & f) !== 0;
}
export function hasCompat(sb: Superblock, f: number): boolean {
  return (sb.featureCompat & f) !== 0;
}

/** True when `raw` (the 1024 bytes at byte 1024) carries the ext2/3/4 magic. */
export function looksLikeSuperblock(raw: Buffer): boolean {
  return raw.length >= 0x3a && raw.readUInt16LE(0x38) === EXT4_MAGIC;
}

/** The blkid type name: ext2 and ext3 are the feature subsets those drivers understood. */
export function fsTypeName(sb: Superblock): 'ext2' | 'ext3' | 'ext4' {
  const journal = hasCompat(sb, COMPAT.HAS_JOURNAL);
  if ((sb.featureRoCompat & ~EXT3_RO_COMPAT) !== 0) return 'ext4';
  if (journal) return (sb.featureIncompat & ~EXT3_INCOMPAT) === 0 ? 'ext3' : 'ext4';
  return (sb.featureIncompat & ~EXT2_INCOMPAT) === 0 ? 'ext2' : 'ext4';
}

/**
 * Decodes and validates the superblock. `volumeSize` is the byte length of the volume: a
 * filesystem claiming more blocks than the volume holds is refused (reads would run off it).
 */
export function parseSuperblock(raw: Buffer, file: string, volumeSize: number): Superblock {
  const bad = (what: string, rel: number): FormatError =>
    new FormatError(`ext4 superblock: ${what}`, { file, offset: SUPERBLOCK_OFFSET + rel });
  if (raw.length < SUPERBLOCK_SIZE) throw bad(`truncated (${raw.length} of ${SUPERBLOCK_SIZE} bytes)`, 0);
  if (raw.readUInt16LE(0x38) !== EXT4_MAGIC) throw bad('bad magic (not an ext2/3/4 filesystem)', 0x38);
  const featureCompat = raw.readUInt32LE(0x5c);
  const featureIncompat = raw.readUInt32LE(0x60);
  const featureRoCompat = raw.readUInt32LE(0x64);
  const metadataCsum = (featureRoCompat & RO_COMPAT.METADATA_CSUM) !== 0;
  if (metadataCsum) {
    if (raw[0x175] !== 1) throw bad(`unknown checksum type ${raw[0x175]}`, 0x175);
    const want = raw.readUInt32LE(0x3fc);
    const got = crc32cUpdate(0xffffffff, raw.subarray(0, 0x3fc));
    if (want !== got) {
      throw new IntegrityError(`ext4 superblock checksum mismatch (stored 0x${want.toString(16)}, computed 0x${got.toString(16)})`, {
        file,
        offset: SUPERBLOCK_OFFSET + 0x3fc,
      });
    }
  }
  const unknown = featureIncompat & ~KNOWN_INCOMPAT;
  if (unknown !== 0) {
    const names: string[] = [];
    if (unknown & INCOMPAT.COMPRESSION) names.push('compression');
    if (unknown & INCOMPAT.JOURNAL_DEV) names.push('journal_dev (an external journal device, not a filesystem)');
    if (unknown & INCOMPAT.DIRDATA) names.push('dirdata');
    const rest = unknown & ~(INCOMPAT.COMPRESSION | INCOMPAT.JOURNAL_DEV | INCOMPAT.DIRDATA);
    if (rest !== 0) names.push(`unknown incompat bits 0x${rest.toString(16)}`);
    throw new UnsupportedError(`ext4 filesystem uses features this reader does not know: ${names.join(', ')}`, { file, offset: SUPERBLOCK_OFFSET + 0x60 });
  }
  const logBlock = raw.readUInt32LE(0x18);
  if (logBlock > 6) throw bad(`block size 1024 << ${logBlock} is out of range`, 0x18);
  const blockSize = 1024 << logBlock;
  const bit64 = (featureIncompat & INCOMPAT.BIT64) !== 0;
  const blocksCount = raw.readUInt32LE(0x4) + (bit64 ? raw.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstDataBlock = raw.readUInt32LE(0x14);
  const blocksPerGroup = raw.readUInt32LE(0x20);
  const inodesPerGroup = raw.readUInt32LE(0x28);
  const inodesCount = raw.readUInt32LE(0x0);
  const revLevel = raw.readUInt32LE(0x4c);
  const inodeSize = revLevel === 0 ? 128 : raw.readUInt16LE(0x58);
  const firstIno = revLevel === 0 ? 11 : raw.readUInt32LE(0x54);
  if (blocksCount === 0 || blocksCount * blockSize > volumeSize) {
    throw bad(`claims ${blocksCount} blocks of ${blockSize} bytes (${blocksCount * blockSize} bytes) but the volume holds ${volumeSize} bytes`, 0x4);
  }
  if (firstDataBlock !== (blockSize === 1024 ? 1 : 0)) throw bad(`first data block ${firstDataBlock} does not fit block size ${blockSize}`, 0x14);
  if (blocksPerGroup === 0 || blocksPerGroup > blockSize * 8) throw bad(`blocks per group ${blocksPerGroup} out of range`, 0x20);
  if (inodesPerGroup === 0 || inodesPerGroup > blockSize * 8) throw bad(`inodes per group ${inodesPerGroup} out of range`, 0x28);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw bad(`inode size ${inodeSize} out of range`, 0x58);
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (inodesCount > groupCount * inodesPerGroup) throw bad(`inode count ${inodesCount} exceeds ${groupCount} groups of ${inodesPerGroup}`, 0x0);
  let descSize = 32;
  if (bit64) {
    descSize = raw.readUInt16LE(0xfe);
    if (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0) throw bad(`group descriptor size ${descSize} out of range`, 0xfe);
  }
  const uuid = Buffer.from(raw.subarray(0x68, 0x78));
  const csumSeed = (featureIncompat & INCOMPAT.CSUM_SEED) !== 0 ? raw.readUInt32LE(0x270) : crc32cUpdate(0xffffffff, uuid);
  return {
    inodesCount,
    blocksCount,
    firstDataBlock,
    blockSize,
    blocksPerGroup,
    inodesPerGroup,
    groupCount,
    inodeSize,
    firstIno,
    revLevel,
    featureCompat,
    featureIncompat,
    featureRoCompat,
    uuid,
    volumeName: Buffer.from(raw.subarray(0x78, 0x88)),
    journalInum: raw.readUInt32LE(0xe0),
    journalDev: raw.readUInt32LE(0xe4),
    hashSeed: [raw.readUInt32LE(0xec), raw.readUInt32LE(0xf0), raw.readUInt32LE(0xf4), raw.readUInt32LE(0xf8)],
    defHashVersion: raw[0xfc]!,
    descSize,
    firstMetaBg: raw.readUInt32LE(0x104),
    backupBgs: [raw.readUInt32LE(0x24c), raw.readUInt32LE(0x250)],
    hashUnsignedOffset: (raw.readUInt32LE(0x160) & FLAG_UNSIGNED_HASH) !== 0 ? 3 : 0,
    metadataCsum,
    csumSeed,
    raw: Buffer.from(raw.subarray(0, SUPERBLOCK_SIZE)),
  };
}

/** The volume label (NUL-padded, raw bytes), or undefined when empty. */
export function labelOf(sb: Superblock): string | undefined {
  const end = sb.volumeName.indexOf(0);
  const s = sb.volumeName.subarray(0, end < 0 ? 16 : end).toString('utf8');
  return s === '' ? undefined : s;
}

export function uuidOf(sb: Superblock): string | undefined {
  if (sb.uuid.every((b) => b === 0)) return undefined;
  const h = sb.uuid.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
