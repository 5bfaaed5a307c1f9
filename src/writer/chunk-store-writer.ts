/**
 * Writes chunks into a datastore's `.chunks/XXXX/<digest>` store (spec 9.1, 9.5).
 *
 * Rules:
 * - a chunk that already exists is never rewritten, touched or removed (deduplication);
 * - a new chunk is written to a temp file in its prefix directory, then hard-linked to its final
 *   name: `link` fails if the name appeared meanwhile, so even a concurrent writer can never
 *   replace an existing chunk; the temp name is removed afterwards;
 * - a new datastore gets `.lock` and all 65536 prefix directories, as PBS creates them; in an
 *   existing one, missing prefix directories are created on demand.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, linkSync, mkdirSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { encodeBlob } from '../blob/data-blob.js';
import type { CryptConfig } from '../crypto/crypt-config.js';
import { fromSystemError } from '../errors.js';

export type PrefixDirPolicy = 'all' | 'lazy';

export interface ChunkStoreWriterOptions {
  /**
   * 'all' (default): when the datastore is new, create all 65536 `.chunks/XXXX` directories like
   * PBS does (a few seconds once). 'lazy': only the ones used (fine for pbsfs, tests, and the
   * upstream reader; a PBS server expects all of them).
   */
  prefixDirs?: PrefixDirPolicy;
}

export interface ChunkWriteStats {
  /** Chunks handed to `insert`. */
  chunks: number;
  /** Chunks that were new and got written. */
  newChunks: number;
  /** Plaintext bytes of all chunks. */
  bytes: number;
  /** Plaintext bytes of the new chunks. */
  newBytes: number;
  /** Encoded (compressed/encrypted) bytes written to disk. */
  storedBytes: number;
}

/** sha256(data), or sha256(data || id_key) in encrypt mode. */
export function chunkDigest(data: Uint8Array, crypt: CryptConfig | undefined): Buffer {
  return crypt !== undefined ? crypt.computeDigest(data) : createHash('sha256').update(data).digest();
}

/** Creates `.lock` and `.chunks/` (plus prefix dirs per policy) if missing; returns true if new. */
export function initDatastore(root: string, policy: PrefixDirPolicy = 'all'): boolean {
  const chunks = join(root, '.chunks');
  const isNew = !existsSync(chunks);
  try {
    mkdirSync(chunks, { recursive: true });
    const lock = join(root, '.lock');
    if (!existsSync(lock)) closeSync(openSync(lock, 'a'));
    if (isNew && policy === 'all') {
      for (let i = 0; i < 65536; i++) mkdirSync(join(chunks, i.toString(16).padStart(4, '0')), { recursive: true });
    }
  } catch (e) {
    throw fromSystemError(e, root, 'cannot create the datastore layout');
  }
  return isNew;
}

export class ChunkStoreWriter {
  readonly root: string;
  readonly stats: ChunkWriteStats = { chunks: 0, newChunks: 0, bytes: 0, newBytes: 0, storedBytes: 0 };
  private readonly madeDirs = new Set<string>();

  constructor(root: string, opts: ChunkStoreWriterOptions = {}) {
    this.root = root;
    initDatastore(root, opts.prefixDirs ?? 'all');
  }

  /** `.chunks/XXXX/<hex>` (absolute). */
  chunkPath(digest: Uint8Array): string {
    const hex = Buffer.from(digest).toString('hex');
    return join(this.root, '.chunks', hex.slice(0, 4), hex);
  }

  has(digest: Uint8Array): boolean {
    return existsSync(this.chunkPath(digest));
  }

  /**
   * Digests, encodes and stores one chunk unless a chunk of that digest exists.
   * Returns the digest (what the index records).
   */
  insert(data: Uint8Array, crypt: CryptConfig | undefined): Buffer {
    const digest = chunkDigest(data, crypt);
    this.stats.chunks++;
    this.stats.bytes += data.length;
    const path = this.chunkPath(digest);
    if (existsSync(path)) return digest;
    const blob = encodeBlob(data, crypt !== undefined ? { crypt, compress: true } : { compress: true });
    if (this.writeNew(digest, path, blob)) {
      this.stats.newChunks++;
      this.stats.newBytes += data.length;
      this.stats.storedBytes += blob.length;
    }
    return digest;
  }

  /** Writes temp + link; false when the chunk appeared concurrently (kept as it is). */
  private writeNew(digest: Buffer, path: string, blob: Buffer): boolean {
    const hex = digest.toString('hex');
    const dir = join(this.root, '.chunks', hex.slice(0, 4));
    if (!this.madeDirs.has(dir)) {
      try {
        mkdirSync(dir, { recursive: true });
      } catch (e) {
        throw fromSystemError(e, dir, 'cannot create chunk directory');
      }
      this.madeDirs.add(dir);
    }
    const tmp = `${path}.tmp_${randomBytes(6).toString('hex')}`;
    try {
      const fd = openSync(tmp, 'wx', 0o644);
      try {
        let off = 0;
        while (off < blob.length) off += writeSync(fd, blob, off, blob.length - off);
      } finally {
        closeSync(fd);
      }
      try {
        linkSync(tmp, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e;
      }
      return true;
    } catch (e) {
      throw fromSystemError(e, path, 'cannot write chunk');
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
    }
  }

  /** Size of an existing chunk file (tests and stats). */
  storedSize(digest: Uint8Array): number {
    return statSync(this.chunkPath(digest)).size;
  }
}
