/** Messages between WorkerPoolDecoder and its decode workers. */
import type { BlobCryptMode } from '../blob/data-blob.js';
import type { ErrorKind } from '../errors.js';

/** Decode one whole chunk (every check of decodeBlob). */
export interface DecodeRequestMessage {
  type: 'decode';
  id: number;
  raw: Uint8Array;
  digest: Uint8Array;
  expectedSize: number;
  cryptMode: BlobCryptMode;
  name: string;
  /** The 32-byte encryption key, when the reader has one. */
  key?: Uint8Array;
  /** Shared memory of exactly expectedSize bytes to decode into (see ChunkDecoder). */
  dest?: Uint8Array;
}

/**
 * The stages of a pipelined decode (see pipelined-decode.ts) share `progress` (shared memory):
 * index 0 counts the plaintext bytes decrypted into `plain`, or is -1 once the decrypting side
 * gave up; index 1 is how far the hashing side waits for (it is woken only then). `data` is the whole blob as it arrives (its front holds the header: CRC, IV and tag);
 * `plain` is the destination, shared memory of exactly `size` bytes.
 */
export interface StreamStageCommon {
  id: number;
  data: Uint8Array;
  plain: Uint8Array;
  progress: Int32Array;
  /** Plaintext length. */
  size: number;
}

/**
 * First stage: decrypt the ciphertext as it arrives in `data` (its first `filled[0]` bytes are
 * there). `compressed`: the ciphertext is a zstd payload, decrypted into the thread's own memory
 * and decompressed into `plain` once the GCM tag has checked out; `progress` then counts
 * decompressed bytes.
 */
export interface DecryptStreamMessage extends StreamStageCommon {
  type: 'decrypt-stream';
  filled: Int32Array;
  key: Uint8Array;
  compressed?: boolean;
}

/** Second stage: hash the plaintext as it is decrypted (then the id key, if given). */
export interface DigestStreamMessage extends StreamStageCommon {
  type: 'digest-stream';
  idKey?: Uint8Array;
}

export type WorkerRequestMessage = DecodeRequestMessage | DecryptStreamMessage | DigestStreamMessage;

/** Sent once by a worker when its modules have loaded and it takes requests. */
export interface WorkerReadyMessage {
  ready: true;
}

export type DecodeResponseMessage =
  | { id: number; ok: true; plain: Uint8Array }
  /** decode: the plaintext is in the request's `dest`. */
  | { id: number; ok: true; intoDest: true }
  /**
   * decrypt-stream: whether the GCM tag matched; for a compressed payload whose tag matched, how
   * many bytes it decompressed to (`written`), or why it could not be decompressed.
   */
  | { id: number; ok: true; tagOk: boolean; written?: number; decompressFailed?: { limit: boolean; detail: string } }
  | { id: number; ok: true; digest: Uint8Array }
  /** A stream stage that stopped because the other side gave up (read error, failed stage). */
  | { id: number; ok: true; aborted: true }
  | { id: number; ok: false; kind: ErrorKind | 'bug'; message: string; file?: string | undefined };
