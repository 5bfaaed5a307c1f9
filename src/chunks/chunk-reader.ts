/**
 * Verified chunk plaintext, by digest: fetch from a ChunkStore, check (CRC, GCM tag, digest,
 * crypt mode, exact size), decrypt, decompress, and keep the result in a byte-bounded LRU cache.
 *
 * Concurrent requests for one chunk share a single fetch+decode (single-flight); a failure is
 * handed to every waiter and then forgotten, so a retry starts afresh. Decoding goes through an
 * injectable ChunkDecoder: in-process by default, or a WorkerPoolDecoder's worker threads.
 */
import { LRUCache } from 'lru-cache';
import { inlineChunkDecoder, type ChunkDecoder, type ChunkRequest, type PipelinedDecoder } from './chunk-decoder.js';
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
}

export interface ChunkReaderOptions {
  crypt?: CryptConfig;
  /** Cache bound in plaintext bytes; 0 disables caching. Default 128 MiB. */
  cacheBytes?: number;
  decoder?: ChunkDecoder;
  /**
   * Decodes large chunks while the store is still reading them (e.g. WorkerPoolDecoder.pipelined);
   * used with stores that lend early (ChunkStore.lease with `early`), for the chunks it accepts.
   */
  pipelined?: PipelinedDecoder;
  /** Read-ahead fetches in flight at once, over all readers (default 8: two sequential readers' worth). */
  maxPrefetches?: number;
}

export const DEFAULT_CACHE_BYTES = 128 * 1024 * 1024;

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
  };
  readonly crypt: CryptConfig | undefined;
  private readonly cache: LRUCache<string, Buffer> | undefined;
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly decoder: ChunkDecoder;
  private readonly pipelined: PipelinedDecoder | undefined;
  private readonly maxPrefetches: number;
  private prefetching = 0;

  constructor(
    readonly store: ChunkStore,
    opts: ChunkReaderOptions = {},
  ) {
    this.crypt = opts.crypt;
    this.decoder = opts.decoder ?? inlineChunkDecoder;
    this.pipelined = opts.pipelined;
    this.maxPrefetches = Math.max(0, opts.maxPrefetches ?? 8);
    const cacheBytes = opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
    if (cacheBytes > 0) {
      this.cache = new LRUCache<string, Buffer>({
        maxSize: cacheBytes,
        // Count what the entry keeps alive; never 0 (lru-cache requires a positive size).
        sizeCalculation: (b) => Math.max(1, b.byteLength),
      });
    }
  }

  /** Plaintext bytes currently held by the cache (never above the bound). */
  get cachedBytes(): number {
    return this.cache?.calculatedSize ?? 0;
  }

  /**
   * The verified plaintext of a chunk. The returned buffer is shared with the cache and other
   * callers: treat it as read-only.
   */
  get(req: ChunkRequest): Promise<Buffer> {
    const key = cacheKey(req);
    const hit = this.cache?.get(key);
    if (hit !== undefined) {
      this.stats.cacheHits++;
      return this.checkCachedSize(hit, req);
    }
    const pending = this.inflight.get(key);
    if (pending !== undefined) {
      this.stats.inflightJoins++;
      return pending.then((b) => this.checkCachedSize(b, req));
    }
    this.stats.cacheMisses++;
    const p = this.fetchAndDecode(req).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p.then((plain) => {
      this.cache?.set(key, plain);
      return plain;
    });
  }

  /** The cached plaintext of a chunk, if it is cached (no fetch, no change of its recency). */
  peek(req: ChunkRequest): Buffer | undefined {
    const hit = this.cache?.peek(cacheKey(req));
    return hit !== undefined && hit.length === req.expectedSize ? hit : undefined;
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
    this.get(req)
      .catch(() => undefined)
      .finally(() => this.prefetching--);
  }

  /** Fetches and decodes without touching the cache (used by verify). */
  async fetchAndDecode(req: ChunkRequest): Promise<Buffer> {
    try {
      const job = {
        ...req,
        name: chunkRelPath(req.digest),
        ...(this.crypt !== undefined ? { crypt: this.crypt } : {}),
      };
      let plain: Buffer;
      if (this.store.lease !== undefined) {
        // The raw bytes live in a reused buffer of the store's: decode, then hand it back.
        const lease = await this.store.lease(req.digest, this.pipelined !== undefined ? { early: true } : undefined);
        try {
          this.countFetch(lease.data.length);
          const piped = lease.arriving !== undefined ? this.pipelined?.(lease, job) : undefined;
          if (piped !== undefined) {
            plain = await piped; // fresh memory of its own
          } else {
            if (lease.arriving !== undefined) await lease.arriving.done;
            plain = await this.decoder(lease.data, job);
            // A plaintext that is a view of the raw bytes (an unencrypted, uncompressed chunk) or
            // of shared memory would change under the cache once the buffer is reused: keep a copy.
            if (plain.buffer === lease.data.buffer || plain.buffer instanceof SharedArrayBuffer) plain = Buffer.from(plain);
          }
        } finally {
          lease.release();
        }
      } else {
        const raw = await this.store.get(req.digest);
        this.countFetch(raw.length);
        plain = await this.decoder(raw, job);
      }
      this.stats.bytesDecoded += plain.length;
      return plain;
    } catch (e) {
      this.stats.errors++;
      throw e;
    }
  }

  private countFetch(bytes: number): void {
    this.stats.chunksFetched++;
    this.stats.bytesFetched += bytes;
  }

  /**
   * One digest names one plaintext, so a cached or shared chunk already has the right length
   * unless two indexes disagree about it; such an index is wrong, and its reader must fail.
   */
  private checkCachedSize(plain: Buffer, req: ChunkRequest): Promise<Buffer> {
    if (plain.length === req.expectedSize) return Promise.resolve(plain);
    return Promise.reject(
      new IntegrityError(`chunk is ${plain.length} bytes but the index expects ${req.expectedSize}`, {
        file: chunkRelPath(req.digest),
      }),
    );
  }
}
