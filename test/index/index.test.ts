import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FormatError, IntegrityError, LimitError } from '../../src/errors.js';
import { checkIndexAgainstManifest } from '../../src/index/chunk-index.js';
import { DYNAMIC_INDEX_MAGIC, DynamicIndex } from '../../src/index/dynamic-index.js';
import { FIXED_INDEX_MAGIC, FixedIndex } from '../../src/index/fixed-index.js';
import { parseIndex } from '../../src/index/parse-index.js';
import { datastoreDir } from '../helpers/paths.js';
import { archiveFacts, expectedSnapshots } from '../helpers/datastore-expected.js';

const indexFiles = expectedSnapshots().flatMap((s) =>
  Object.entries(s.files)
    .filter(([n]) => n.endsWith('idx'))
    .map(([n, f]) => ({ rel: `${s.path}/${n}`, f })),
);

function dynamicIndex(ends: number[]): Buffer {
  const b = Buffer.alloc(4096 + 40 * ends.length);
  DYNAMIC_INDEX_MAGIC.copy(b, 0);
  ends.forEach((e, i) => {
    b.writeBigUInt64LE(BigInt(e), 4096 + 40 * i);
    b.fill(i & 0xff, 4096 + 40 * i + 8, 4096 + 40 * i + 40);
  });
  return b;
}

function fixedIndex(size: number, chunkSize: number, count = Math.ceil(size / chunkSize)): Buffer {
  const b = Buffer.alloc(4096 + 32 * count);
  FIXED_INDEX_MAGIC.copy(b, 0);
  b.writeBigUInt64LE(BigInt(size), 64);
  b.writeBigUInt64LE(BigInt(chunkSize), 72);
  return b;
}

function expectError(fn: () => unknown, cls: new (...a: never[]) => Error, name: string): Error {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  expect((err as Error).message).toContain(name);
  return err as Error;
}

describe('vector indexes', () => {
  for (const { rel, f } of indexFiles) {
    it(`${rel}: csum, size, count, ranges, digests`, () => {
      const raw = readFileSync(join(datastoreDir, rel));
      const idx = parseIndex(raw, rel);
      const { csum, size } = idx.computeCsum();
      expect(csum.toString('hex')).toBe(f.index_csum);
      expect(size).toBe(archiveFacts(f).size);
      expect(csum.toString('hex')).toBe(createHash('sha256').update(raw.subarray(4096)).digest('hex'));
      expect(idx.count).toBe(f.chunks!.length);
      f.chunks!.forEach((c, i) => {
        expect(idx.chunkRange(i)).toEqual({ start: c.start, end: c.end });
        expect(idx.digest(i).toString('hex')).toBe(c.digest);
      });
      checkIndexAgainstManifest(idx, { filename: rel, csum: f.index_csum!, size });
    });
  }

  it('a csum or size mismatch against the manifest names the file and both values', () => {
    const { rel, f } = indexFiles[0]!;
    const idx = parseIndex(readFileSync(join(datastoreDir, rel)), rel);
    const wrong = 'ff'.repeat(32);
    const e = expectError(
      () => checkIndexAgainstManifest(idx, { filename: rel, csum: wrong, size: idx.size }),
      IntegrityError,
      rel,
    );
    expect(e.message).toContain(wrong);
    expect(e.message).toContain(f.index_csum!);
    const e2 = expectError(
      () => checkIndexAgainstManifest(idx, { filename: rel, csum: f.index_csum!, size: idx.size + 1 }),
      IntegrityError,
      rel,
    );
    expect(e2.message).toContain(String(idx.size + 1));
  });
});

describe('hostile fixed indexes', () => {
  const vec = indexFiles.find((x) => x.rel.endsWith('.fidx'))!;
  const raw = readFileSync(join(datastoreDir, vec.rel));

  it('truncated by one byte / header only / tiny', () => {
    expectError(() => FixedIndex.parse(raw.subarray(0, raw.length - 1), 'x.fidx'), FormatError, 'x.fidx');
    expectError(() => FixedIndex.parse(raw.subarray(0, 4096), 'x.fidx'), FormatError, 'x.fidx');
    expectError(() => FixedIndex.parse(raw.subarray(0, 100), 'x.fidx'), FormatError, 'x.fidx');
    expectError(() => FixedIndex.parse(Buffer.concat([raw, Buffer.alloc(32)]), 'x.fidx'), FormatError, 'x.fidx');
  });

  it('bad magic, or a dynamic index under a .fidx name', () => {
    const b = Buffer.from(raw);
    b[0]! ^= 1;
    expectError(() => FixedIndex.parse(b, 'x.fidx'), FormatError, 'x.fidx');
    expectError(() => parseIndex(dynamicIndex([10]), 'x.fidx'), FormatError, 'x.fidx');
  });

  it('chunk size 0, too large, size beyond 2^53', () => {
    expectError(() => FixedIndex.parse(fixedIndex(0, 0, 0), 'x.fidx'), FormatError, 'x.fidx');
    expectError(() => FixedIndex.parse(fixedIndex(1, 2 ** 40, 1), 'x.fidx'), LimitError, 'x.fidx');
    const b = fixedIndex(1, 4096, 1);
    b.writeBigUInt64LE(2n ** 63n, 64);
    expectError(() => FixedIndex.parse(b, 'x.fidx'), FormatError, 'x.fidx');
  });

  it('count must be ceil(size / chunk_size); last chunk shorter', () => {
    expectError(() => FixedIndex.parse(fixedIndex(4097, 4096, 1), 'x.fidx'), FormatError, 'x.fidx');
    const idx = FixedIndex.parse(fixedIndex(4097, 4096), 'x.fidx');
    expect(idx.count).toBe(2);
    expect(idx.chunkRange(1)).toEqual({ start: 4096, end: 4097 });
    expect(idx.chunkAt(4096)).toBe(1);
    expectError(() => idx.chunkAt(4097), FormatError, 'x.fidx');
    expectError(() => idx.chunkAt(-1), FormatError, 'x.fidx');
    expectError(() => idx.digest(2), FormatError, 'x.fidx');
  });
});

describe('hostile dynamic indexes', () => {
  it('entry area not a multiple of 40 (truncated)', () => {
    const b = dynamicIndex([10, 20]);
    expectError(() => DynamicIndex.parse(b.subarray(0, b.length - 1), 'y.didx'), FormatError, 'y.didx');
  });

  it('zero-length first chunk, repeated end, backwards end', () => {
    expectError(() => DynamicIndex.parse(dynamicIndex([0]), 'y.didx'), FormatError, 'y.didx');
    expectError(() => DynamicIndex.parse(dynamicIndex([10, 10]), 'y.didx'), FormatError, 'y.didx');
    expectError(() => DynamicIndex.parse(dynamicIndex([10, 5]), 'y.didx'), FormatError, 'y.didx');
  });

  it('end beyond 2^53 and an oversized chunk', () => {
    const b = dynamicIndex([10]);
    b.writeBigUInt64LE(2n ** 60n, 4096);
    expectError(() => DynamicIndex.parse(b, 'y.didx'), FormatError, 'y.didx');
    expectError(() => DynamicIndex.parse(dynamicIndex([10, 10 + 2 ** 30]), 'y.didx'), LimitError, 'y.didx');
  });

  it('bad magic', () => {
    const b = dynamicIndex([10]);
    b[3]! ^= 0x80;
    expectError(() => DynamicIndex.parse(b, 'y.didx'), FormatError, 'y.didx');
  });

  it('an empty index is an empty stream', () => {
    const idx = DynamicIndex.parse(dynamicIndex([]), 'y.didx');
    expect(idx.count).toBe(0);
    expect(idx.size).toBe(0);
    expectError(() => idx.chunkAt(0), FormatError, 'y.didx');
  });

  it('chunkAt agrees with chunkRange for random layouts (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 20 }),
        (lens, probes) => {
          const ends: number[] = [];
          let acc = 0;
          for (const l of lens) ends.push((acc += l));
          const idx = DynamicIndex.parse(dynamicIndex(ends), 'p.didx');
          expect(idx.size).toBe(acc);
          for (const p of probes) {
            const off = p % acc;
            const i = idx.chunkAt(off);
            const r = idx.chunkRange(i);
            expect(r.start <= off && off < r.end).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
