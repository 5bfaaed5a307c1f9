/**
 * Chunks of a datastore directory on a local (or network-mounted) file system.
 *
 * Strictly passive: each chunk is opened O_RDONLY, read and closed. Nothing is created, locked,
 * renamed or touched (no utimes, no lock file, no `.bad` quarantine); a reader may only ever make
 * the kernel bump atime, which merely delays garbage collection (spec 9.4).
 */
import { readFully } from '../io/read-at.js';
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { FormatError, LimitError, NotFoundError, fromSystemError } from '../errors.js';
import { chunkRelPath, type ChunkStore } from './chunk-store.js';

/**
 * Largest chunk file we read. Upstream caps chunk uploads at 16 MiB + header and blobs at
 * 128 MiB of plaintext; anything bigger is not a chunk and must not be pulled into memory.
 */
export const MAX_CHUNK_FILE_BYTES = 128 * 1024 * 1024 + 64;

export interface LocalChunkStoreOptions {
  maxChunkBytes?: number;
}

export class LocalChunkStore implements ChunkStore {
  readonly name: string;
  private readonly maxChunkBytes: number;

  constructor(
    /** Datastore root directory (the one holding `.chunks/`). */
    readonly root: string,
    opts: LocalChunkStoreOptions = {},
  ) {
    this.name = root;
    this.maxChunkBytes = opts.maxChunkBytes ?? MAX_CHUNK_FILE_BYTES;
  }

  async get(digest: Buffer): Promise<Buffer> {
    if (digest.length !== 32) throw new FormatError(`chunk digest must be 32 bytes, got ${digest.length}`);
    const rel = chunkRelPath(digest);
    let fh;
    try {
      // O_NOFOLLOW: chunks are never symlinks upstream; one here could point anywhere.
      fh = await open(join(this.root, rel), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError(`chunk is missing from the datastore`, { file: rel, cause: e });
      }
      throw fromSystemError(e, rel, 'cannot open chunk');
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new FormatError('chunk is not a regular file', { file: rel });
      if (st.size > this.maxChunkBytes) {
        throw new LimitError(`chunk file is ${st.size} bytes, more than the ${this.maxChunkBytes}-byte limit`, { file: rel });
      }
      // One read into an exact-size buffer; loop only for short reads (network file systems).
      // Not from the shared pool: a cached small chunk must not pin an 8 KiB pool slab.
      const buf = Buffer.allocUnsafeSlow(st.size);
      return await readFully(fh, buf);
    } catch (e) {
      throw fromSystemError(e, rel, 'cannot read chunk');
    } finally {
      await fh.close();
    }
  }
}
