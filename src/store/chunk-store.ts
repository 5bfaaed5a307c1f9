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
  lease?(digest: Buffer, opts?: LeaseOptions): Promise<ChunkLease>;
}

export interface LeaseOptions {
  /**
   * Resolve as soon as the start of the chunk (at least its blob header) is in memory, with the
   * rest still arriving (ChunkLease.arriving), so decoding can overlap the read. A store may
   * ignore this and resolve with the whole chunk.
   */
  early?: boolean;
}

/** Raw chunk bytes in memory a ChunkStore lends out (see ChunkStore.lease). */
export interface ChunkLease {
  /** The whole chunk; with `arriving`, only its first `arriving.filled[0]` bytes are valid yet. */
  readonly data: Buffer;
  /** Hands the memory back; waits by itself for reads still in flight. */
  release(): void;
  /** Present when the lease was asked for early and the read goes on. */
  readonly arriving?: ArrivingChunk;
}

/** A chunk whose bytes are still being read into a lease (see LeaseOptions.early). */
export interface ArrivingChunk {
  /**
   * Shared memory, index 0: how many bytes from the start of `data` are read, growing in order;
   * -1 once the read has failed. Worker threads wait on it with Atomics.wait (it is notified at
   * every change).
   */
  readonly filled: Int32Array;
  /** Calls fn(start, end) at once for the bytes read so far and then, in order, for each new span. */
  follow(fn: (start: number, end: number) => void): void;
  /** Settles when the read is over: resolves once all of `data` is read, or rejects with the read error. */
  readonly done: Promise<void>;
}

/** `.chunks/XXXX/<hex>`: the path of a chunk relative to the datastore root (spec 9.1). */
export function chunkRelPath(digest: Uint8Array): string {
  const hex = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
  return `.chunks/${hex.slice(0, 4)}/${hex}`;
}
