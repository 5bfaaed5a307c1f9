/**
 * The plaintext arena's allocator: blocks never overlap, freed runs merge back, a request no
 * run can hold fails instead of overlapping, and double frees are caught.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ARENA_PAGE_BYTES, PlaintextArena, type ArenaBlock } from '../../src/chunks/plaintext-arena.js';
import { PageRuns } from '../../src/io/page-runs.js';

const PAGE = ARENA_PAGE_BYTES;

/** Where a block lies in the arena's memory, in bytes. */
function span(b: ArenaBlock): [number, number] {
  return [b.buf.byteOffset, b.buf.byteOffset + b.capacity];
}

describe('PageRuns: memory touched by a stream of blocks', () => {
  it('a stream of varying sizes with a few blocks live stays within the pages it needs', () => {
    // A sequential reader's chunks: sizes vary, the oldest is freed once 3 are live. Every page
    // first used costs a fault and stays resident, so the blocks must keep to a small region.
    const runs = new PageRuns(1024);
    const live: [number, number][] = [];
    let highest = 0;
    let seed = 7;
    for (let i = 0; i < 2000; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const need = 48 + (seed % 33); // 48-80 pages: 3-5 MiB chunks in 64 KiB pages
      const first = runs.alloc(need);
      expect(first).toBeGreaterThanOrEqual(0);
      live.push([first, need]);
      highest = Math.max(highest, first + need);
      if (live.length > 3) runs.free(...live.shift()!);
    }
    // Best fit keeps the holes a stream leaves reusable: 419 pages here, for 4 blocks of <= 80.
    expect(highest).toBeLessThanOrEqual(6 * 80);
  });
});

describe('PlaintextArena', () => {
  it('hands out page-rounded blocks of shared memory, and takes them back', () => {
    const a = new PlaintextArena(10 * PAGE + 123);
    expect(a.capacity).toBe(10 * PAGE);
    const b = a.alloc(PAGE + 1)!;
    expect(b.buf.length).toBe(PAGE + 1);
    expect(b.capacity).toBe(2 * PAGE);
    expect(b.buf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(a.usedBytes).toBe(2 * PAGE);
    b.free();
    expect(a.usedBytes).toBe(0);
    expect(() => b.free()).toThrow(/twice/);
  });

  it('fails a request no free run can hold, and refuses nonsense sizes', () => {
    const a = new PlaintextArena(4 * PAGE);
    const x = a.alloc(2 * PAGE)!;
    const y = a.alloc(PAGE)!;
    expect(a.alloc(2 * PAGE)).toBeUndefined();
    expect(a.alloc(0)).toBeUndefined();
    expect(a.alloc(-1)).toBeUndefined();
    expect(a.alloc(1.5)).toBeUndefined();
    x.free();
    // Pages 0-1 and 3 are free, but not together.
    expect(a.alloc(3 * PAGE)).toBeUndefined();
    y.free();
    expect(a.alloc(4 * PAGE)).toBeDefined();
    expect(new PlaintextArena(PAGE - 1).alloc(1)).toBeUndefined();
  });

  it('picks the smallest free run that fits (best fit), keeping large runs whole', () => {
    const a = new PlaintextArena(8 * PAGE);
    const blocks = [1, 3, 1, 2].map((p) => a.alloc(p * PAGE)!); // pages 0, 1-3, 4, 5-6; 7 free
    blocks[0]!.free();
    blocks[1]!.free(); // free: 0-3 (merged) and 7
    const one = a.alloc(PAGE)!;
    expect(span(one)[0]).toBe(7 * PAGE);
    const four = a.alloc(4 * PAGE)!;
    expect(span(four)[0]).toBe(0);
  });

  it('random alloc/free sequences never overlap live blocks and merge back to one free run', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 6 * PAGE }), fc.nat()), { maxLength: 200 }), (ops) => {
        const a = new PlaintextArena(32 * PAGE);
        const live: ArenaBlock[] = [];
        for (const [alloc, size, pick] of ops) {
          if (alloc || live.length === 0) {
            const b = a.alloc(size);
            if (b === undefined) continue;
            const [s, e] = span(b);
            for (const o of live) {
              const [os, oe] = span(o);
              expect(e <= os || s >= oe).toBe(true);
            }
            expect(e).toBeLessThanOrEqual(a.capacity);
            live.push(b);
          } else {
            live.splice(pick % live.length, 1)[0]!.free();
          }
          expect(a.usedBytes).toBe(live.reduce((n, b) => n + b.capacity, 0));
        }
        for (const b of live) b.free();
        expect(a.usedBytes).toBe(0);
        expect(a.alloc(a.capacity)).toBeDefined();
      }),
      { numRuns: 300 },
    );
  });
});
