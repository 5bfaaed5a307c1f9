/**
 * `.didx` writer (spec 7.2): one 40-byte entry (end offset u64 LE, digest) per chunk, streamed.
 */
import { UsageError } from '../errors.js';
import { DYNAMIC_INDEX_MAGIC } from '../index/dynamic-index.js';
import { baseHeader, IndexFileWriter } from './index-file-writer.js';

export interface IndexResult {
  /** index_csum (what the manifest records as `csum`). */
  csum: Buffer;
  /** Archive data size (what the manifest records as `size`). */
  size: number;
  chunks: number;
}

export class DynamicIndexWriter {
  private readonly file: IndexFileWriter;
  private end = 0;
  private count = 0;
  private readonly entry = Buffer.allocUnsafe(40);

  constructor(path: string) {
    this.file = new IndexFileWriter(path, 'tmp_didx');
  }

  /** Records the next chunk of `length` bytes. */
  add(length: number, digest: Uint8Array): void {
    if (length <= 0) throw new UsageError('a dynamic index chunk must not be empty');
    this.end += length;
    this.entry.writeBigUInt64LE(BigInt(this.end), 0);
    this.entry.set(digest, 8);
    this.file.append(this.entry);
    this.count++;
  }

  close(ctime = Math.floor(Date.now() / 1000)): IndexResult {
    const csum = this.file.close((c) => baseHeader(DYNAMIC_INDEX_MAGIC, c, ctime));
    return { csum, size: this.end, chunks: this.count };
  }

  abort(): void {
    this.file.abort();
  }
}
