/** Fixed (.fidx) and dynamic (.didx) index files: parse, walk chunk ranges, recompute the csum. */
import fc from 'fast-check';
import { DynamicIndex, DYNAMIC_INDEX_MAGIC } from '../../../src/index/dynamic-index.js';
import { FixedIndex, FIXED_INDEX_MAGIC } from '../../../src/index/fixed-index.js';
import type { ChunkIndex } from '../../../src/index/chunk-index.js';
import type { FuzzTarget } from '../framework.js';
import { check, range, snapshotFileSeeds } from './common.js';

const HEADER = 4096;
const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.constantFrom(0n, 1n, 4096n, 4n * 1024n * 1024n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 1n << 24n }),
);

function header(magic: Buffer, fields: [number, bigint][]): Buffer {
  const h = Buffer.alloc(HEADER);
  magic.copy(h, 0);
  for (const [off, v] of fields) h.writeBigUInt64LE(v, off);
  return h;
}

/** Checks the index's answers against each other for a bounded sample of chunks. */
function walk(idx: ChunkIndex): void {
  const n = idx.count;
  const sample = n <= 256 ? range(0, n) : [...range(0, 128), ...range(n - 128, n)];
  let prevEnd = -1;
  for (const i of sample) {
    const r = idx.chunkRange(i);
    check(r.end > r.start && r.start >= 0 && r.end <= idx.size, `chunk ${i} range [${r.start}, ${r.end}) is not inside [0, ${idx.size})`);
    if (i > 0 && prevEnd >= 0 && sample.includes(i - 1)) check(r.start === prevEnd, `chunk ${i} does not start where chunk ${i - 1} ends`);
    prevEnd = r.end;
    check(idx.chunkAt(r.start) === i && idx.chunkAt(r.end - 1) === i, `chunkAt disagrees with chunkRange for chunk ${i}`);
    check(idx.digest(i).length === 32, 'digest is not 32 bytes');
  }
  if (n > 0) check(idx.chunkRange(n - 1).end === idx.size, 'the last chunk does not end at the index size');
  idx.computeCsum();
}

export const fixedIndexTarget: FuzzTarget = {
  name: 'fixed-index',
  description: 'fixed index (.fidx) parse, ranges, csum',
  async prepare() {
    const seeds = snapshotFileSeeds((n) => n.endsWith('.fidx'), (d) => [...range(0, 80), ...range(HEADER, d.length, 32)]);
    const structured = fc
      .record({ size: u64, chunkSize: u64, digests: fc.nat({ max: 64 }), extra: fc.nat({ max: 40 }) })
      .map(({ size, chunkSize, digests, extra }) =>
        Buffer.concat([header(FIXED_INDEX_MAGIC, [[64, size], [72, chunkSize]]), Buffer.alloc(digests * 32 + (extra % 32), 0xab)]),
      );
    return {
      seeds,
      structured,
      async decode(input) {
        walk(FixedIndex.parse(input, 'fuzz/x.img.fidx'));
      },
    };
  },
};

export const dynamicIndexTarget: FuzzTarget = {
  name: 'dynamic-index',
  description: 'dynamic index (.didx) parse, ranges, csum',
  async prepare() {
    const seeds = snapshotFileSeeds((n) => n.endsWith('.didx'), (d) => [...range(0, 64), ...range(HEADER, d.length, 40)]);
    const structured = fc
      .record({ ends: fc.array(u64, { maxLength: 64 }), sorted: fc.boolean(), extra: fc.nat({ max: 39 }) })
      .map(({ ends, sorted, extra }) => {
        const list = sorted ? [...ends].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) : ends;
        const body = Buffer.alloc(list.length * 40 + extra, 0xcd);
        list.forEach((e, i) => body.writeBigUInt64LE(e, i * 40));
        return Buffer.concat([header(DYNAMIC_INDEX_MAGIC, []), body]);
      });
    return {
      seeds,
      structured,
      async decode(input) {
        walk(DynamicIndex.parse(input, 'fuzz/x.pxar.didx'));
      },
    };
  },
};
