import { describe, expect, it } from 'vitest';
import { AlignedBufferPool } from '../../src/io/aligned-pool.js';

describe('AlignedBufferPool', () => {
  it('slots are whole 64 KiB pages, disjoint and shared memory', async () => {
    const pool = new AlignedBufferPool(100_000, 3);
    expect(pool.slotBytes).toBe(131072);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(a.buf.length).toBe(131072);
    expect(a.buf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(a.buf.byteOffset % 65536).toBe(0);
    expect(b.buf.byteOffset % 65536).toBe(0);
    a.buf.fill(1);
    b.buf.fill(2);
    expect(a.buf.every((x) => x === 1)).toBe(true);
    a.release();
    b.release();
  });

  it('acquire waits while every slot is lent and gets the first one released', async () => {
    const pool = new AlignedBufferPool(4096, 2);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(pool.available).toBe(0);
    let got: Buffer | undefined;
    const waiting = pool.acquire().then((s) => {
      got = s.buf;
      return s;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toBeUndefined();
    b.release();
    const c = await waiting;
    expect(c.buf.byteOffset).toBe(b.buf.byteOffset);
    a.release();
    c.release();
    expect(pool.available).toBe(2);
  });

  it('a second release of one lease does not hand its slot out twice', async () => {
    const pool = new AlignedBufferPool(4096, 2);
    const a = await pool.acquire();
    a.release();
    a.release();
    expect(pool.available).toBe(2);
    const x = await pool.acquire();
    const y = await pool.acquire();
    expect(x.buf.byteOffset).not.toBe(y.buf.byteOffset);
  });

  it('refuses a pool without slots', () => {
    expect(() => new AlignedBufferPool(4096, 0)).toThrow(RangeError);
  });
});
