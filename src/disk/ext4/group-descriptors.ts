/**
 * Block group descriptors: where each group's inode table is. Descriptor blocks are found with
 * the classic layout (right after the superblock) or, past s_first_meta_bg, the meta_bg layout
 * (one descriptor block at the start of each meta group), and are read lazily, a block at a time.
 */
import { IntegrityError } from '../../errors.js';
import { crc16Update, crc32cUpdate, le32 } from './crc32c.js';
import { COMPAT, hasCompat, hasIncompat, hasRoCompat, INCOMPAT, RO_COMPAT, type Superblock } from './superblock.js';
import type { BlockVolume } from './volume.js';

export interface GroupDesc {
  inodeTable: number;
  flags: number;
}

/** True when group `g` holds a superblock backup (and so a descriptor backup). */
export function groupHasSuper(sb: Superblock, g: number): boolean {
  if (g === 0) return true;
  if (hasCompat(sb, COMPAT.SPARSE_SUPER2)) return g === sb.backupBgs[0] || g === sb.backupBgs[1];
  if (g <= 1 || !hasRoCompat(sb, RO_COMPAT.SPARSE_SUPER)) return true;
  if ((g & 1) === 0) return false;
  for (const p of [3, 5, 7]) {
    let n = p;
    while (n < g) n *= p;
    if (n === g) return true;
  }
  return false;
}

export class GroupDescriptors {
  private readonly perBlock: number;
  private readonly decoded = new Map<number, GroupDesc>();

  constructor(
    private readonly sb: Superblock,
    private readonly vol: BlockVolume,
  ) {
    this.perBlock = sb.blockSize / sb.descSize;
  }

  /** Filesystem block holding descriptor block `n` (the primary copy). */
  descriptorBlock(n: number): number {
    const sb = this.sb;
    if (!hasIncompat(sb, INCOMPAT.META_BG) || n < sb.firstMetaBg) return sb.firstDataBlock + 1 + n;
    const g = n * this.perBlock;
    return sb.firstDataBlock + g * sb.blocksPerGroup + (groupHasSuper(sb, g) ? 1 : 0);
  }

  async get(group: number): Promise<GroupDesc> {
    const hit = this.decoded.get(group);
    if (hit !== undefined) return hit;
    const sb = this.sb;
    if (group < 0 || group >= sb.groupCount) throw this.vol.error(`group descriptor ${group} does not exist (${sb.groupCount} groups)`);
    const n = Math.floor(group / this.perBlock);
    const blk = this.descriptorBlock(n);
    const rel = (group % this.perBlock) * sb.descSize;
    const raw = await this.vol.bytes(blk, rel, sb.descSize, `group descriptor ${group}`);
    this.verify(group, raw, blk * sb.blockSize + rel);
    const wide = sb.descSize >= 64;
    const inodeTable = raw.readUInt32LE(0x8) + (wide ? raw.readUInt32LE(0x28) * 2 ** 32 : 0);
    const gd: GroupDesc = { inodeTable, flags: raw.readUInt16LE(0x12) };
    const tableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
    this.vol.checkRange(inodeTable, tableBlocks, `inode table of group ${group}`);
    if (this.decoded.size > 65536) this.decoded.clear();
    this.decoded.set(group, gd);
    return gd;
  }

  private verify(group: number, raw: Buffer, offset: number): void {
    const sb = this.sb;
    const stored = raw.readUInt16LE(0x1e);
    let got: number;
    if (sb.metadataCsum) {
      let c = crc32cUpdate(sb.csumSeed, le32(group));
      c = crc32cUpdate(c, raw.subarray(0, 0x1e));
      c = crc32cUpdate(c, ZERO2);
      c = crc32cUpdate(c, raw.subarray(0x20));
      got = c & 0xffff;
    } else if (hasRoCompat(sb, RO_COMPAT.GDT_CSUM)) {
      let c = crc16Update(0xffff, sb.uuid);
      c = crc16Update(c, le32(group));
      c = crc16Update(c, raw.subarray(0, 0x1e));
      if (sb.descSize > 32) c = crc16Update(c, raw.subarray(0x20));
      got = c;
    } else {
      return;
    }
    if (got !== stored) {
      throw new IntegrityError(`ext4 group descriptor ${group} checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${got.toString(16)})`, {
        file: this.vol.name,
        offset: offset + 0x1e,
      });
    }
  }
}

const ZERO2 = Buffer.alloc(2);
