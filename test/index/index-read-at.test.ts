import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeBlob } from '../../src/blob/data-blob.js';
import { ChunkReader } from '../../src/chunks/chunk-reader.js';
import { FormatError, NotFoundError } from '../../src/errors.js';
import { DYNAMIC_INDEX_MAGIC, DynamicIndex } from '../../src/index/dynamic-index.js';
import { IndexReadAt } from '../../src/index/index-read-at.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';

/** An in-memory store of unencrypted chunks of the given sizes; byte k of the stream = k % 251. */
function memoryArchive(sizes: number[], missing = new Set<number>()) {
  const blobs = new Map<string, Buffer>();
  const ends: number[] = [];
  const digests: Buffer[] = [];
  let off = 0;
  for (const [i, n] of sizes.entries()) {
    const plain = Buffer.alloc(n);
    for (let k = 0; k < n; k++) plain[k] = (off + k) % 251;
    off += n;
    ends.push(off);
    const d = createHash('sha256').update(plain).digest();
    digests.push(d);
    if (!missing.has(i)) blobs.set(d.toString('hex'), encodeBlob(plain, { compress: true }));
  }
  const raw = Buffer.alloc(4096 + 40 * sizes.length);
  DYNAMIC_INDEX_MAGIC.copy(raw, 0);
  ends.forEach((e, i) => {
    raw.writeBigUInt64LE(BigInt(e), 4096 + 40 * i);
    digests[i]!.copy(raw, 4096 + 40 * i + 8);
  });
  const fetched: number[] = [];
  const store: ChunkStore = {
    name: 'mem',
    async get(d) {
      fetched.push(digests.findIndex((x) => x.equals(d)));
      const b = blobs.get(d.toString('hex'));
      if (!b) throw new NotFoundError('chunk is missing', { file: `.chunks/${d.toString('hex')}` });
      return b;
    },
  };
  return { index: DynamicIndex.parse(raw, 'mem.didx'), store, fetched, size: off };
}

const expected = (off: number, len: number): Buffer => {
  const b = Buffer.alloc(len);
  for (let k = 0; k < len; k++) b[k] = (off + k) % 251;
  return b;
};

describe('IndexReadAt', () => {
  it('returns exact bytes for every range shape, touching only overlapping chunks', async () => {
    const a = memoryArchive([1000, 1, 4096, 333, 7000]);
    const ra = new IndexReadAt(a.index, new ChunkReader(a.store, { cacheBytes: 0 }), 'none');
    for (const [off, len] of [[0, 1], [999, 3], [1000, 1], [1001, 4096], [0, a.size], [5000, 10_000], [a.size - 1, 1]] as const) {
      a.fetched.length = 0;
      const got = await ra.readAt(off, len);
      const want = expected(off, Math.min(len, a.size - off));
      expect(got.equals(want)).toBe(true);
      const first = a.index.chunkAt(off);
      const last = a.index.chunkAt(off + want.length - 1);
      expect(a.fetched.every((i) => i >= first && i <= last)).toBe(true);
    }
    await expect(ra.readAt(-1, 1)).rejects.toThrow(FormatError);
    expect((await ra.readAt(3, 0)).length).toBe(0);
  });

  it('a missing chunk fails the reads that need it, names archive, chunk and digest; others succeed', async () => {
    const a = memoryArchive([100, 100, 100], new Set([1]));
    const ra = new IndexReadAt(a.index, new ChunkReader(a.store), 'none', 'snap/x.didx');
    await expect(ra.readAt(150, 10)).rejects.toThrow(NotFoundError);
    await expect(ra.readAt(0, 300)).rejects.toThrow(/snap\/x\.didx.*chunk 1 \(digest [0-9a-f]{64}\)/);
    expect((await ra.readAt(200, 100)).equals(expected(200, 100))).toBe(true);
  });

  it('sequential reads fetch the next chunks ahead; random reads do not', async () => {
    const a = memoryArchive(Array.from({ length: 10 }, () => 1000));
    const reader = new ChunkReader(a.store);
    const ra = new IndexReadAt(a.index, reader, 'none');
    await ra.readAt(5000, 10); // random: only chunk 5
    expect(a.fetched).toEqual([5]);
    await ra.readAt(5500, 600); // continues: chunks 5..6, read-ahead 7, 8
    await new Promise((r) => setTimeout(r, 10));
    expect([...a.fetched].sort()).toEqual([5, 6, 7, 8]);
    expect((await ra.readAt(7000, 2000)).equals(expected(7000, 2000))).toBe(true);
    // 7 and 8 came from the read-ahead: fetched once each, then served from the cache.
    expect(a.fetched.filter((i) => i === 7 || i === 8)).toEqual(expect.arrayContaining([7, 8]));
    expect(a.fetched.filter((i) => i === 7).length).toBe(1);
    expect(a.fetched.filter((i) => i === 8).length).toBe(1);
    expect(reader.stats.cacheHits).toBeGreaterThanOrEqual(2);
  });

  it('two reads inside one chunk do not count as sequential', async () => {
    const a = memoryArchive(Array.from({ length: 10 }, () => 1000));
    const ra = new IndexReadAt(a.index, new ChunkReader(a.store), 'none');
    await ra.readAt(5000, 10);
    await ra.readAt(5200, 10);
    await ra.readAt(5100, 10);
    await new Promise((r) => setTimeout(r, 10));
    expect(a.fetched).toEqual([5]);
  });
});
