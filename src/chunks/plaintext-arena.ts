/**
 * Reused memory for decoded chunks: one SharedArrayBuffer carved into blocks, handed out and
 * taken back by the chunk reader, so a chunk's plaintext lands in pages that are already
 * resident instead of fresh ones.
 *
 * Why: with a fresh buffer per decoded chunk, a stream spent most of its CPU on the decrypting
 * thread faulting in new pages and on the main thread collecting garbage (every 4 MiB chunk it
 * received counted as new external memory), and freed chunks piled up until then, far beyond
 * the cache's bound. The arena cut both the CPU per GiB and the peak RSS (docs/performance.md).
 *
 * Shared, so a decode worker writes plaintext straight into a block and another reads it there.
 * The buffer is allocated lazily by the OS: untouched blocks cost no memory.
 *
 * Blocks are whole pages of PAGE_BYTES; allocation is best fit over a sorted list of free runs,
 * and freed blocks merge with their free neighbours. A request that no run can hold fails
 * (undefined): the caller then makes room (evicts cached chunks) or uses ordinary memory.
 */

import { PageRuns } from '../io/page-runs.js';

export const ARENA_PAGE_BYTES = 64 * 1024;

/** A block of the arena, lent until free(). */
export interface ArenaBlock {
  /** The block's first `bytes` bytes (a view of shared memory). */
  readonly buf: Buffer;
  /** Bytes the block occupies in the arena (whole pages). */
  readonly capacity: number;
  /** Returns the block; a second call is a bug and throws. */
  free(): void;
}

export class PlaintextArena {
  readonly capacity: number;
  private memory: SharedArrayBuffer | undefined;
  private readonly pages: PageRuns;

  constructor(capacityBytes: number) {
    this.pages = new PageRuns(Math.max(0, Math.floor(capacityBytes / ARENA_PAGE_BYTES)));
    this.capacity = this.pages.pages * ARENA_PAGE_BYTES;
  }

  /** Bytes lent out right now (whole pages). */
  get usedBytes(): number {
    return this.pages.usedPages * ARENA_PAGE_BYTES;
  }

  /** A block holding `bytes` bytes, or undefined when no free run is large enough. */
  alloc(bytes: number): ArenaBlock | undefined {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) return undefined;
    const need = Math.ceil(bytes / ARENA_PAGE_BYTES);
    const first = this.pages.alloc(need);
    if (first < 0) return undefined;
    this.memory ??= new SharedArrayBuffer(this.capacity);
    let freed = false;
    return {
      buf: Buffer.from(this.memory, first * ARENA_PAGE_BYTES, bytes),
      capacity: need * ARENA_PAGE_BYTES,
      free: () => {
        if (freed) throw new Error('arena block freed twice');
        freed = true;
        this.pages.free(first, need);
      },
    };
  }
}
