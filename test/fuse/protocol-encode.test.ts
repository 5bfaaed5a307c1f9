/**
 * The reply encoders write 64-bit fields from JS numbers without BigInt; check them against
 * BigInt's own encoding at the edges (negative times before 1970, values past 2^32 and 2^52).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeAttr, encodeDirent } from '../../src/fuse/protocol.js';

const attr = (over: Partial<Parameters<typeof encodeAttr>[2]>): Parameters<typeof encodeAttr>[2] => ({
  ino: 1,
  size: 0,
  blocks: 0,
  mtimeSec: 0,
  mtimeNsec: 0,
  mode: 0o100644,
  nlink: 1,
  uid: 0,
  gid: 0,
  rdev: 0,
  ...over,
});

describe('FUSE reply encoding of 64-bit fields', () => {
  const edges = [0, 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 44 + 5, 2 ** 52 + 1, Number.MAX_SAFE_INTEGER];
  const signedEdges = [...edges, -1, -2, -(2 ** 31), -(2 ** 32), -(2 ** 32) - 1, -123456789, Number.MIN_SAFE_INTEGER];

  it('writes ino, size, blocks and signed times exactly as BigInt would', () => {
    const check = (ino: number, size: number, t: number): void => {
      const b = Buffer.alloc(88);
      encodeAttr(b, 0, attr({ ino, size, blocks: size, mtimeSec: t }));
      expect(b.readBigUInt64LE(0)).toBe(BigInt(ino));
      expect(b.readBigUInt64LE(8)).toBe(BigInt(size));
      expect(b.readBigUInt64LE(16)).toBe(BigInt(size));
      for (const off of [24, 32, 40]) expect(b.readBigInt64LE(off)).toBe(BigInt(t));
    };
    for (const v of edges) for (const t of signedEdges) check(v, v, t);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }), (v, t) => {
        check(v, v, t);
      }),
      { numRuns: 2000 },
    );
  });

  it('writes dirent inode and offset as u64', () => {
    for (const v of edges) {
      const b = Buffer.alloc(64);
      encodeDirent(b, 0, v, v, 0o100644, Buffer.from('name'));
      expect(b.readBigUInt64LE(0)).toBe(BigInt(v));
      expect(b.readBigUInt64LE(8)).toBe(BigInt(v));
    }
  });
});
