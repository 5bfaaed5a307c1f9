/**
 * What the kernel's page cache would have kept for files the mount serves with FOPEN_DIRECT_IO:
 * the 4 KiB pages of recent small reads, in a byte-bounded LRU.
 *
 * Why: large files bypass the kernel page cache (see FuseAdapter: filling fresh page-cache pages
 * cost more than half the time of a sequential read here), but a random reader (a database file,
 * a forensic tool on a disk image) re-reads the same small ranges, and without the page cache
 * each re-read whose chunk has left the chunk cache would decode a whole chunk again. Only small
 * reads are kept: a streaming reader's data is not re-read and would only evict them.
 */
import { LRUCache } from 'lru-cache';

export const PAGE_SIZE = 4096;
/** Reads up to this size are served from and kept in the cache. */
export const SMALL_READ_MAX = 128 * 1024;

export class PageCache {
  private readonly pages: LRUCache<string, Buffer>;
  hits = 0;
  misses = 0;

  constructor(maxBytes: number) {
    this.pages = new LRUCache<string, Buffer>({ maxSize: Math.max(PAGE_SIZE, maxBytes), sizeCalculation: (b) => Math.max(1, b.length) });
  }

  /**
   * Bytes [offset, offset + length) of file `file` (of `size` bytes), from cached pages where all
   * of them are present, else read through `load` (called with a page-aligned range) and kept.
   */
  async read(file: number, size: number, offset: number, length: number, load: (offset: number, length: number) => Promise<Buffer>): Promise<Buffer> {
    const end = Math.min(size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const first = Math.floor(offset / PAGE_SIZE);
    const last = Math.floor((end - 1) / PAGE_SIZE);
    const cached: Buffer[] = [];
    for (let p = first; p <= last; p++) {
      const page = this.pages.get(`${file}/${p}`);
      if (page === undefined) break;
      cached.push(page);
    }
    if (cached.length === last - first + 1) {
      this.hits++;
      return slice(cached, offset - first * PAGE_SIZE, end - offset);
    }
    this.misses++;
    const from = first * PAGE_SIZE;
    const span = Math.min(size, (last + 1) * PAGE_SIZE) - from;
    const data = await load(from, span);
    // A short answer (a file shorter than its stat said) is passed on as is, never cached.
    if (data.length !== span) return data.subarray(Math.min(data.length, offset - from), Math.min(data.length, end - from));
    for (let p = first; p <= last; p++) {
      const at = (p - first) * PAGE_SIZE;
      // A copy: `data` may be a view of a whole cached chunk, which a page must not keep alive.
      this.pages.set(`${file}/${p}`, Buffer.from(data.subarray(at, Math.min(data.length, at + PAGE_SIZE))));
    }
    return data.subarray(offset - from, end - from);
  }
}

/** Bytes [from, from + length) of consecutive pages. */
function slice(pages: Buffer[], from: number, length: number): Buffer {
  if (pages.length === 1) return pages[0]!.subarray(from, from + length);
  const out = Buffer.allocUnsafe(length);
  let o = 0;
  let skip = from;
  for (const p of pages) {
    if (skip >= p.length) {
      skip -= p.length;
      continue;
    }
    const n = Math.min(p.length - skip, length - o);
    p.copy(out, o, skip, skip + n);
    o += n;
    skip = 0;
    if (o === length) break;
  }
  return out;
}
