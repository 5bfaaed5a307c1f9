/**
 * The file allocation table of FAT12/16/32 and exFAT: one entry per cluster, naming the next
 * cluster of a chain, its end, a bad cluster or a free one. The table is read in small pages on
 * demand through a bounded cache, so following one chain costs the pages it touches.
 */
import { LRUCache } from 'lru-cache';
import { FormatError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';

export type FatFlavour = 'fat12' | 'fat16' | 'fat32' | 'exfat';

/** What an entry says about the cluster after this one. */
export type FatLink = { kind: 'next'; cluster: number } | { kind: 'end' } | { kind: 'free' } | { kind: 'bad' };

const PAGE = 4096;
const PAGES_CACHED = 64;

export class FatTable {
  private readonly pages = new LRUCache<number, Buffer>({ max: PAGES_CACHED });
  private readonly bytes: number;

  /**
   * @param offset byte offset of the table in the volume
   * @param length bytes the table occupies
   * @param clusterCount clusters of the data area (valid cluster numbers are 2..clusterCount+1)
   */
  constructor(
    private readonly src: ReadAt,
    readonly flavour: FatFlavour,
    private readonly offset: number,
    length: number,
    readonly clusterCount: number,
  ) {
    this.bytes = length;
    const needed = this.entryByte(clusterCount + 1) + this.width();
    if (needed > length) {
      throw new FormatError(`${flavour.toUpperCase()} table of ${length} bytes cannot hold ${clusterCount} clusters`, {
        file: src.name,
        offset,
      });
    }
  }

  /** True for a number that names a cluster of the data area. */
  isCluster(n: number): boolean {
    return n >= 2 && n < this.clusterCount + 2;
  }

  private width(): number {
    return this.flavour === 'fat12' || this.flavour === 'fat16' ? 2 : 4;
  }

  private entryByte(cluster: number): number {
    switch (this.flavour) {
      case 'fat12':
        return Math.floor((cluster * 3) / 2);
      case 'fat16':
        return cluster * 2;
      default:
        return cluster * 4;
    }
  }

  private async page(index: number): Promise<Buffer> {
    const hit = this.pages.get(index);
    if (hit !== undefined) return hit;
    const start = index * PAGE;
    const len = Math.min(PAGE, this.bytes - start);
    const data = Buffer.from(await readExact(this.src, this.offset + start, len, 'file allocation table'));
    this.pages.set(index, data);
    return data;
  }

  private async u8(pos: number): Promise<number> {
    const b = (await this.page(Math.floor(pos / PAGE)))[pos % PAGE];
    if (b === undefined) throw new FormatError(`file allocation table entry at byte ${pos} lies past the table`, { file: this.src.name, offset: this.offset + pos });
    return b;
  }

  /** The raw entry of `cluster` (0..clusterCount+1). */
  async raw(cluster: number): Promise<number> {
    const pos = this.entryByte(cluster);
    const width = this.width();
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + (await this.u8(pos + i));
    if (this.flavour === 'fat12') return cluster % 2 === 0 ? v & 0xfff : v >>> 4;
    if (this.flavour === 'fat32') return v & 0x0fffffff;
    return v;
  }

  /** The link stored for `cluster`, classified. */
  async link(cluster: number): Promise<FatLink> {
    const v = await this.raw(cluster);
    if (v === 0) return { kind: 'free' };
    switch (this.flavour) {
      case 'fat12':
        return v >= 0xff8 ? { kind: 'end' } : v === 0xff7 ? { kind: 'bad' } : { kind: 'next', cluster: v };
      case 'fat16':
        return v >= 0xfff8 ? { kind: 'end' } : v === 0xfff7 ? { kind: 'bad' } : { kind: 'next', cluster: v };
      case 'fat32':
        return v >= 0x0ffffff8 ? { kind: 'end' } : v === 0x0ffffff7 ? { kind: 'bad' } : { kind: 'next', cluster: v };
      case 'exfat':
        // 0xFFFFFFF8..0xFFFFFFFE are not valid links in exFAT; they fail the range check.
        return v === 0xffffffff ? { kind: 'end' } : v === 0xfffffff7 ? { kind: 'bad' } : { kind: 'next', cluster: v };
    }
  }
}
