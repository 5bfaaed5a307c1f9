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
}

/**
 * The stages of a pipelined decode (see pipelined-decode.ts) share `progress` (shared memory):
 * index 0 counts the plaintext bytes decrypted, index 1 those hashed; -1 in either means that
 * side gave up. Plaintext passes from the first stage to the second through `ring`, a small
 * reused buffer, in steps that never straddle its end.
 */
export interface StreamStageCommon {
  id: number;
  ring: Uint8Array;
  progress: Int32Array;
  /** Plaintext length. */
  size: number;
}

/**
 * First stage: decrypt the ciphertext of an encrypted, uncompressed chunk as it arrives in
 * `data` (its first `filled[0]` bytes are there), into a buffer of its own (handed back) and
 * into the ring.
 */
export interface DecryptStreamMessage extends StreamStageCommon {
  type: 'decrypt-stream';
  /** The whole blob, in shared memory; its front holds the header (IV and tag). */
  data: Uint8Array;
  filled: Int32Array;
  key: Uint8Array;
}

/** Second stage: hash the plaintext as it passes through the ring (then the id key, if given). */
export interface DigestStreamMessage extends StreamStageCommon {
  type: 'digest-stream';
  idKey?: Uint8Array;
}

export type WorkerRequestMessage = DecodeRequestMessage | DecryptStreamMessage | DigestStreamMessage;

export type DecodeResponseMessage =
  | { id: number; ok: true; plain: Uint8Array }
  /** decrypt-stream: the plaintext and whether the GCM tag matched. digest-stream: the digest. */
  | { id: number; ok: true; plain: Uint8Array; tagOk: boolean }
  | { id: number; ok: true; digest: Uint8Array }
  /** A stream stage that stopped because the other side gave up (read error, failed stage). */
  | { id: number; ok: true; aborted: true }
  | { id: number; ok: false; kind: ErrorKind | 'bug'; message: string; file?: string | undefined };
