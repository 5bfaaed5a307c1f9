/**
 * `.didx`: dynamic-size chunk index (spec 7.2). A 4096-byte header (magic, uuid, ctime, csum)
 * and 40-byte entries (u64 LE exclusive end offset, 32-byte digest). Ends must be strictly
 * increasing: a zero-length or backwards chunk is a damaged or hostile index.
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

export const DYNAMIC_INDEX_MAGIC = Buffer.from('1c914ea519bab3cd', 'hex');
const ENTRY_SIZE = 40;

export class DynamicIndex implements ChunkIndex {
  readonly kind = 'dynamic' as const;
  readonly count: number;
  readonly size: number;
  readonly ctime: bigint;
  readonly uuid: Buffer;
  readonly headerCsum: Buffer;
  /** Exclusive end offsets, decoded once for binary search (exact: all ends are < 2^53). */
  private readonly ends: Float64Array;
  private csumCache: { csum: Buffer; size: number } | undefined;

  private constructor(
    readonly name: string,
    private readonly raw: Buffer,
  ) {
    this.uuid = raw.subarray(8, 24);
    this.ctime = raw.readBigInt64LE(24);
    this.headerCsum = raw.subarray(32, 64);
    const body = raw.length - INDEX_HEADER_SIZE;
    if (body % ENTRY_SIZE !== 0) {
      throw new FormatError(`entry area of ${body} bytes is not a multiple of ${ENTRY_SIZE} (truncated index?)`, {
        file: name,
      });
    }
    this.count = body / ENTRY_SIZE;
    this.ends = new Float64Array(this.count);
    let prev = 0;
    for (let i = 0; i < this.count; i++) {
      const off = INDEX_HEADER_SIZE + i * ENTRY_SIZE;
      // Two u32 halves instead of a BigInt per entry: this loop runs once per chunk.
      const hi = raw.readUInt32LE(off + 4);
      if (hi > 0x1fffff) readU64(raw, off, { file: name, offset: off }); // throws: beyond 2^53
      const end = hi * 0x100000000 + raw.readUInt32LE(off);
      if (end <= prev) {
        throw new FormatError(
          `chunk ${i} ends at ${end}, not after the previous end ${prev} (zero-length or backwards chunk)`,
          { file: name, offset: off },
        );
      }
      if (end - prev > MAX_CHUNK_SIZE) {
        throw new LimitError(`chunk ${i} is ${end - prev} bytes, more than the ${MAX_CHUNK_SIZE}-byte limit`, {
          file: name,
          offset: off,
        });
      }
      this.ends[i] = end;
      prev = end;
    }
    this.size = prev;
  }

  /** Parses a whole `.didx` file (40 bytes per chunk). */
  static parse(raw: Buffer, name: string): DynamicIndex {
    if (raw.length < INDEX_HEADER_SIZE) {
      throw new FormatError(`file is ${raw.length} bytes, shorter than the ${INDEX_HEADER_SIZE}-byte index header`, { file: name });
    }
    if (!raw.subarray(0, 8).equals(DYNAMIC_INDEX_MAGIC)) {
      throw new FormatError(`not a dynamic index (magic ${raw.subarray(0, 8).toString('hex')})`, { file: name, offset: 0 });
    }
    return new DynamicIndex(name, raw);
  }

  chunkRange(i: number): ChunkRange {
    checkChunkNumber(this, i);
    return { start: i === 0 ? 0 : this.ends[i - 1]!, end: this.ends[i]! };
  }

  digest(i: number): Buffer {
    checkChunkNumber(this, i);
    const off = INDEX_HEADER_SIZE + i * ENTRY_SIZE + 8;
    return this.raw.subarray(off, off + 32);
  }

  /** Binary search for the first chunk whose end is beyond `offset`. */
  chunkAt(offset: number): number {
    checkOffset(this, offset);
    const ends = this.ends;
    let lo = 0;
    let hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ends[mid]! > offset) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  computeCsum(): { csum: Buffer; size: number } {
    this.csumCache ??= { csum: entriesCsum(this.raw, INDEX_HEADER_SIZE), size: this.size };
    return this.csumCache;
  }
}
