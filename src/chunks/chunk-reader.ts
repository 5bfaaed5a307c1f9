/**
 * Verified chunk plaintext, by digest: fetch from a ChunkStore, check (CRC, GCM tag, digest,
 * crypt mode, exact size), decrypt, decompress, and keep the result in a byte-bounded LRU cache.
 *
 * Concurrent requests for one chunk share a single fetch+decode (single-flight); a failure is
 * handed to every waiter and then forgotten, so a retry starts afresh. Decoding goes through an
 * injectable ChunkDecoder: in-process by default, or a WorkerPoolDecoder's worker threads.
 *
 * With an arena (ChunkReaderOptions.arena), chunks are decoded into a PlaintextArena (reused
 * memory, see plaintext-arena.ts). Their memory is lent, never given: hold() pins a chunk until
 * its release(), and a block goes back to the arena only once it has left the cache and nothing
 * holds it. get() hands out bytes that stay valid (a copy of an arena chunk).
 */
import { LRUCache } from 'lru-cache';
import { inlineChunkDecoder, isSameMemory, type ChunkDecoder, type ChunkRequest, type PipelinedDecoder } from './chunk-decoder.js';
import { PlaintextArena, type ArenaBlock } from './plaintext-arena.js';
import type { CryptConfig } from '../crypto/crypt-config.js';
import { IntegrityError } from '../errors.js';
import { chunkRelPath, type ChunkStore } from '../store/chunk-store.js';

export type { ChunkRequest, ChunkDecodeJob, ChunkDecoder, PipelinedDecoder } from './chunk-decoder.js';
export { inlineChunkDecoder } from './chunk-decoder.js';

/** Counters, readable at any time (the mount and `verify` print them). */
export interface ChunkReaderStats {
  /** Chunks fetched from the store (cache misses that reached the store). */
  chunksFetched: number;
  /** Raw (encoded) bytes fetched from the store. */
  bytesFetched: number;
  /** Plaintext bytes produced by decoding. */
  bytesDecoded: number;
  /** Requests answered from the cache. */
  cacheHits: number;
  /** Requests that started a fetch. */
  cacheMisses: number;
  /** Requests that joined a fetch already in flight. */
  inflightJoins: number;
  /** Fetches or decodes that failed. */
  errors: number;
  /** Cached chunks dropped early because their reader was done with them (see forget()). */
  chunksForgotten: number;
}

export interface ChunkReaderOptions {
  crypt?: CryptConfig;
  /** Cache bound in plaintext bytes; 0 disables caching. Default 128 MiB. */
  cacheBytes?: number;
  decoder?: ChunkDecoder;
  /**
   * Decode into reused memory lent through hold() (see plaintext-arena.ts), as large as the
   * cache. For readers whose users release what they hold promptly (the mount). Default: on
   * with a pipelined decoder, else off.
   */
  arena?: boolean;
  /**
   * Decodes large chunks while the store is still reading them (e.g. WorkerPoolDecoder.pipelined),
   * into arena memory; used with stores that lend early (ChunkStore.lease with `early`), for the
   * chunks it accepts. Needs the arena.
   */
  pipelined?: PipelinedDecoder;
  /** Read-ahead fetches in flight at once, over all readers (default 8: two sequential readers' worth). */
  maxPrefetches?: number;
}

export const DEFAULT_CACHE_BYTES = 128 * 1024 * 1024;
/**
 * Arena size when the cache is smaller than this (or off): room for the chunks being decoded at
 * once (the store reads at most 4 ahead).
 */
const MIN_ARENA_BYTES = 32 * 1024 * 1024;
/**
 * Smaller chunks take ordinary memory: an arena block is whole 64 KiB pages, and small chunks
 * are cheap to allocate anyway.
 */
const ARENA_MIN_CHUNK_BYTES = 256 * 1024;

/** A chunk's verified plaintext, lent until release() (see HeldBytes). */
export interface ChunkHold {
  readonly data: Buffer;
  /** True when `data` stays valid after release (ordinary memory, not the arena). */
  readonly stable: boolean;
  release(): void;
}

/** A decoded chunk, cached or on its way there. */
interface Decoded {
  readonly data: Buffer;
  /** The arena block under `data`; undefined for ordinary memory, and once given back. */
  block: ArenaBlock | undefined;
  /** Holds not yet released. */
  pins: number;
  /** In the LRU right now. */
  cached: boolean;
}

interface Inflight {
  promise: Promise<Decoded>;
  /** Requests waiting for it: each gets one pin when it resolves. */
  waiters: number;
}

/**
 * The crypt mode is part of the key: a digest verified as an encrypted chunk says nothing about
 * a request that expects an unencrypted one (spec 2.6), and vice versa.
 */
function cacheKey(req: ChunkRequest): string {
  return (req.cryptMode === 'encrypt' ? 'e' : 'n') + req.digest.toString('hex');
}

export class ChunkReader {
  readonly stats: ChunkReaderStats = {
    chunksFetched: 0,
    bytesFetched: 0,
    bytesDecoded: 0,
    cacheHits: 0,
    cacheMisses: 0,
    inflightJoins: 0,
    errors: 0,
    chunksForgotten: 0,
  };
  readonly crypt: CryptConfig | undefined;
  private readonly cache: LRUCache<string, Decoded> | undefined;
  private readonly inflight = new Map<string, Inflight>();
  private readonly decoder: ChunkDecoder;
  private readonly pipelined: PipelinedDecoder | undefined;
  private readonly arena: PlaintextArena | undefined;
  private readonly maxPrefetches: number;
  private prefetching = 0;
  private holds = 0;

  constructor(
    readonly store: ChunkStore,
    opts: ChunkReaderOptions = {},
  ) {
    this.crypt = opts.crypt;
    this.decoder = opts.decoder ?? inlineChunkDecoder;
    const arena = opts.arena ?? opts.pipelined !== undefined;
    this.pipelined = arena ? opts.pipelined : undefined;
    this.maxPrefetches = Math.max(0, opts.maxPrefetches ?? 8);
    const cacheBytes = opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
    if (cacheBytes > 0) {
      this.cache = new LRUCache<string, Decoded>({
        maxSize: cacheBytes,
        // Count what the entry keeps: its arena block, or its own memory; never 0 (lru-cache
        // requires a positive size).
        sizeCalculation: (d) => Math.max(1, d.block?.capacity ?? d.data.byteLength),
        dispose: (d) => {
          d.cached = false;
          this.settle(d);
        },
      });
    }
    // The arena is the cache's memory, so it is as large as the cache.
    if (arena) this.arena = new PlaintextArena(Math.max(cacheBytes, MIN_ARENA_BYTES));
  }

  /** Plaintext bytes currently held by the cache (never above the bound). */
  get cachedBytes(): number {
    return this.cache?.calculatedSize ?? 0;
  }

  /** Arena bytes lent out: cached arena chunks, and those being decoded or still held after eviction. */
  get arenaBytes(): number {
    return this.arena?.usedBytes ?? 0;
  }

  /** Holds handed out and not yet released (0 whenever no read is under way). */
  get heldChunks(): number {
    return this.holds;
  }

  /**
   * The verified plaintext of a chunk, lent until release() (which the caller must call exactly
   * once). Read-only: it is shared with the cache and other callers.
   */
  hold(req: ChunkRequest): Promise<ChunkHold> {
    const key = cacheKey(req);
    const hit = this.cache?.get(key);
    if (hit !== undefined) {
      this.stats.cacheHits++;
      if (hit.data.length !== req.expectedSize) return Promise.reject(sizeMismatch(hit.data, req));
      hit.pins++;
      return Promise.resolve(this.lend(hit));
    }
    let f = this.inflight.get(key);
    if (f !== undefined) {
      this.stats.inflightJoins++;
      f.waiters++;
    } else {
      this.stats.cacheMisses++;
      f = this.start(key, req);
    }
    return f.promise.then((d) => {
      const h = this.lend(d);
      if (d.data.length === req.expectedSize) return h;
      h.release();
      throw sizeMismatch(d.data, req);
    });
  }

  /**
   * The verified plaintext of a chunk, in memory that stays valid (arena chunks are copied).
   * Read-only: it may be shared with the cache and other callers.
   */
  async get(req: ChunkRequest): Promise<Buffer> {
    return stableCopy(await this.hold(req));
  }

  /**
   * The cached plaintext of a chunk, if it is cached (no fetch, no change of its recency). Valid
   * only until the caller next waits for anything: an arena chunk's memory may be reused after.
   */
  peek(req: ChunkRequest): Buffer | undefined {
    const hit = this.cache?.peek(cacheKey(req));
    return hit !== undefined && hit.data.length === req.expectedSize ? hit.data : undefined;
  }

  /**
   * Starts fetching a chunk into the cache if it is neither cached nor in flight (sequential
   * read-ahead). Failures are dropped here: nothing is cached, and a real read retries and
   * reports them. No-op without a cache.
   */
  prefetch(req: ChunkRequest): void {
    if (this.cache === undefined) return;
    // Read-ahead of many readers at once must not hold unbounded memory in chunks being
    // fetched: beyond the limit, hints are dropped (the reads themselves still fetch).
    if (this.prefetching >= this.maxPrefetches) return;
    const key = cacheKey(req);
    if (this.cache.has(key) || this.inflight.has(key)) return;
    this.prefetching++;
    this.hold(req)
      .then((h) => h.release(), () => undefined)
      .finally(() => this.prefetching--);
  }

  /**
   * Drops a chunk from the cache now, if it is there: a streaming reader is done with it. Its
   * memory goes back to the arena as soon as no read holds it, so the next chunk of the stream
   * lands in pages already resident instead of new ones (every new page costs a fault), and a stream larger than the cache does not push out everything else.
   */
  forget(req: ChunkRequest): void {
    if (this.cache?.delete(cacheKey(req)) === true) this.stats.chunksForgotten++;
  }

  private start(key: string, req: ChunkRequest): Inflight {
    const f: Inflight = { promise: undefined as unknown as Promise<Decoded>, waiters: 1 };
    // Pinning for every waiter and caching happen in one step, before any waiter runs: nothing
    // can evict and reuse the chunk in between.
    f.promise = this.fetchAndDecode(req).then(
      (d) => {
        this.inflight.delete(key);
        d.pins += f.waiters;
        this.remember(key, d);
        return d;
      },
      (e: unknown) => {
        this.inflight.delete(key);
        throw e;
      },
    );
    this.inflight.set(key, f);
    return f;
  }

  private remember(key: string, d: Decoded): void {
    if (this.cache === undefined) return;
    d.cached = true;
    this.cache.set(key, d);
    // lru-cache declines an entry larger than its bound without telling dispose.
    if (this.cache.peek(key) !== d) d.cached = false;
  }

  private lend(d: Decoded): ChunkHold {
    let released = false;
    this.holds++;
    return {
      data: d.data,
      stable: d.block === undefined,
      release: () => {
        if (released) return;
        released = true;
        this.holds--;
        d.pins--;
        this.settle(d);
      },
    };
  }

  /** Gives an arena chunk's block back once it is out of the cache and nobody holds it. */
  private settle(d: Decoded): void {
    if (d.block !== undefined && !d.cached && d.pins === 0) {
      d.block.free();
      d.block = undefined;
    }
  }

  /**
   * Arena memory for a chunk of `bytes`, evicting the least recently used chunks until it fits
   * (an evicted chunk that a read still holds frees its block later); undefined if it cannot fit.
   */
  private reserve(bytes: number): ArenaBlock | undefined {
    const arena = this.arena;
    if (arena === undefined || bytes < ARENA_MIN_CHUNK_BYTES) return undefined;
    let block = arena.alloc(bytes);
    while (block === undefined && this.cache !== undefined && this.cache.size > 0) {
      this.cache.pop();
      block = arena.alloc(bytes);
    }
    return block;
  }

  /** Fetches and decodes, without the cache. */
  private async fetchAndDecode(req: ChunkRequest): Promise<Decoded> {
    try {
      const job = {
        ...req,
        name: chunkRelPath(req.digest),
        ...(this.crypt !== undefined ? { crypt: this.crypt } : {}),
      };
      let plain: Buffer;
      // Arena memory for the plaintext; given back in `finally` unless a decoder filled it.
      let block: ArenaBlock | undefined;
      try {
        if (this.store.lease !== undefined) {
          // The raw bytes live in a reused buffer of the store's: decode, then hand it back.
          const lease = await this.store.lease(req.digest, this.pipelined !== undefined ? { early: true } : undefined);
          try {
            this.countFetch(lease.data.length);
            block = this.reserve(req.expectedSize);
            if (lease.arriving !== undefined && this.pipelined !== undefined && block !== undefined) {
              const piped = this.pipelined(lease, job, block.buf);
              if (piped !== undefined) {
                await piped;
                plain = block.buf;
              }
            }
            if (lease.arriving !== undefined) await lease.arriving.done;
            plain ??= await this.decoder(lease.data, job, block?.buf);
            // A plaintext that is a view of the raw bytes (an unencrypted, uncompressed chunk) or
            // of other shared memory would change under the cache once that is reused: copy it.
            if (!this.filled(plain, block) && (plain.buffer === lease.data.buffer || plain.buffer instanceof SharedArrayBuffer)) plain = copyOf(plain);
          } finally {
            // A failed decode settles only after nothing writes to `block` any more.
            lease.release();
          }
        } else {
          const raw = await this.store.get(req.digest);
          this.countFetch(raw.length);
          block = this.reserve(req.expectedSize);
          plain = await this.decoder(raw, job, block?.buf);
        }
        this.stats.bytesDecoded += plain.length;
        if (this.filled(plain, block)) {
          const d: Decoded = { data: plain, block, pins: 0, cached: false };
          block = undefined;
          return d;
        }
        return { data: plain, block: undefined, pins: 0, cached: false };
      } finally {
        block?.free();
      }
    } catch (e) {
      this.stats.errors++;
      throw e;
    }
  }

  /** True when the decoder wrote the plaintext into the arena block (not memory of its own). */
  private filled(plain: Buffer, block: ArenaBlock | undefined): block is ArenaBlock {
    return block !== undefined && isSameMemory(plain, block.buf);
  }

  private countFetch(bytes: number): void {
    this.stats.chunksFetched++;
    this.stats.bytesFetched += bytes;
  }
}

/**
 * One digest names one plaintext, so a cached or shared chunk already has the right length
 * unless two indexes disagree about it; such an index is wrong, and its reader must fail.
 */
function sizeMismatch(plain: Buffer, req: ChunkRequest): IntegrityError {
  return new IntegrityError(`chunk is ${plain.length} bytes but the index expects ${req.expectedSize}`, {
    file: chunkRelPath(req.digest),
  });
}

/** A hold's bytes in memory that stays valid (a copy of arena memory); releases the hold. */
export function stableCopy(h: ChunkHold, from = 0, to = h.data.length): Buffer {
  try {
    const view = h.data.subarray(from, to);
    return h.stable ? view : copyOf(view);
  } finally {
    h.release();
  }
}

/** A copy in new memory of its own (Buffer.from takes a slow path for shared memory). */
function copyOf(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  b.copy(out);
  return out;
}
