/**
 * `.fidx`: fixed-size chunk index (spec 7.1). A 4096-byte header (magic, uuid, ctime, csum,
 * size, chunk_size) and one 32-byte digest per chunk; chunk i covers
 * [i*chunk_size, min((i+1)*chunk_size, size)).
 */
import { FormatError, LimitError } from '../errors.js';
import { readU64 } from '../util/bytes.js';
import {
  INDEX_HEADER_SIZE,
  MAX_CHUNK_SIZE,
  checkChunkNumber,
  checkOffset,
  entriesCsum,
  type ChunkIndex,
  type ChunkRange,
} from './chunk-index.js';

export const FIXED_INDEX_MAGIC = Buffer.from('2f7f41ed91fd0fcd', 'hex');
const DIGEST_SIZE = 32;

export class FixedIndex implements ChunkIndex {
  readonly kind = 'fixed' as const;
  readonly count: number;
  readonly size: number;
  readonly chunkSize: number;
  /** Header fields kept for display only (never trusted). */
  readonly ctime: bigint;
  readonly uuid: Buffer;
  readonly headerCsum: Buffer;
  private csumCache: { csum: Buffer; size: number } | undefined;

  private constructor(
    readonly name: string,
    private readonly raw: Buffer,
  ) {
    const ctx = { file: name };
    this.uuid = raw.subarray(8, 24);
    this.ctime = raw.readBigInt64LE(24);
    this.headerCsum = raw.subarray(32, 64);
    this.size = readU64(raw, 64, { ...ctx, offset: 64 });
    this.chunkSize = readU64(raw, 72, { ...ctx, offset: 72 });
    if (this.chunkSize === 0) throw new FormatError('chunk size is 0', { ...ctx, offset: 72 });
    if (this.chunkSize > MAX_CHUNK_SIZE) {
      throw new LimitError(`chunk size ${this.chunkSize} exceeds the ${MAX_CHUNK_SIZE}-byte limit`, { ...ctx, offset: 72 });
    }
    this.count = Math.ceil(this.size / this.chunkSize);
    const expected = INDEX_HEADER_SIZE + DIGEST_SIZE * this.count;
    if (raw.length !== expected) {
      throw new FormatError(
        `file is ${raw.length} bytes but an index of ${this.size} bytes in ${this.chunkSize}-byte chunks (${this.count} chunks) must be ${expected}`,
        ctx,
      );
    }
  }

  /** Parses a whole `.fidx` file (index files are small: 32 bytes per chunk). */
  static parse(raw: Buffer, name: string): FixedIndex {
    if (raw.length < INDEX_HEADER_SIZE) {
      throw new FormatError(`file is ${raw.length} bytes, shorter than the ${INDEX_HEADER_SIZE}-byte index header`, { file: name });
    }
    if (!raw.subarray(0, 8).equals(FIXED_INDEX_MAGIC)) {
      throw new FormatError(`not a fixed index (magic ${raw.subarray(0, 8).toString('hex')})`, { file: name, offset: 0 });
    }
    return new FixedIndex(name, raw);
  }

  chunkRange(i: number): ChunkRange {
    checkChunkNumber(this, i);
    const start = i * this.chunkSize;
    return { start, end: Math.min(start + this.chunkSize, this.size) };
  }

  digest(i: number): Buffer {
    checkChunkNumber(this, i);
    const off = INDEX_HEADER_SIZE + i * DIGEST_SIZE;
    return this.raw.subarray(off, off + DIGEST_SIZE);
  }

  chunkAt(offset: number): number {
    checkOffset(this, offset);
    return Math.floor(offset / this.chunkSize);
  }

  computeCsum(): { csum: Buffer; size: number } {
    this.csumCache ??= { csum: entriesCsum(this.raw, INDEX_HEADER_SIZE), size: this.size };
    return this.csumCache;
  }
}
