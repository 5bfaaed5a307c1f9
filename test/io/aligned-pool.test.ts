import { describe, expect, it } from 'vitest';
import { AlignedBufferPool } from '../../src/io/aligned-pool.js';

const PAGE = 65536;

describe('AlignedBufferPool', () => {
  it('lends page-aligned blocks of whole 64 KiB pages in shared memory, disjoint', async () => {
    const pool = new AlignedBufferPool(4 * PAGE);
    const a = await pool.acquire(100_000)!;
    const b = await pool.acquire(1)!;
    expect(a.buf.length).toBe(2 * PAGE);
    expect(b.buf.length).toBe(PAGE);
    expect(a.buf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(a.buf.byteOffset % PAGE).toBe(0);
    expect(b.buf.byteOffset % PAGE).toBe(0);
    a.buf.fill(1);
    b.buf.fill(2);
    expect(a.buf.every((x) => x === 1)).toBe(true);
    expect(pool.usedBytes).toBe(3 * PAGE);
    a.release();
    b.release();
    expect(pool.usedBytes).toBe(0);
  });

  it('a request larger than the whole pool gets undefined at once (the caller reads otherwise)', () => {
    const pool = new AlignedBufferPool(2 * PAGE);
    expect(pool.acquire(2 * PAGE + 1)).toBeUndefined();
    expect(pool.acquire(2 * PAGE)).toBeDefined();
  });

  it('waits while the pool lacks room; waiters are served in order, a large one first', async () => {
    const pool = new AlignedBufferPool(3 * PAGE);
    const a = await pool.acquire(2 * PAGE)!;
    const b = await pool.acquire(PAGE)!;
    const served: string[] = [];
    const big = pool.acquire(3 * PAGE)!.then((s) => (served.push('big'), s));
    const small = pool.acquire(PAGE)!.then((s) => (served.push('small'), s));
    await new Promise((r) => setTimeout(r, 10));
    expect(served).toEqual([]);
    b.release(); // room for the small one, but the big one asked first
    await new Promise((r) => setTimeout(r, 10));
    expect(served).toEqual([]);
    a.release();
    const bigSlot = await big;
    expect(bigSlot.buf.length).toBe(3 * PAGE);
    bigSlot.release();
    const smallSlot = await small;
    expect(served).toEqual(['big', 'small']);
    smallSlot.release();
    expect(pool.usedBytes).toBe(0);
  });

  it('a second release of one block does not free its pages twice', async () => {
    const pool = new AlignedBufferPool(2 * PAGE);
    const a = await pool.acquire(PAGE)!;
    a.release();
    a.release();
    expect(pool.usedBytes).toBe(0);
    const x = await pool.acquire(PAGE)!;
    const y = await pool.acquire(PAGE)!;
    expect(x.buf.byteOffset).not.toBe(y.buf.byteOffset);
    expect(pool.acquire(1)).toBeDefined(); // a third waits (no room), never overlaps
    expect(pool.usedBytes).toBe(2 * PAGE);
  });

  it('refuses a pool smaller than one page', () => {
    expect(() => new AlignedBufferPool(4096)).toThrow(RangeError);
  });
});
