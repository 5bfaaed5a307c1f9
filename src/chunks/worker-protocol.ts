/** Messages between WorkerPoolDecoder and its decode workers. */
import type { BlobCryptMode } from '../blob/data-blob.js';
import type { ErrorKind } from '../errors.js';

export interface DecodeRequestMessage {
  id: number;
  raw: Uint8Array;
  digest: Uint8Array;
  expectedSize: number;
  cryptMode: BlobCryptMode;
  name: string;
  /** The 32-byte encryption key, when the reader has one. */
  key?: Uint8Array;
}

export type DecodeResponseMessage =
  | { id: number; ok: true; plain: Uint8Array }
  | { id: number; ok: false; kind: ErrorKind | 'bug'; message: string; file?: string | undefined };
