/**
 * Chunks decoded into the chunk reader's arena (reused memory, see plaintext-arena.ts): their
 * memory is lent, never given. A held chunk keeps its bytes while the arena is reused around it,
 * bytes handed out by get() and readAt() stay valid for good, readHeld() lends views of several
 * chunks at once, and every block goes back to the arena once nothing holds it.
 *
 * The pipelined decoder here is a stand-in (the whole-chunk decoder, then a copy into the
 * destination), so only the reader's bookkeeping is under test; the real two-worker pipeline
 * has its own tests (pipelined-decode.test.ts) and the mount's load test runs it under pressure.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeBlob } from '../../src/blob/data-blob.js';
import { ChunkReader, inlineChunkDecoder, type PipelinedDecoder } from '../../src/chunks/chunk-reader.js';
import { WorkerPoolDecoder } from '../../src/chunks/worker-pool-decoder.js';
import { CryptConfig } from '../../src/crypto/crypt-config.js';
import { projectRoot } from '../helpers/paths.js';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { IntegrityError, NotFoundError } from '../../src/errors.js';
import { DYNAMIC_INDEX_MAGIC, DynamicIndex } from '../../src/index/dynamic-index.js';
import { IndexReadAt } from '../../src/index/index-read-at.js';
import { heldData } from '../../src/io/read-at.js';
import type { ChunkLease, ChunkStore } from '../../src/store/chunk-store.js';

const MiB = 1024 * 1024;

interface Archive {
  store: ChunkStore;
  plains: Buffer[];
  digests: Buffer[];
  index: DynamicIndex;
  stream: Buffer;
}

/**
 * Unencrypted chunks of random bytes in a store that lends them as already arrived (so the
 * reader takes its pipelined path), and the dynamic index of their concatenation.
 */
function archive(sizes: number[], opts: { text?: boolean; crypt?: CryptConfig } = {}): Archive {
  const plains = sizes.map((n) => (opts.text ? Buffer.from(randomBytes(Math.ceil(n / 4)).toString('base64').slice(0, n)) : randomBytes(n)));
  const digests = plains.map((p) => (opts.crypt ? opts.crypt.computeDigest(p) : createHash('sha256').update(p).digest()));
  const blobs = new Map(plains.map((p, i) => [digests[i]!.toString('hex'), encodeBlob(p, { compress: opts.text === true, ...(opts.crypt ? { crypt: opts.crypt } : {}) })]));
  const raw = Buffer.alloc(4096 + 40 * sizes.length);
  DYNAMIC_INDEX_MAGIC.copy(raw, 0);
  let end = 0;
  sizes.forEach((n, i) => {
    end += n;
    raw.writeBigUInt64LE(BigInt(end), 4096 + 40 * i);
    digests[i]!.copy(raw, 4096 + 40 * i + 8);
  });
  const blob = (d: Buffer): Buffer => {
    const b = blobs.get(d.toString('hex'));
    if (b === undefined) throw new NotFoundError('chunk is missing', { file: d.toString('hex') });
    return b;
  };
  const store: ChunkStore = {
    name: 'lending',
    get: async (d) => blob(d),
    lease: async (d): Promise<ChunkLease> => {
      const data = Buffer.from(blob(d));
      const filled = new Int32Array(new SharedArrayBuffer(4));
      filled[0] = data.length;
      return { data, release: () => undefined, arriving: { filled, follow: (fn) => fn(0, data.length), done: Promise.resolve() } };
    },
  };
  return { store, plains, digests, index: DynamicIndex.parse(raw, 'arena.didx'), stream: Buffer.concat(plains) };
}

/** Decodes in-process and copies into the arena block; `fail` makes it reject after writing. */
function stagePipeline(fail = false): PipelinedDecoder {
  return (lease, job, dest) =>
    (async () => {
      const plain = inlineChunkDecoder(lease.data, job) as Buffer;
      plain.copy(dest);
      if (fail) throw new IntegrityError('stand-in pipeline failure', { file: job.name });
    })();
}

const req = (a: Archive, i: number) => ({ digest: a.digests[i]!, expectedSize: a.plains[i]!.length, cryptMode: 'none' as const });

describe('chunk reader arena', () => {
  it('a held chunk keeps its bytes while the cache evicts it and the arena reuses memory around it', async () => {
    const a = archive(Array.from({ length: 12 }, () => MiB));
    const reader = new ChunkReader(a.store, { cacheBytes: 2 * MiB, pipelined: stagePipeline() });
    const held = await reader.hold(req(a, 0));
    expect(held.stable).toBe(false);
    expect(held.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    for (let i = 1; i < 12; i++) (await reader.hold(req(a, i))).release();
    expect(held.data.equals(a.plains[0]!)).toBe(true);
    // Only what the cache keeps (2 chunks) and the held chunk are lent out.
    expect(reader.arenaBytes).toBe(3 * MiB);
    held.release();
    held.release(); // a second release changes nothing
    expect(reader.arenaBytes).toBe(2 * MiB);
    expect(reader.cachedBytes).toBeLessThanOrEqual(2 * MiB);
  });

  it('get() and readAt() hand out bytes that stay valid after their chunk memory is reused', async () => {
    const a = archive([MiB, MiB + 5, MiB - 7, MiB, MiB, MiB, MiB, MiB]);
    const reader = new ChunkReader(a.store, { cacheBytes: 2 * MiB, pipelined: stagePipeline() });
    const ra = new IndexReadAt(a.index, reader, 'none');
    const whole = await reader.get(req(a, 0));
    const inside = await ra.readAt(MiB + 100, 4096); // within chunk 1
    const across = await ra.readAt(2 * MiB - 10, 100); // chunks 1 and 2
    for (let i = 3; i < a.plains.length; i++) await reader.get(req(a, i));
    expect(whole.equals(a.plains[0]!)).toBe(true);
    expect(inside.equals(a.stream.subarray(MiB + 100, MiB + 100 + 4096))).toBe(true);
    expect(across.equals(a.stream.subarray(2 * MiB - 10, 2 * MiB + 90))).toBe(true);
    expect(whole.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(inside.buffer).not.toBeInstanceOf(SharedArrayBuffer);
  });

  it('readHeld() lends views of every chunk a range touches, unchanged until released', async () => {
    const a = archive([MiB, 300_000, MiB, MiB, MiB, MiB, MiB]);
    const reader = new ChunkReader(a.store, { cacheBytes: MiB, pipelined: stagePipeline() });
    const ra = new IndexReadAt(a.index, reader, 'none');
    const from = MiB - 1000;
    const length = 300_000 + 5000; // the end of chunk 0, all of chunk 1, the start of chunk 2
    const h = await ra.readHeld(from, length);
    expect(h.parts.length).toBe(3);
    expect(h.length).toBe(length);
    for (const p of h.parts) expect(p.buffer).toBeInstanceOf(SharedArrayBuffer);
    for (let i = 3; i < a.plains.length; i++) await reader.get(req(a, i));
    expect(heldData(h).equals(a.stream.subarray(from, from + length))).toBe(true);
    const lent = reader.arenaBytes;
    h.release();
    expect(reader.arenaBytes).toBeLessThan(lent);
    expect(reader.arenaBytes).toBeLessThanOrEqual(MiB + 64 * 1024);
    // A range inside one chunk is one view; an empty one is no part at all but still releasable.
    const one = await ra.readHeld(10, 20);
    expect(one.parts.length).toBe(1);
    expect(heldData(one).equals(a.stream.subarray(10, 30))).toBe(true);
    one.release();
    const none = await ra.readHeld(a.stream.length, 10);
    expect(none.length).toBe(0);
    none.release();
  });

  it('concurrent holds of one chunk share one decode and each pins it', async () => {
    const a = archive([MiB, MiB, MiB, MiB]);
    const reader = new ChunkReader(a.store, { cacheBytes: MiB, pipelined: stagePipeline() });
    const [x, y] = await Promise.all([reader.hold(req(a, 0)), reader.hold(req(a, 0))]);
    expect(reader.stats.chunksFetched).toBe(1);
    expect(reader.stats.inflightJoins).toBe(1);
    await reader.get(req(a, 1)); // evicts chunk 0 from the 1 MiB cache
    x.release();
    await reader.get(req(a, 2));
    expect(y.data.equals(a.plains[0]!)).toBe(true);
    const before = reader.arenaBytes;
    y.release();
    expect(reader.arenaBytes).toBe(before - MiB);
  });

  it('a failed pipelined decode gives its block back and reports the error; without a cache nothing stays lent', async () => {
    const a = archive([MiB, MiB]);
    const failing = new ChunkReader(a.store, { cacheBytes: 4 * MiB, pipelined: stagePipeline(true) });
    await expect(failing.get(req(a, 0))).rejects.toThrow('stand-in pipeline failure');
    expect(failing.arenaBytes).toBe(0);
    expect(failing.stats.errors).toBe(1);
    const uncached = new ChunkReader(a.store, { cacheBytes: 0, pipelined: stagePipeline() });
    const h = await uncached.hold(req(a, 1));
    expect(uncached.arenaBytes).toBe(MiB);
    h.release();
    expect(uncached.arenaBytes).toBe(0);
    // A request whose size disagrees with the decoded chunk fails and leaves no pin behind.
    await expect(uncached.hold({ ...req(a, 1), expectedSize: MiB - 1 })).rejects.toThrow(IntegrityError);
    expect(uncached.arenaBytes).toBe(0);
  });

  it('decodes without the arena when it is full of held chunks', async () => {
    // 40 chunks of 1 MiB held at once: more than the 32 MiB arena of a small cache.
    const a = archive(Array.from({ length: 40 }, () => MiB));
    const reader = new ChunkReader(a.store, { cacheBytes: MiB, pipelined: stagePipeline() });
    const holds = [];
    for (let i = 0; i < 40; i++) holds.push(await reader.hold(req(a, i)));
    expect(holds.filter((h) => h.stable).length).toBeGreaterThan(0);
    holds.forEach((h, i) => expect(h.data.equals(a.plains[i]!)).toBe(true));
    for (const h of holds) h.release();
    expect(reader.arenaBytes).toBeLessThanOrEqual(MiB + 64 * 1024);
  });

  it('whole-chunk decodes (compressed, encrypted) write into the arena too, in-process and on worker threads', async () => {
    const crypt = CryptConfig.fromKey(randomBytes(32));
    const a = archive([MiB, 2 * MiB + 3, MiB, MiB, MiB, MiB, 300_000, 1000], { text: true, crypt });
    const reqE = (i: number) => ({ ...req(a, i), cryptMode: 'encrypt' as const });
    const pool = new WorkerPoolDecoder({ threads: 2, workerUrl: pathToFileURL(join(projectRoot, 'dist', 'src', 'chunks', 'decode-worker.js')) });
    try {
      for (const decoder of [inlineChunkDecoder, pool.decoder]) {
        const reader = new ChunkReader(a.store, { crypt, cacheBytes: 2 * MiB, arena: true, decoder });
        const held = await reader.hold(reqE(1));
        expect(held.stable).toBe(false);
        expect(held.data.buffer).toBeInstanceOf(SharedArrayBuffer);
        for (let i = 2; i < 8; i++) expect((await reader.get(reqE(i))).equals(a.plains[i]!)).toBe(true);
        expect(held.data.equals(a.plains[1]!)).toBe(true);
        held.release();
        // Chunks under 256 KiB take ordinary memory.
        expect((await reader.hold(reqE(7))).stable).toBe(true);
        // A damaged chunk fails as it does without the arena, and gives its block back.
        const raw = await a.store.get(a.digests[0]!);
        raw[raw.length - 5]! ^= 1;
        await expect(reader.get(reqE(0))).rejects.toThrow(/CRC32 mismatch/);
        raw[raw.length - 5]! ^= 1;
        expect(reader.arenaBytes).toBeLessThanOrEqual(reader.cachedBytes);
      }
    } finally {
      await pool.close();
    }
  });

  it('forget() drops a cached chunk at once, or once the read holding it lets go', async () => {
    const a = archive([MiB, MiB, MiB]);
    const reader = new ChunkReader(a.store, { cacheBytes: 8 * MiB, pipelined: stagePipeline() });
    for (let i = 0; i < 3; i++) (await reader.hold(req(a, i))).release();
    expect(reader.arenaBytes).toBe(3 * MiB);
    reader.forget(req(a, 0));
    expect(reader.arenaBytes).toBe(2 * MiB);
    expect(reader.stats.chunksForgotten).toBe(1);
    const held = await reader.hold(req(a, 1));
    reader.forget(req(a, 1));
    expect(reader.cachedBytes).toBe(MiB);
    expect(held.data.equals(a.plains[1]!)).toBe(true); // still lent, still intact
    expect(reader.arenaBytes).toBe(2 * MiB);
    held.release();
    expect(reader.arenaBytes).toBe(MiB);
    reader.forget(req(a, 0)); // not cached: nothing happens
    expect(reader.stats.chunksForgotten).toBe(2);
    // A forgotten chunk is simply fetched again when read.
    const fetched = reader.stats.chunksFetched;
    expect((await reader.get(req(a, 0))).equals(a.plains[0]!)).toBe(true);
    expect(reader.stats.chunksFetched).toBe(fetched + 1);
  });

  it('IndexReadAt.forget() drops only chunks wholly inside the range, each once as the range grows', async () => {
    const sizes = [MiB, 300_000, MiB, MiB - 5, MiB, 700_000];
    const a = archive(sizes);
    const reader = new ChunkReader(a.store, { cacheBytes: 16 * MiB, pipelined: stagePipeline() });
    const ra = new IndexReadAt(a.index, reader, 'none');
    for (let i = 0; i < sizes.length; i++) (await reader.hold(req(a, i))).release();
    const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((x, y) => x + y, 0));
    const cached = () => sizes.map((_, i) => reader.peek(req(a, i)) !== undefined);
    // A file starting inside chunk 0 and reaching into chunk 3: only chunks 1 and 2 are all its own.
    const from = 1000;
    ra.forget(from, starts[3]! + 10 - from);
    expect(cached()).toEqual([true, false, false, true, true, true]);
    // The same stream asks again, further: chunk 3 now lies inside, chunk 4 not yet.
    ra.forget(from, starts[4]! + 10 - from);
    expect(cached()).toEqual([true, false, false, false, true, true]);
    expect(reader.stats.chunksForgotten).toBe(3);
    // Nonsense ranges are ignored.
    ra.forget(-1, 10);
    ra.forget(0, 0);
    ra.forget(a.stream.length, 10);
    ra.forget(Number.NaN, 10);
    // The whole stream: everything goes.
    ra.forget(0, a.stream.length);
    expect(cached()).toEqual(sizes.map(() => false));
    expect(reader.arenaBytes).toBe(0);
  });
});
