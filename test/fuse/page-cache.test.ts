import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PageCache, PAGE_SIZE } from '../../src/fuse/page-cache.js';

const file = randomBytes(10 * PAGE_SIZE + 123);

function loader(src: Buffer) {
  const calls: [number, number][] = [];
  const load = async (o: number, l: number): Promise<Buffer> => {
    calls.push([o, l]);
    return src.subarray(o, o + l);
  };
  return { calls, load };
}

describe('PageCache', () => {
  it('serves the exact bytes of any small range, loading page-aligned ranges once', async () => {
    const c = new PageCache(1 << 20);
    const { calls, load } = loader(file);
    for (const [o, l] of [
      [0, 10],
      [4000, 200],
      [PAGE_SIZE * 3 + 5, PAGE_SIZE * 2],
      [file.length - 50, 4096],
      [file.length - 1, 1],
    ] as const) {
      expect((await c.read(7, file.length, o, l, load)).equals(file.subarray(o, Math.min(file.length, o + l)))).toBe(true);
    }
    for (const [o, l] of calls) {
      expect(o % PAGE_SIZE).toBe(0);
      expect(l % PAGE_SIZE === 0 || o + l === file.length).toBe(true);
    }
    const loads = calls.length;
    const hits = c.hits; // the last byte's page came with the read before it
    expect(hits).toBe(1);
    // Everything read so far is cached: the same ranges again load nothing.
    expect((await c.read(7, file.length, 4000, 200, load)).equals(file.subarray(4000, 4200))).toBe(true);
    expect((await c.read(7, file.length, PAGE_SIZE * 3 + 5, PAGE_SIZE * 2, load)).equals(file.subarray(PAGE_SIZE * 3 + 5, PAGE_SIZE * 5 + 5))).toBe(true);
    expect(calls.length).toBe(loads);
    expect(c.hits).toBe(hits + 2);
  });

  it('keeps files apart, returns nothing past the end, never caches a short answer', async () => {
    const c = new PageCache(1 << 20);
    const other = randomBytes(file.length);
    await c.read(1, file.length, 0, 100, loader(file).load);
    expect((await c.read(2, other.length, 0, 100, loader(other).load)).equals(other.subarray(0, 100))).toBe(true);
    expect((await c.read(1, file.length, file.length, 100, loader(file).load)).length).toBe(0);
    const short = loader(file.subarray(0, 100));
    expect((await c.read(3, file.length, 50, 100, short.load)).equals(file.subarray(50, 100))).toBe(true);
    await c.read(3, file.length, 50, 100, short.load);
    expect(short.calls.length).toBe(2);
  });

  it('stays within its byte bound', async () => {
    const c = new PageCache(4 * PAGE_SIZE);
    const { calls, load } = loader(file);
    for (let p = 0; p < 10; p++) await c.read(1, file.length, p * PAGE_SIZE, 10, load);
    await c.read(1, file.length, 0, 10, load); // evicted long ago
    expect(calls.length).toBe(11);
  });
});
