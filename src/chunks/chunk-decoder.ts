/**
 * Decoding one chunk: raw blob bytes in, verified plaintext out (or a typed error). Kept apart
 * from the reader so the same function runs in-process or in a worker thread.
 */
import { decodeBlob, type BlobCryptMode } from '../blob/data-blob.js';
import type { CryptConfig } from '../crypto/crypt-config.js';
import type { ChunkLease } from '../store/chunk-store.js';

export interface ChunkRequest {
  /** 32-byte chunk digest (index entry). */
  digest: Buffer;
  /** Exact plaintext length, from the index range. */
  expectedSize: number;
  /** Crypt mode the index demands of its chunks (spec 2.6): 'encrypt' or 'none'. */
  cryptMode: BlobCryptMode;
}

export interface ChunkDecodeJob extends ChunkRequest {
  /** Name for messages: the chunk path inside the datastore. */
  name: string;
  crypt?: CryptConfig;
}

/**
 * Turns the raw blob bytes of one chunk into verified plaintext or throws a typed error. Pure
 * function of its inputs, so it can run in a worker thread (see worker-pool-decoder.ts). With
 * `dest` (exactly `expectedSize` bytes, shared memory when the decoder is a worker pool) it may
 * write the plaintext there and return `dest` itself instead of new memory.
 */
export type ChunkDecoder = (raw: Buffer, job: ChunkDecodeJob, dest?: Buffer) => Buffer | Promise<Buffer>;

/** In-process decoding with every check decodeBlob offers (CRC, tag, mode, size, digest). */
export const inlineChunkDecoder: ChunkDecoder = (raw, job, dest) =>
  decodeBlob(raw, {
    name: job.name,
    ...(job.crypt !== undefined ? { crypt: job.crypt } : {}),
    expectedCryptMode: job.cryptMode,
    expectedDigest: job.digest,
    expectedSize: job.expectedSize,
    checkCrc: true,
    ...(dest !== undefined ? { into: dest } : {}),
  });

/** True when `plain` is exactly the memory of `dest` (a decoder wrote into it). */
export function isSameMemory(plain: Uint8Array, dest: Uint8Array): boolean {
  return plain.buffer === dest.buffer && plain.byteOffset === dest.byteOffset && plain.length === dest.length;
}

/**
 * Decodes a chunk while it is still arriving (ChunkLease.arriving), overlapping the read with
 * decryption and hashing, and writes the plaintext into `dest` (shared memory of exactly the
 * expected size); returns undefined for a chunk it does not handle (the reader then waits for
 * the whole chunk and uses its ChunkDecoder). The promise settles only once nothing reads the
 * lease's memory or writes to `dest` any more, and resolves only when every check passed.
 */
export type PipelinedDecoder = (lease: ChunkLease, job: ChunkDecodeJob, dest: Buffer) => Promise<void> | undefined;
