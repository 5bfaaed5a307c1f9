/**
 * `.fidx` writer (spec 7.1): 32-byte digests of fixed-size chunks, only the last one shorter.
 */
import { FormatError, UsageError } from '../errors.js';
import { FIXED_INDEX_MAGIC } from '../index/fixed-index.js';
import type { IndexResult } from './dynamic-index-writer.js';
import { baseHeader, IndexFileWriter } from './index-file-writer.js';

export class FixedIndexWriter {
  private readonly file: IndexFileWriter;
  private size = 0;
  private count = 0;
  private sawShort = false;

  constructor(
    path: string,
    readonly chunkSize: number,
  ) {
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new UsageError(`invalid chunk size ${chunkSize}`);
    this.file = new IndexFileWriter(path, 'tmp_fidx');
  }

  add(length: number, digest: Uint8Array): void {
    if (this.sawShort) throw new FormatError('only the last chunk of a fixed index may be short');
    if (length <= 0 || length > this.chunkSize) throw new FormatError(`fixed index chunk of ${length} bytes (chunk size ${this.chunkSize})`);
    if (length < this.chunkSize) this.sawShort = true;
    this.size += length;
    this.file.append(digest);
    this.count++;
  }

  close(ctime = Math.floor(Date.now() / 1000)): IndexResult {
    if (this.size === 0) {
      this.file.abort();
      throw new UsageError('an image must not be empty (upstream cannot open a zero-size fixed index)');
    }
    const csum = this.file.close((c) => {
      const h = baseHeader(FIXED_INDEX_MAGIC, c, ctime);
      h.writeBigUInt64LE(BigInt(this.size), 64);
      h.writeBigUInt64LE(BigInt(this.chunkSize), 72);
      return h;
    });
    return { csum, size: this.size, chunks: this.count };
  }

  abort(): void {
    this.file.abort();
  }
}
