/**
 * Block access to the volume an ext filesystem lies on: every block number is checked against the
 * filesystem's block count and the volume's size before it is read, metadata blocks are kept in a
 * small LRU, and an optional journal overlay (blocks replayed in memory) redirects reads.
 */
import { LRUCache } from 'lru-cache';
import { FormatError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';

/** Metadata blocks kept decoded-ready (inode tables, directory, extent and xattr blocks). */
const METADATA_CACHE_BYTES = 4 * 1024 * 1024;

/** Where a replayed block's current contents live: a journal block, maybe with its magic escaped. */
export interface OverlayBlock {
  /** Byte offset of the journal copy on the volume. */
  offset: number;
  /** jbd2 escaped the first 4 bytes (they were the journal magic): restore them. */
  escaped: boolean;
}

export class BlockVolume {
  private readonly cache: LRUCache<number, Buffer>;
  /** Filesystem block -> its replayed copy (journal: 'apply'). */
  overlay: Map<number, OverlayBlock> | undefined;

  constructor(
    readonly src: ReadAt,
    readonly blockSize: number,
    public blocksCount: number,
  ) {
    this.cache = new LRUCache<number, Buffer>({ maxSize: METADATA_CACHE_BYTES, sizeCalculation: (b) => b.length || 1 });
  }

  get name(): string {
    return this.src.name;
  }

  /** A FormatError naming the image, the structure and the byte offset. */
  error(what: string, offset?: number): FormatError {
    return new FormatError(`ext4 ${what}`, offset === undefined ? { file: this.src.name } : { file: this.src.name, offset });
  }

  checkRange(block: number, count: number, what: string): void {
    if (!Number.isSafeInteger(block) || block < 0 || count < 0 || block + count > this.blocksCount) {
      throw this.error(`${what}: block ${block}${count > 1 ? `..${block + count - 1}` : ''} lies outside the filesystem (${this.blocksCount} blocks)`, Number.isSafeInteger(block) && block >= 0 ? block * this.blockSize : undefined);
    }
  }

  /** One metadata block (cached). Callers must not modify it. */
  async block(block: number, what: string): Promise<Buffer> {
    this.checkRange(block, 1, what);
    const hit = this.cache.get(block);
    if (hit !== undefined) return hit;
    const b = Buffer.from(await this.readBlocksUncached(block, 1, what));
    this.cache.set(block, b);
    return b;
  }

  /** Bytes [offset, offset + length) of a block (metadata, cached). */
  async bytes(block: number, offset: number, length: number, what: string): Promise<Buffer> {
    const b = await this.block(block, what);
    return b.subarray(offset, offset + length);
  }

  /** `count` consecutive blocks, not cached (file data). */
  async readBlocks(block: number, count: number, what: string): Promise<Buffer> {
    this.checkRange(block, count, what);
    return this.readBlocksUncached(block, count, what);
  }

  private async readBlocksUncached(block: number, count: number, what: string): Promise<Buffer> {
    const bs = this.blockSize;
    const ov = this.overlay;
    if (ov === undefined || ov.size === 0) return readExact(this.src, block * bs, count * bs, `ext4 ${what}`);
    let hits = false;
    for (let i = 0; i < count && !hits; i++) hits = ov.has(block + i);
    const base = await readExact(this.src, block * bs, count * bs, `ext4 ${what}`);
    if (!hits) return base;
    const out = Buffer.from(base);
    for (let i = 0; i < count; i++) {
      const o = ov.get(block + i);
      if (o === undefined) continue;
      const copy = await readExact(this.src, o.offset, bs, `ext4 journal copy of block ${block + i}`);
      copy.copy(out, i * bs);
      if (o.escaped) out.writeUInt32BE(0xc03b3998, i * bs);
    }
    return out;
  }

  /** Drops cached blocks (after the journal overlay changes what they read as). */
  clear(): void {
    this.cache.clear();
  }
}
