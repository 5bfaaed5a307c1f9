/**
 * Chunks of a datastore directory on a local (or network-mounted) file system.
 *
 * Strictly passive: each chunk is opened O_RDONLY, read and closed. Nothing is created, locked,
 * renamed or touched (no utimes, no lock file, no `.bad` quarantine); a reader may only ever make
 * the kernel bump atime, which merely delays garbage collection (spec 9.4).
 */
import { readFully } from '../io/read-at.js';
import { open, type FileHandle } from 'node:fs/promises';
import { AlignedBufferPool } from '../io/aligned-pool.js';
import { ProgressiveRead } from '../io/progressive-read.js';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { FormatError, LimitError, NotFoundError, fromSystemError } from '../errors.js';
import { chunkRelPath, type ChunkLease, type ChunkStore, type LeaseOptions } from './chunk-store.js';

/**
 * Largest chunk file we read. Upstream caps chunk uploads at 16 MiB + header and blobs at
 * 128 MiB of plaintext; anything bigger is not a chunk and must not be pulled into memory.
 */
export const MAX_CHUNK_FILE_BYTES = 128 * 1024 * 1024 + 64;

export interface LocalChunkStoreOptions {
  maxChunkBytes?: number;
  /**
   * Read chunk files with O_DIRECT into reused page-aligned buffers (lease()); default on. Falls
   * back to ordinary reads by itself where the file system refuses O_DIRECT (tmpfs, some FUSE
   * and network file systems).
   */
  directIo?: boolean;
}

/**
 * Raw chunk bytes being read at once, in blocks sized to each chunk: room for two of upstream's
 * largest dynamic chunks (16 MiB plus the blob header, in 64 KiB pages), or several ordinary
 * ones. The decode threads drain chunks far slower than the disk fills them, so more would only
 * hold memory (fixed slots sized for the largest chunk kept far more resident than they used).
 * Bigger files (blobs, odd stores) take an ordinary read.
 */
const POOL_BYTES = 2 * (16 * 1024 * 1024 + 64 * 1024);
const PAGE = 4096;
/**
 * Early leases (LeaseOptions.early) read in pieces of this size, this many at once: the first
 * piece lands after a fraction of the time one whole-chunk read takes, and the last about when
 * that read would have (docs/performance.md).
 */
const EARLY_PIECE_BYTES = 512 * 1024;
const EARLY_LANES = 4;

function noop(): void {}

export class LocalChunkStore implements ChunkStore {
  readonly name: string;
  private readonly maxChunkBytes: number;
  /** undefined: not tried yet; false: this file system refused O_DIRECT. */
  private directWorks: boolean | undefined;
  private pool: AlignedBufferPool | undefined;

  constructor(
    /** Datastore root directory (the one holding `.chunks/`). */
    readonly root: string,
    opts: LocalChunkStoreOptions = {},
  ) {
    this.name = root;
    this.maxChunkBytes = opts.maxChunkBytes ?? MAX_CHUNK_FILE_BYTES;
    if (opts.directIo === false || process.env.PBSFS_DIRECT_READS === '0') this.directWorks = false;
  }

  /** Opens a chunk file read-only (never through a symlink) and checks what it is. */
  private async openChunk(digest: Buffer, direct: boolean): Promise<{ fh: FileHandle; size: number; rel: string }> {
    if (digest.length !== 32) throw new FormatError(`chunk digest must be 32 bytes, got ${digest.length}`);
    const rel = chunkRelPath(digest);
    let fh: FileHandle;
    try {
      // O_NOFOLLOW: chunks are never symlinks upstream; one here could point anywhere.
      fh = await open(join(this.root, rel), constants.O_RDONLY | constants.O_NOFOLLOW | (direct ? constants.O_DIRECT : 0));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError(`chunk is missing from the datastore`, { file: rel, cause: e, errorCode: 'chunk-missing' });
      }
      throw fromSystemError(e, rel, 'cannot open chunk');
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new FormatError('chunk is not a regular file', { file: rel });
      if (st.size > this.maxChunkBytes) {
        throw new LimitError(`chunk file is ${st.size} bytes, more than the ${this.maxChunkBytes}-byte limit`, { file: rel });
      }
      return { fh, size: st.size, rel };
    } catch (e) {
      await fh.close();
      throw fromSystemError(e, rel, 'cannot read chunk');
    }
  }

  async get(digest: Buffer): Promise<Buffer> {
    const { fh, size, rel } = await this.openChunk(digest, false);
    try {
      // One read into an exact-size buffer; loop only for short reads (network file systems).
      // Not from the shared pool: a cached small chunk must not pin an 8 KiB pool slab.
      const buf = Buffer.allocUnsafeSlow(size);
      return await readFully(fh, buf);
    } catch (e) {
      throw fromSystemError(e, rel, 'cannot read chunk');
    } finally {
      await fh.close();
    }
  }

  /**
   * ChunkStore.lease: the chunk read with O_DIRECT into a pooled page-aligned buffer (no page
   * cache copy, no fresh memory per chunk). Falls back to get() for chunks larger than a slot
   * and, from then on, for every chunk once the file system refuses O_DIRECT.
   */
  async lease(digest: Buffer, opts: LeaseOptions = {}): Promise<ChunkLease> {
    if (this.directWorks !== false) {
      let lease: ChunkLease | undefined;
      try {
        lease = await this.readDirect(digest, opts.early === true);
      } catch (e) {
        if (!this.refusesDirect(e)) throw e;
      }
      if (lease !== undefined) return lease;
    }
    return { data: await this.get(digest), release: noop };
  }

  /**
   * The chunk read with O_DIRECT into a pooled block of its size; undefined when it is larger
   * than the pool. Early: resolves once the first piece is in, the rest still arriving
   * (ChunkLease.arriving); else in one request, once all of it is in. The block goes back to the
   * pool only after every request has settled.
   */
  private async readDirect(digest: Buffer, early: boolean): Promise<ChunkLease | undefined> {
    const { fh, size, rel } = await this.openChunk(digest, true);
    this.pool ??= new AlignedBufferPool(POOL_BYTES);
    const acquiring = this.pool.acquire(size);
    if (acquiring === undefined) {
      await fh.close();
      return undefined;
    }
    const slot = await acquiring;
    const read = new ProgressiveRead(fh, slot.buf, size, {
      pieceBytes: early ? EARLY_PIECE_BYTES : Math.max(PAGE, Math.ceil(size / PAGE) * PAGE),
      lanes: early ? EARLY_LANES : 1,
      wrapError: (e) => fromSystemError(e, rel, 'cannot read chunk'),
    });
    try {
      await (early ? read.started : read.done);
    } catch (e) {
      await read.done.catch(noop); // no request may still be writing into the block
      slot.release();
      throw e;
    }
    this.directWorks = true;
    const data = slot.buf.subarray(0, size);
    if (!early) return { data, release: slot.release };
    return { data, release: () => void read.done.then(slot.release, slot.release), arriving: read };
  }

  /** EINVAL from an O_DIRECT open or read: this file system (or file) does not do direct I/O. */
  private refusesDirect(e: unknown): boolean {
    const code = (e as NodeJS.ErrnoException | undefined)?.code ?? ((e as { cause?: NodeJS.ErrnoException } | undefined)?.cause?.code);
    if (code !== 'EINVAL') return false;
    // Once direct reads worked here, one refusal is about that file alone: read it normally.
    if (this.directWorks === undefined) this.directWorks = false;
    return true;
  }
}
