import type { ReadAt } from '../../src/io/read-at.js';

/** Wraps a ReadAt and records every read (offset, returned length). */
export class CountingReadAt implements ReadAt {
  reads: { offset: number; length: number }[] = [];
  constructor(private readonly inner: ReadAt) {}
  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  async readAt(offset: number, length: number): Promise<Buffer> {
    const b = await this.inner.readAt(offset, length);
    this.reads.push({ offset, length: b.length });
    return b;
  }
  get bytes(): number {
    return this.reads.reduce((s, r) => s + r.length, 0);
  }
  reset(): void {
    this.reads = [];
  }
}
