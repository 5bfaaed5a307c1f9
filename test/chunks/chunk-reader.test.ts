import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeBlob } from '../../src/blob/data-blob.js';
import { ChunkReader, inlineChunkDecoder, type ChunkDecoder } from '../../src/chunks/chunk-reader.js';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { IntegrityError, NotFoundError } from '../../src/errors.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';
import { LocalChunkStore } from '../../src/store/local-chunk-store.js';
import { datastoreDir } from '../helpers/paths.js';
import { expectedSnapshots, loadVectorKey, type ExpectedChunk } from '../helpers/datastore-expected.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Wraps a store and counts fetches per digest (and can fail on demand). */
class CountingStore implements ChunkStore {
  readonly name = 'counting';
  gets = 0;
  failNext = 0;
  constructor(private readonly inner: ChunkStore) {}
  async get(digest: Buffer): Promise<Buffer> {
    this.gets++;
    await new Promise((r) => setTimeout(r, 5)); // keep requests in flight together
    if (this.failNext > 0) {
      this.failNext--;
      throw new NotFoundError('simulated outage', { file: 'counting' });
    }
    return this.inner.get(digest);
  }
}

let key: CryptConfig;
const plainChunks: ExpectedChunk[] = [];
const encChunks: ExpectedChunk[] = [];
beforeAll(async () => {
  key = await loadVectorKey();
  for (const s of expectedSnapshots()) {
    for (const f of Object.values(s.files)) {
      for (const c of f.chunks ?? []) (s.crypt_mode === 'encrypt' ? encChunks : plainChunks).push(c);
    }
  }
});

const req = (c: ExpectedChunk, cryptMode: 'none' | 'encrypt') => ({
  digest: Buffer.from(c.digest, 'hex'),
  expectedSize: c.end - c.start,
  cryptMode,
});

describe('ChunkReader', () => {
  it('N concurrent reads of one chunk: one fetch, one decode, same bytes', async () => {
    const store = new CountingStore(new LocalChunkStore(datastoreDir));
    let decodes = 0;
    const decoder: ChunkDecoder = (raw, job) => {
      decodes++;
      return inlineChunkDecoder(raw, job);
    };
    const reader = new ChunkReader(store, { crypt: key, decoder });
    const c = encChunks[0]!;
    const results = await Promise.all(Array.from({ length: 16 }, () => reader.get(req(c, 'encrypt'))));
    expect(store.gets).toBe(1);
    expect(decodes).toBe(1);
    for (const r of results) expect(sha256(r)).toBe(c.plaintext_sha256);
    expect(reader.stats.cacheMisses).toBe(1);
    expect(reader.stats.inflightJoins).toBe(15);
    await reader.get(req(c, 'encrypt'));
    expect(store.gets).toBe(1);
    expect(reader.stats.cacheHits).toBe(1);
    expect(reader.stats.chunksFetched).toBe(1);
    expect(reader.stats.bytesDecoded).toBe(c.end - c.start);
    expect(reader.stats.bytesFetched).toBe(c.blob_size);
  });

  it('a failure reaches every waiter and is not cached', async () => {
    const store = new CountingStore(new LocalChunkStore(datastoreDir));
    const reader = new ChunkReader(store, {});
    const c = plainChunks[0]!;
    store.failNext = 1;
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => reader.get(req(c, 'none'))));
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof NotFoundError)).toBe(true);
    expect(store.gets).toBe(1);
    expect(reader.stats.errors).toBe(1);
    expect(sha256(await reader.get(req(c, 'none')))).toBe(c.plaintext_sha256);
    expect(store.gets).toBe(2);
  });

  it('cached bytes never exceed the bound', async () => {
    const bound = 3 * 1024 * 1024;
    const reader = new ChunkReader(new LocalChunkStore(datastoreDir), { crypt: key, cacheBytes: bound });
    const all = [...encChunks.map((c) => req(c, 'encrypt')), ...plainChunks.map((c) => req(c, 'none'))];
    let maxSeen = 0;
    for (const r of [...all, ...all.reverse()]) {
      await reader.get(r);
      maxSeen = Math.max(maxSeen, reader.cachedBytes);
      expect(reader.cachedBytes).toBeLessThanOrEqual(bound);
    }
    expect(maxSeen).toBeGreaterThan(0);
    // Concurrent requests respect the bound too.
    await Promise.all(all.map((r) => reader.get(r)));
    expect(reader.cachedBytes).toBeLessThanOrEqual(bound);
  });

  it('cacheBytes 0 disables caching', async () => {
    const store = new CountingStore(new LocalChunkStore(datastoreDir));
    const reader = new ChunkReader(store, { cacheBytes: 0 });
    const c = plainChunks[0]!;
    await reader.get(req(c, 'none'));
    await reader.get(req(c, 'none'));
    expect(store.gets).toBe(2);
    expect(reader.cachedBytes).toBe(0);
  });

  it('a cached chunk requested with another size is an IntegrityError', async () => {
    const reader = new ChunkReader(new LocalChunkStore(datastoreDir), {});
    const c = plainChunks[0]!;
    await reader.get(req(c, 'none'));
    await expect(reader.get({ ...req(c, 'none'), expectedSize: c.end - c.start - 1 })).rejects.toThrow(IntegrityError);
  });

  it('crypt mode is part of the check: a plain chunk requested as encrypted fails, and vice versa', async () => {
    const reader = new ChunkReader(new LocalChunkStore(datastoreDir), { crypt: key });
    await expect(reader.get(req(plainChunks[0]!, 'encrypt'))).rejects.toThrow(IntegrityError);
    await expect(reader.get(req(encChunks[0]!, 'none'))).rejects.toThrow(IntegrityError);
    // The failures left nothing behind: correct requests still work.
    expect(sha256(await reader.get(req(plainChunks[0]!, 'none')))).toBe(plainChunks[0]!.plaintext_sha256);
  });

  it('a chunk whose content does not match its digest is rejected (swapped chunk)', async () => {
    const a = plainChunks[0]!;
    const b = plainChunks.find((c) => c.digest !== a.digest && c.end - c.start === a.end - a.start)!;
    const inner = new LocalChunkStore(datastoreDir);
    // Store that answers a's digest with b's (valid) blob.
    const swapped: ChunkStore = {
      name: 'swapped',
      get: (d) => inner.get(d.toString('hex') === a.digest ? Buffer.from(b.digest, 'hex') : d),
    };
    const reader = new ChunkReader(swapped, {});
    await expect(reader.get(req(a, 'none'))).rejects.toThrow(/digest mismatch/);
  });

  it('decompression beyond the index size is refused', async () => {
    const plain = Buffer.alloc(1 << 20);
    const blob = encodeBlob(plain, { compress: true });
    const digest = createHash('sha256').update(plain).digest();
    const reader = new ChunkReader({ name: 'mem', get: async () => blob }, {});
    await expect(reader.get({ digest, expectedSize: 1000, cryptMode: 'none' })).rejects.toThrow(IntegrityError);
  });
});

describe('ChunkReader read-ahead bound', () => {
  it('keeps at most maxPrefetches read-ahead fetches in flight, over all hints', async () => {
    let inFlight = 0;
    let peak = 0;
    const plain = Buffer.alloc(1000, 7);
    const store: ChunkStore = {
      name: 'slow',
      get: async () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        return Buffer.from('raw');
      },
    };
    const decoder: ChunkDecoder = async () => plain;
    const reader = new ChunkReader(store, { decoder, maxPrefetches: 3 });
    const digests = Array.from({ length: 20 }, (_, i) => createHash('sha256').update(String(i)).digest());
    for (const d of digests) reader.prefetch({ digest: d, expectedSize: 1000, cryptMode: 'none' });
    expect(peak).toBeLessThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 60));
    expect(reader.stats.chunksFetched).toBe(3); // the rest of the hints were dropped
    // Reads are never limited: all of them fetch.
    await Promise.all(digests.map((d) => reader.get({ digest: d, expectedSize: 1000, cryptMode: 'none' })));
    expect(reader.stats.chunksFetched).toBe(20);
    // Once the earlier read-ahead is done, hints are taken again.
    const more = createHash('sha256').update('more').digest();
    reader.prefetch({ digest: more, expectedSize: 1000, cryptMode: 'none' });
    await new Promise((r) => setTimeout(r, 40));
    expect(reader.stats.chunksFetched).toBe(21);
  });
});
