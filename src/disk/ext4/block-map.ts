/**
 * Indirect block maps (ext2/3 and ext4 files without the EXTENTS flag): 12 direct pointers, then
 * single, double and triple indirect blocks. The depth is fixed by the format, so a walk is at
 * most three block reads; every pointer is checked against the filesystem.
 */
import type { Inode } from './inode.js';
import { type BlockMapper, type BlockRun } from './mapping.js';
import type { BlockVolume } from './volume.js';

const DIRECT = 12;

export class IndirectMapper implements BlockMapper {
  private readonly per: number;

  constructor(
    private readonly vol: BlockVolume,
    private readonly inode: Inode,
  ) {
    this.per = vol.blockSize / 4;
  }

  async map(lblk: number): Promise<BlockRun> {
    const per = this.per;
    const ib = this.inode.iBlock;
    if (lblk < DIRECT) return runIn(ib, 0, DIRECT, lblk, lblk, this.vol, this.inode.ino);
    let rel = lblk - DIRECT;
    let span = per;
    for (let level = 1; level <= 3; level++) {
      if (rel < span) return this.walk(ib.readUInt32LE((DIRECT + level - 1) * 4), level, rel, lblk);
      rel -= span;
      span *= per;
    }
    return { lblk, len: 1, pblk: undefined, unwritten: false };
  }

  /** Follows `level` indirect blocks from `ptr` to the pointer of relative block `rel`. */
  private async walk(ptr: number, level: number, rel: number, lblk: number): Promise<BlockRun> {
    const per = this.per;
    let stride = per ** (level - 1);
    let cur = ptr;
    for (let l = level; l >= 1; l--) {
      if (cur === 0) {
        // A hole as large as what this pointer would cover, from lblk on.
        const covered = stride * per;
        return { lblk, len: covered - (rel % covered), pblk: undefined, unwritten: false };
      }
      const blk = await this.vol.block(cur, `indirect block of inode ${this.inode.ino}`);
      const idx = Math.floor(rel / stride);
      if (l === 1) return runIn(blk, 0, per, idx, lblk, this.vol, this.inode.ino);
      cur = blk.readUInt32LE(idx * 4);
      rel %= stride;
      stride /= per;
    }
    return { lblk, len: 1, pblk: undefined, unwritten: false };
  }
}

/** The run starting at pointer `idx` of a pointer array: contiguous blocks, or a run of holes. */
function runIn(arr: Buffer, from: number, to: number, idx: number, lblk: number, vol: BlockVolume, ino: number): BlockRun {
  const first = arr.readUInt32LE((from + idx) * 4);
  let n = 1;
  while (from + idx + n < to) {
    const next = arr.readUInt32LE((from + idx + n) * 4);
    if (first === 0 ? next !== 0 : next !== first + n) break;
    n++;
  }
  if (first === 0) return { lblk, len: n, pblk: undefined, unwritten: false };
  vol.checkRange(first, n, `block map of inode ${ino}`);
  return { lblk, len: n, pblk: first, unwritten: false };
}
