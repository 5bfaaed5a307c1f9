/**
 * Extended attributes: the in-inode area (after i_extra_isize) and the external block named by
 * i_file_acl, decoded into full names ("user.x"). POSIX ACLs, which ext4 stores in its own
 * compact format, are rendered as the kernel's posix_acl_xattr bytes (version 2, {tag, perm, id}
 * entries sorted by tag then id, id 0xffffffff for the owner/group/mask/other entries): the same
 * bytes src/pxar/acl.ts produces, so the VFS treats both sources alike. system.data (inline
 * data) is internal and is not listed, as the kernel does not list it.
 */
import { IntegrityError } from '../../errors.js';
import { crc32cUpdate } from './crc32c.js';
import type { Inode } from './inode.js';
import type { Superblock } from './superblock.js';
import type { BlockVolume } from './volume.js';

export const XATTR_MAGIC = 0xea020000;
const INDEX_ACL_ACCESS = 2;
const INDEX_ACL_DEFAULT = 3;
export const INDEX_SYSTEM = 7;
const PREFIXES: Record<number, string> = {
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  6: 'security.',
  7: 'system.',
  8: 'system.richacl',
};
/** Bound on a value stored in an xattr inode (ea_inode). */
export const MAX_XATTR_VALUE = 64 * 1024 * 1024;

export interface RawXattr {
  index: number;
  /** Name without the prefix. */
  suffix: Buffer;
  /** The value bytes, or the inode that holds them (ea_inode). */
  value: Buffer | undefined;
  valueInum: number;
  valueSize: number;
}

/** Parses entries from `entriesStart` of `area`; value offsets count from `valueBase`. */
function parseEntries(area: Buffer, entriesStart: number, valueBase: number, valueEnd: number, vol: BlockVolume, what: string, offset: number): RawXattr[] {
  const out: RawXattr[] = [];
  let p = entriesStart;
  while (p + 4 <= area.length && area.readUInt32LE(p) !== 0) {
    if (p + 16 > area.length) throw vol.error(`${what}: xattr entry runs past its area`, offset + p);
    const nameLen = area[p]!;
    const index = area[p + 1]!;
    const valueOffs = area.readUInt16LE(p + 2);
    const valueInum = area.readUInt32LE(p + 4);
    const valueSize = area.readUInt32LE(p + 8);
    if (p + 16 + nameLen > area.length) throw vol.error(`${what}: xattr name runs past its area`, offset + p);
    const suffix = Buffer.from(area.subarray(p + 16, p + 16 + nameLen));
    let value: Buffer | undefined;
    if (valueInum === 0) {
      const vs = valueBase + valueOffs;
      if (vs + valueSize > valueEnd) throw vol.error(`${what}: xattr value [${valueOffs}, +${valueSize}) runs past its area`, offset + p);
      value = Buffer.from(area.subarray(vs, vs + valueSize));
    } else if (valueSize > MAX_XATTR_VALUE) {
      throw vol.error(`${what}: xattr value of ${valueSize} bytes exceeds the ${MAX_XATTR_VALUE}-byte bound`, offset + p);
    }
    out.push({ index, suffix, value, valueInum, valueSize });
    p += (16 + nameLen + 3) & ~3;
    if (out.length > 65536) throw vol.error(`${what}: too many xattr entries`, offset + p);
  }
  return out;
}

/** The in-inode xattrs. */
export function inodeXattrs(sb: Superblock, inode: Inode, vol: BlockVolume): RawXattr[] {
  const a = inode.xattrArea;
  if (a.length < 4 || a.readUInt32LE(0) !== XATTR_MAGIC) return [];
  const off = inode.offset + sb.inodeSize - a.length;
  return parseEntries(a, 4, 4, a.length, vol, `in-inode xattrs of inode ${inode.ino}`, off);
}

/** The xattrs of the external block (i_file_acl), checksum verified. */
export async function blockXattrs(sb: Superblock, vol: BlockVolume, inode: Inode): Promise<RawXattr[]> {
  if (inode.fileAcl === 0) return [];
  const blk = inode.fileAcl;
  const what = `xattr block ${blk} of inode ${inode.ino}`;
  const b = await vol.block(blk, what);
  const offset = blk * sb.blockSize;
  if (b.readUInt32LE(0) !== XATTR_MAGIC) throw vol.error(`${what}: bad magic`, offset);
  const blocks = b.readUInt32LE(8);
  if (blocks !== 1) throw vol.error(`${what}: spans ${blocks} blocks (only 1 is valid)`, offset + 8);
  if (sb.metadataCsum) {
    const num = Buffer.alloc(8);
    num.writeUInt32LE(blk % 2 ** 32, 0);
    num.writeUInt32LE(Math.floor(blk / 2 ** 32), 4);
    let c = crc32cUpdate(sb.csumSeed, num);
    c = crc32cUpdate(c, b.subarray(0, 0x10));
    c = crc32cUpdate(c, ZERO4);
    c = crc32cUpdate(c, b.subarray(0x14));
    const stored = b.readUInt32LE(0x10);
    if (stored !== c) {
      throw new IntegrityError(`ext4 ${what}: checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${c.toString(16)})`, { file: vol.name, offset: offset + 0x10 });
    }
  }
  return parseEntries(b, 32, 0, b.length, vol, what, offset);
}

export function fullName(x: RawXattr): Buffer | undefined {
  const prefix = PREFIXES[x.index];
  if (prefix === undefined) return undefined;
  if (x.index === INDEX_ACL_ACCESS || x.index === INDEX_ACL_DEFAULT) return Buffer.from(prefix);
  return Buffer.concat([Buffer.from(prefix), x.suffix]);
}

/** Whether listxattr shows this attribute (system.data and richacl are internal). */
export function isListed(x: RawXattr): boolean {
  return x.index !== INDEX_SYSTEM && x.index !== 8 && PREFIXES[x.index] !== undefined;
}

export function isAcl(x: RawXattr): boolean {
  return x.index === INDEX_ACL_ACCESS || x.index === INDEX_ACL_DEFAULT;
}

const ACL_TAG_USER = 0x02;
const ACL_TAG_GROUP = 0x08;
const UNDEFINED_ID = 0xffffffff;

/** ext4's on-disk ACL (version 1, short entries for the id-less tags) as posix_acl_xattr bytes. */
export function aclToXattr(disk: Buffer, vol: BlockVolume, ino: number): Buffer {
  if (disk.length < 4 || disk.readUInt32LE(0) !== 1) throw vol.error(`inode ${ino}: ACL has an unknown version`);
  const entries: { tag: number; perm: number; id: number }[] = [];
  let p = 4;
  while (p < disk.length) {
    if (p + 4 > disk.length) throw vol.error(`inode ${ino}: truncated ACL entry`);
    const tag = disk.readUInt16LE(p);
    const perm = disk.readUInt16LE(p + 2);
    if (tag === ACL_TAG_USER || tag === ACL_TAG_GROUP) {
      if (p + 8 > disk.length) throw vol.error(`inode ${ino}: truncated ACL entry`);
      entries.push({ tag, perm, id: disk.readUInt32LE(p + 4) });
      p += 8;
    } else {
      entries.push({ tag, perm, id: UNDEFINED_ID });
      p += 4;
    }
  }
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  const out = Buffer.alloc(4 + 8 * entries.length);
  out.writeUInt32LE(2, 0);
  entries.forEach((e, i) => {
    out.writeUInt16LE(e.tag, 4 + i * 8);
    out.writeUInt16LE(e.perm & 7, 6 + i * 8);
    out.writeUInt32LE(e.id >>> 0, 8 + i * 8);
  });
  return out;
}

const ZERO4 = Buffer.alloc(4);
