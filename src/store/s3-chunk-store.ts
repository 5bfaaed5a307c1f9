/**
 * Chunks of a PBS 4 S3 datastore: `GET <store>/.chunks/XXXX/<digest>`, whose body is the exact
 * DataBlob a local datastore keeps in its chunk file. The store only moves bytes (capped at the
 * local chunk-file limit); the chunk reader verifies them like local chunks.
 */
import { FormatError, NotFoundError } from '../errors.js';
import type { ChunkStore } from './chunk-store.js';
import { MAX_CHUNK_FILE_BYTES } from './local-chunk-store.js';
import type { S3Client } from './s3-client.js';
import { chunkKey } from './s3-layout.js';

export class S3ChunkStore implements ChunkStore {
  readonly name: string;

  constructor(
    private readonly client: S3Client,
    private readonly store: string,
    private readonly maxChunkBytes = MAX_CHUNK_FILE_BYTES,
  ) {
    this.name = `s3://${client.bucket}/${store}`;
  }

  async get(digest: Buffer): Promise<Buffer> {
    if (digest.length !== 32) throw new FormatError(`chunk digest must be 32 bytes, got ${digest.length}`);
    const key = chunkKey(this.store, digest);
    try {
      return await this.client.get(key, { maxBytes: this.maxChunkBytes });
    } catch (e) {
      if (e instanceof NotFoundError && e.file === this.client.where(key)) {
        // A live PBS may be collecting garbage while we read: say so rather than "corrupt".
        throw new NotFoundError(
          `chunk ${digest.toString('hex')} is missing from the bucket (a PBS still using the bucket may have garbage-collected it)`,
          { file: key.slice(this.store.length + 1), cause: e },
        );
      }
      throw e;
    }
  }
}
