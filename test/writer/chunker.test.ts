import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { BUZHASH_TABLE, Chunker, ChunkStream, chunkEnds } from '../../src/writer/chunker.js';
import { datastoreDir, pxarDir, upstreamDir, vectorsDir } from '../helpers/paths.js';

interface BoundaryCase {
  avg_chunk_size: number;
  input: string;
  input_sha256: string;
  ends: number[];
}

/** hi32 of the 64-bit product of two u32 values, exact in doubles. */
function mulHi32(a: number, b: number): number {
  const a1 = a >>> 16, a0 = a & 0xffff, b1 = b >>> 16, b0 = b & 0xffff;
  const mid = a1 * b0 + a0 * b1 + Math.floor((a0 * b0) / 65536);
  return (a1 * b1 + Math.floor(mid / 65536)) >>> 0;
}

/** The vectors' xorshift64* byte generator (upstream/README.md), in 32-bit halves. */
function xorshiftBytes(n: number): Buffer {
  let hi = 0x01234567, lo = 0x89abcdef;
  const MH = 0x2545f491, ML = 0x4f6cdd1d;
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) {
    let nlo = lo ^ ((lo >>> 12) | (hi << 20)); let nhi = hi ^ (hi >>> 12); lo = nlo >>> 0; hi = nhi >>> 0;
    nhi = hi ^ ((hi << 25) | (lo >>> 7)); nlo = lo ^ (lo << 25); lo = nlo >>> 0; hi = nhi >>> 0;
    nlo = lo ^ ((lo >>> 27) | (hi << 5)); nhi = hi ^ (hi >>> 27); lo = nlo >>> 0; hi = nhi >>> 0;
    // top byte of the low 64 bits of s * M
    const top = (mulHi32(lo, ML) + Math.imul(hi, ML) + Math.imul(lo, MH)) >>> 0;
    out[i] = top >>> 24;
  }
  return out;
}

function inputFor(name: string, c: BoundaryCase): Buffer {
  if (name === 'test1') {
    const b = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 262144; i++) b.writeUInt32LE(i, i * 4);
    return b;
  }
  if (name.startsWith('zero')) return Buffer.alloc(c.ends[c.ends.length - 1]!);
  return xorshiftBytes(c.ends[c.ends.length - 1]!);
}

/** Chunks `data` through ChunkStream in reads of the given sizes (cycled). */
function streamEnds(data: Buffer, avg: number, readSizes: number[]): number[] {
  const s = new ChunkStream(avg);
  const ends: number[] = [];
  let total = 0;
  let off = 0;
  let k = 0;
  while (off < data.length) {
    const n = Math.max(1, readSizes[k++ % readSizes.length]!);
    for (const chunk of s.push(data.subarray(off, off + n))) ends.push((total += chunk.length));
    off += n;
  }
  const last = s.finish();
  if (last) ends.push((total += last.length));
  return ends;
}

const boundaries = JSON.parse(readFileSync(join(upstreamDir, 'chunker-boundaries.json'), 'utf8')) as {
  cases: Record<string, BoundaryCase>;
};

describe('buzhash chunker', () => {
  it('uses the upstream buzhash table', () => {
    const le = Buffer.from(new Uint32Array(BUZHASH_TABLE.buffer).buffer);
    expect(createHash('sha256').update(le).digest('hex')).toBe('5b52080d38287da9d2e278466e3e0db7ec98e5e8b226f50612a56fa012b1f660');
  });

  for (const [name, c] of Object.entries(boundaries.cases)) {
    it(`reproduces upstream cut points for ${name} (avg ${c.avg_chunk_size})`, () => {
      const data = inputFor(name, c);
      expect(createHash('sha256').update(data).digest('hex')).toBe(c.input_sha256);
      expect(chunkEnds(data, c.avg_chunk_size)).toEqual(c.ends);
      // random read sizes, including 1-byte reads around the window fill
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 3 * c.avg_chunk_size }), { minLength: 1, maxLength: 20 }), (sizes) => {
          expect(streamEnds(data, c.avg_chunk_size, sizes)).toEqual(c.ends);
        }),
        { numRuns: data.length > 8 * 1024 * 1024 ? 1 : 8 },
      );
    });
  }

  it('reproduces the datastore vectors cut points of archive-v1.pxar at every average size', () => {
    const expected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as {
      chunker: { chunk_size_avg: number; input: string; chunk_ends: number[] }[];
    };
    expect(expected.chunker.length).toBeGreaterThan(0);
    for (const c of expected.chunker) {
      const data = readFileSync(join(vectorsDir, c.input));
      expect(chunkEnds(data, c.chunk_size_avg)).toEqual(c.chunk_ends);
      expect(streamEnds(data, c.chunk_size_avg, [1, 7, 4096, 100000, 65, 63])).toEqual(c.chunk_ends);
    }
    void pxarDir;
    void datastoreDir;
  });

  it('byte-at-a-time feeding gives the same boundaries as one call', () => {
    const data = xorshiftBytes(300_000);
    const whole = chunkEnds(data, 65536);
    const ch = new Chunker(65536);
    const ends: number[] = [];
    let len = 0;
    for (let i = 0; i < data.length; i++) {
      len++;
      if (ch.scan(data.subarray(i, i + 1)) >= 0) ends.push(i + 1);
    }
    if (ends[ends.length - 1] !== data.length) ends.push(data.length);
    expect(ends).toEqual(whole);
    expect(len).toBe(data.length);
  });

  it('rejects chunk sizes that are not powers of two', () => {
    expect(() => new Chunker(100000)).toThrow(/power of two/);
  });

  it('handles empty input', () => {
    expect(chunkEnds(Buffer.alloc(0), 65536)).toEqual([]);
    const s = new ChunkStream(65536);
    expect(s.push(Buffer.alloc(0))).toEqual([]);
    expect(s.finish()).toBeUndefined();
  });
});
