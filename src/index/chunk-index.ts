/**
 * What the readers above need from a fixed or dynamic index: the chunk list with each chunk's
 * byte range in the archive stream, offset lookup, and the checksum the manifest records.
 */
import { createHash } from 'node:crypto';
import { FormatError, IntegrityError } from '../errors.js';

export interface ChunkRange {
  /** Inclusive start offset in the archive stream. */
  start: number;
  /** Exclusive end offset. */
  end: number;
}

export interface ChunkIndex {
  readonly kind: 'fixed' | 'dynamic';
  /** Name used in messages (path of the index file inside the datastore). */
  readonly name: string;
  /** Number of chunks. */
  readonly count: number;
  /** Total length of the archive stream in bytes. */
  readonly size: number;
  chunkRange(i: number): ChunkRange;
  /** The 32-byte digest of chunk i (a view into the index; do not modify). */
  digest(i: number): Buffer;
  /** Index of the chunk holding byte `offset` (0 <= offset < size). */
  chunkAt(offset: number): number;
  /** index_csum and size recomputed from the entries (spec 7.3), never taken from the header. */
  computeCsum(): { csum: Buffer; size: number };
}

/** The two fields a manifest records for an index file. */
export interface IndexManifestEntry {
  filename: string;
  csum: string;
  size: number;
}

/**
 * Compares the recomputed (csum, size) with the manifest entry. A mismatch means the index
 * file was swapped or damaged after the manifest was written.
 */
export function checkIndexAgainstManifest(index: ChunkIndex, entry: IndexManifestEntry): void {
  const { csum, size } = index.computeCsum();
  const hex = csum.toString('hex');
  if (hex !== entry.csum.toLowerCase()) {
    throw new IntegrityError(`index checksum ${hex} does not match the manifest's ${entry.csum.toLowerCase()}`, {
      file: index.name,
    });
  }
  if (size !== entry.size) {
    throw new IntegrityError(`index describes ${size} bytes but the manifest says ${entry.size}`, { file: index.name });
  }
}

/** SHA-256 of the entry array (everything after the 4096-byte header). */
export function entriesCsum(raw: Buffer, headerSize: number): Buffer {
  return createHash('sha256').update(raw.subarray(headerSize)).digest();
}

export function checkChunkNumber(index: ChunkIndex, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= index.count) {
    throw new FormatError(`chunk number ${i} is out of range (index has ${index.count} chunks)`, { file: index.name });
  }
}

export function checkOffset(index: ChunkIndex, offset: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset >= index.size) {
    throw new FormatError(`offset ${offset} lies outside the archive (size ${index.size})`, { file: index.name });
  }
}

/** Upper bound for one chunk's plaintext: upstream's 128 MiB blob limit. */
export const MAX_CHUNK_SIZE = 128 * 1024 * 1024;

/** The 4096-byte header both index formats start with. */
export const INDEX_HEADER_SIZE = 4096;
