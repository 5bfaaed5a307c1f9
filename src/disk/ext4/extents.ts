/**
 * Extent trees (ext4 EXTENTS flag): logical block -> physical run. The tree is walked from the
 * root in i_block on every lookup (interior and leaf blocks come from the metadata cache); each
 * node's header is validated, the depth must fall by exactly one per level (so a node pointing
 * at itself or an ancestor is refused, not followed), and extent block checksums are verified.
 */
import { IntegrityError } from '../../errors.js';
import { crc32cUpdate } from './crc32c.js';
import type { Inode } from './inode.js';
import { MAX_LBLK, type BlockMapper, type BlockRun } from './mapping.js';
import type { Superblock } from './superblock.js';
import type { BlockVolume } from './volume.js';

export const EXTENT_MAGIC = 0xf30a;
/** The kernel's bound on tree depth. */
export const MAX_EXTENT_DEPTH = 5;
const INIT_MAX_LEN = 32768;

interface NodeHeader {
  entries: number;
  max: number;
  depth: number;
}

export class ExtentMapper implements BlockMapper {
  constructor(
    private readonly sb: Superblock,
    private readonly vol: BlockVolume,
    private readonly inode: Inode,
  ) {}

  private header(node: Buffer, where: string, offset: number, expectDepth: number | undefined): NodeHeader {
    if (node.readUInt16LE(0) !== EXTENT_MAGIC) throw this.vol.error(`inode ${this.inode.ino}: bad extent header magic in ${where}`, offset);
    const entries = node.readUInt16LE(2);
    const max = node.readUInt16LE(4);
    const depth = node.readUInt16LE(6);
    const capacity = Math.floor((node.length - 12) / 12);
    if (max > capacity || entries > max) throw this.vol.error(`inode ${this.inode.ino}: extent node in ${where} holds ${entries} of ${max} entries (room for ${capacity})`, offset);
    if (depth > MAX_EXTENT_DEPTH) throw this.vol.error(`inode ${this.inode.ino}: extent tree depth ${depth} exceeds ${MAX_EXTENT_DEPTH}`, offset);
    if (expectDepth !== undefined && depth !== expectDepth) {
      throw this.vol.error(`inode ${this.inode.ino}: extent node in ${where} has depth ${depth} where ${expectDepth} was expected (a loop or a damaged tree)`, offset);
    }
    return { entries, max, depth };
  }

  private verifyBlock(node: Buffer, h: NodeHeader, block: number): void {
    if (!this.sb.metadataCsum) return;
    const tail = 12 + 12 * h.max;
    if (tail + 4 > node.length) throw this.vol.error(`inode ${this.inode.ino}: extent block ${block} has no room for its checksum`, block * this.sb.blockSize);
    const stored = node.readUInt32LE(tail);
    const got = crc32cUpdate(this.inode.csumSeed, node.subarray(0, tail));
    if (stored !== got) {
      throw new IntegrityError(`ext4 inode ${this.inode.ino}: extent block ${block} checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${got.toString(16)})`, {
        file: this.vol.name,
        offset: block * this.sb.blockSize + tail,
      });
    }
  }

  async map(lblk: number): Promise<BlockRun> {
    let node = this.inode.iBlock;
    let where = 'the inode';
    let nodeOffset = this.inode.offset + 0x28;
    let h = this.header(node, where, nodeOffset, undefined);
    /** Exclusive end of the logical range the current node covers. */
    let upper = MAX_LBLK;
    for (;;) {
      if (h.depth === 0) return this.inLeaf(node, h, lblk, upper, nodeOffset);
      // Last index entry whose first block is <= lblk.
      let pick = -1;
      let prevStart = -1;
      for (let i = 0; i < h.entries; i++) {
        const start = node.readUInt32LE(12 + i * 12);
        if (start <= prevStart) throw this.vol.error(`inode ${this.inode.ino}: extent index entries out of order in ${where}`, nodeOffset + 12 + i * 12);
        prevStart = start;
        if (start <= lblk) pick = i;
        else {
          if (pick >= 0 || i === 0) upper = Math.min(upper, start);
          break;
        }
      }
      if (pick < 0) {
        const first = h.entries > 0 ? node.readUInt32LE(12) : upper;
        return { lblk, len: Math.max(1, Math.min(first, upper) - lblk), pblk: undefined, unwritten: false };
      }
      const e = 12 + pick * 12;
      const child = node.readUInt32LE(e + 4) + node.readUInt16LE(e + 8) * 2 ** 32;
      where = `extent block ${child}`;
      nodeOffset = child * this.sb.blockSize;
      const childNode = await this.vol.block(child, `extent tree of inode ${this.inode.ino}`);
      const ch = this.header(childNode, where, nodeOffset, h.depth - 1);
      this.verifyBlock(childNode, ch, child);
      node = childNode;
      h = ch;
    }
  }

  private inLeaf(node: Buffer, h: NodeHeader, lblk: number, upper: number, nodeOffset: number): BlockRun {
    let prevEnd = 0;
    for (let i = 0; i < h.entries; i++) {
      const e = 12 + i * 12;
      const start = node.readUInt32LE(e);
      let len = node.readUInt16LE(e + 4);
      const unwritten = len > INIT_MAX_LEN;
      if (unwritten) len -= INIT_MAX_LEN;
      if (len === 0) throw this.vol.error(`inode ${this.inode.ino}: empty extent`, nodeOffset + e);
      if (start < prevEnd) throw this.vol.error(`inode ${this.inode.ino}: overlapping or unordered extents`, nodeOffset + e);
      prevEnd = start + len;
      if (lblk < start) return { lblk, len: Math.min(start, upper) - lblk, pblk: undefined, unwritten: false };
      if (lblk < start + len) {
        const pblk = node.readUInt32LE(e + 8) + node.readUInt16LE(e + 6) * 2 ** 32;
        this.vol.checkRange(pblk, len, `extent of inode ${this.inode.ino}`);
        const skip = lblk - start;
        return { lblk, len: len - skip, pblk: pblk + skip, unwritten };
      }
    }
    return { lblk, len: Math.max(1, upper - lblk), pblk: undefined, unwritten: false };
  }
}
