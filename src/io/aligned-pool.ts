/**
 * A small pool of page-aligned, reused read buffers in shared memory.
 *
 * Why: reading a chunk file through the page cache costs a kernel copy into a fresh buffer, and
 * on a VM whose freed memory goes back to the host every fresh page is a fault on both sides.
 * O_DIRECT into a reused page-aligned buffer reads cold chunk files about three times as fast as
 * buffered reads into fresh buffers (docs/performance.md). O_DIRECT needs page-aligned memory, which a Node Buffer does not promise; a
 * WebAssembly memory's base is page-aligned. Shared (a SharedArrayBuffer), so a decode worker
 * reads a slot in place instead of receiving a copy.
 *
 * A block as large as the chunk being read is lent out until release(); acquire() waits while the
 * pool lacks the room, which also bounds the raw chunk bytes in flight (backpressure on read-ahead).
 * Blocks sized to their chunk (rather than fixed slots sized for the largest chunk, 16 MiB) keep
 * the touched, resident part of the pool to what is read at once.
 */

import { PageRuns } from './page-runs.js';

const WASM_PAGE = 64 * 1024;

/** The part of the WebAssembly API used here (the project's lib settings do not declare it). */
interface SharedWasmMemory {
  readonly buffer: SharedArrayBuffer;
}
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => SharedWasmMemory;
};

export interface PoolSlot {
  /** The block: at least the bytes asked for, whole pages, page-aligned. Valid until release(). */
  readonly buf: Buffer;
  release(): void;
}

export class AlignedBufferPool {
  readonly capacity: number;
  private readonly memory: SharedWasmMemory;
  private readonly pages: PageRuns;
  /** Requests waiting for room, served strictly in order (a large one is not starved). */
  private readonly waiters: { need: number; resolve: (slot: PoolSlot) => void }[] = [];

  constructor(capacityBytes: number) {
    const pages = Math.floor(capacityBytes / WASM_PAGE);
    if (!Number.isSafeInteger(pages) || pages < 1) throw new RangeError(`pool needs at least one 64 KiB page, got ${capacityBytes} bytes`);
    this.capacity = pages * WASM_PAGE;
    this.pages = new PageRuns(pages);
    // Whole wasm pages, so every block starts page-aligned like the memory itself.
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  }

  /** Bytes lent out right now (whole pages). */
  get usedBytes(): number {
    return this.pages.usedPages * WASM_PAGE;
  }

  /**
   * A block of at least `bytes` bytes, waiting while the pool lacks the room (undefined at once
   * when it could never hold them: the caller reads some other way).
   */
  acquire(bytes: number): Promise<PoolSlot> | undefined {
    const need = Math.max(1, Math.ceil(bytes / WASM_PAGE));
    if (need > this.pages.pages) return undefined;
    if (this.waiters.length === 0) {
      const first = this.pages.alloc(need);
      if (first >= 0) return Promise.resolve(this.block(first, need));
    }
    return new Promise<PoolSlot>((resolve) => this.waiters.push({ need, resolve }));
  }

  private block(first: number, need: number): PoolSlot {
    let released = false;
    return {
      buf: Buffer.from(this.memory.buffer, first * WASM_PAGE, need * WASM_PAGE),
      release: () => {
        if (released) return; // a second release must not free the pages twice
        released = true;
        this.pages.free(first, need);
        this.serveWaiters();
      },
    };
  }

  private serveWaiters(): void {
    while (this.waiters.length > 0) {
      const w = this.waiters[0]!;
      const first = this.pages.alloc(w.need);
      if (first < 0) return;
      this.waiters.shift();
      w.resolve(this.block(first, w.need));
    }
  }
}
