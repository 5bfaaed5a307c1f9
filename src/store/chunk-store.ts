/**
 * Where chunks come from. The chunk reader asks a ChunkStore for the raw DataBlob bytes of a
 * digest and does all verification itself, so a backend only moves bytes: the local datastore
 * today, a remote PBS or an S3 bucket later (each one new file implementing this interface).
 */
export interface ChunkStore {
  /** Shown in messages (e.g. the datastore path). */
  readonly name: string;
  /**
   * The raw, still encoded blob bytes of the chunk with this 32-byte digest. Throws a
   * NotFoundError naming the chunk path when the chunk does not exist.
   */
  get(digest: Buffer): Promise<Buffer>;
  /**
   * Optional, for backends that read into reused memory: the same bytes as get(), lent until
   * release() (the memory is then reused for another chunk). Callers must release exactly once,
   * and must copy whatever they keep.
   */
  lease?(digest: Buffer): Promise<ChunkLease>;
}

/** Raw chunk bytes in memory a ChunkStore lends out (see ChunkStore.lease). */
export interface ChunkLease {
  readonly data: Buffer;
  release(): void;
}

/** `.chunks/XXXX/<hex>`: the path of a chunk relative to the datastore root (spec 9.1). */
export function chunkRelPath(digest: Uint8Array): string {
  const hex = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
  return `.chunks/${hex.slice(0, 4)}/${hex}`;
}
