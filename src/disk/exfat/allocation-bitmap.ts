/**
 * The exFAT allocation bitmap: one bit per cluster of the heap, set when the cluster is in use.
 * Read in pages on demand through a small cache; a file's clusters must all be in use, which
 * catches entries that point into free space.
 */
import { LRUCache } from 'lru-cache';

const PAGE = 4096;

export class AllocationBitmap {
  private readonly pages = new LRUCache<number, Buffer>({ max: 32 });

  /** `read(offset, length)` reads bytes of the bitmap file (`bytes` long). */
  constructor(
    private readonly read: (offset: number, length: number) => Promise<Buffer>,
    private readonly bytes: number,
  ) {}

  private async page(i: number): Promise<Buffer> {
    const hit = this.pages.get(i);
    if (hit !== undefined) return hit;
    const data = Buffer.from(await this.read(i * PAGE, Math.min(PAGE, this.bytes - i * PAGE)));
    this.pages.set(i, data);
    return data;
  }

  /** The first cluster of [first, first + count) that is free, or undefined when all are in use. */
  async firstFree(first: number, count: number): Promise<number | undefined> {
    let c = first;
    const end = first + count;
    while (c < end) {
      const pageIndex = Math.floor((c - 2) / 8 / PAGE);
      const page = await this.page(pageIndex);
      const pageEndCluster = Math.min(end, 2 + (pageIndex + 1) * PAGE * 8);
      for (; c < pageEndCluster; c++) {
        const bit = c - 2;
        if (((page[(bit >>> 3) - pageIndex * PAGE] ?? 0) & (1 << (bit & 7))) === 0) return c;
      }
    }
    return undefined;
  }
}
