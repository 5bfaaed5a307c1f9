/**
 * DataBlob codec (spec section 2): the container of every `*.blob` file and every chunk.
 *
 *   unencrypted: magic(8) crc32(4, LE) payload
 *   encrypted:   magic(8) crc32(4, LE) iv(16) tag(16) ciphertext
 *
 * The CRC covers only the bytes after the header. The payload is raw or zstd; encrypted blobs
 * are compressed first, then encrypted.
 */
import { createHash } from 'node:crypto';
import { CryptoError, FormatError, IntegrityError, LimitError } from '../errors.js';
import { CryptConfig, IV_SIZE, TAG_SIZE } from '../crypto/crypt-config.js';
import { crc32 } from '../util/crc32.js';
import { bytesEqual, formatBytes, toHex } from '../util/bytes.js';
import { zstdCompress, zstdDecompress, zstdDecompressInto, ZstdLimitError } from '../../native-shims/zstd.js';

export const UNCOMPRESSED_BLOB_MAGIC = Buffer.from('42ab3807be8370a1', 'hex');
export const COMPRESSED_BLOB_MAGIC = Buffer.from('31b958426fb6a37f', 'hex');
export const ENCRYPTED_BLOB_MAGIC = Buffer.from('7b6785be222d4cf0', 'hex');
export const ENCR_COMPR_BLOB_MAGIC = Buffer.from('e6591bbf0bbfd80b', 'hex');

/** Largest plaintext upstream will encode into one blob (MAX_BLOB_SIZE). */
export const MAX_BLOB_SIZE = 128 * 1024 * 1024;
/** Largest chunk plaintext the upstream server accepts. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

export const UNENCRYPTED_HEADER_SIZE = 12;
export const ENCRYPTED_HEADER_SIZE = 44;

export type BlobCryptMode = 'none' | 'encrypt';

export interface BlobHeader {
  magic: Buffer;
  encrypted: boolean;
  compressed: boolean;
  headerSize: 12 | 44;
  /** CRC32 stored at offset 8. */
  crc: number;
}

export interface DecodeBlobOptions {
  /** Names the blob in error messages, e.g. "chunk 3fa2… of root.pxar.didx". */
  name: string;
  /** Needed for encrypted magics. */
  crypt?: CryptConfig;
  /** What the index/manifest says the blob must be (spec 2.6). */
  expectedCryptMode?: BlobCryptMode;
  /** Chunk digest: sha256(plain) for plain magics, crypt.computeDigest(plain) for encrypted ones. */
  expectedDigest?: Uint8Array;
  /** Exact plaintext length when known (from an index range). */
  expectedSize?: number;
  /** Refuse plaintext larger than this (decompression bomb guard); default MAX_BLOB_SIZE. */
  maxSize?: number;
  /** Check the stored CRC32 (default true). */
  checkCrc?: boolean;
  /**
   * Memory for the plaintext, exactly `expectedSize` bytes (at most `maxSize`): the result is
   * then `into` itself, and no new memory is taken. Ignored when its length is not that.
   */
  into?: Buffer;
}

/**
 * This thread's memory for decrypted compressed payloads, which are decompressed at once: reused
 * rather than fresh for every chunk (fresh pages are expensive here, see DECRYPT_STEP_BYTES).
 * Payloads beyond SCRATCH_MAX_BYTES (only blobs can be that large) get memory of their own.
 * Also the pipelined decoder's (src/chunks/stream-stages.ts): a thread runs one decode at a
 * time, start to end, so they never need it at once.
 */
let scratchMemory: Buffer | undefined;
const SCRATCH_MAX_BYTES = MAX_CHUNK_SIZE + 1024 * 1024;

export function decryptScratch(bytes: number): Buffer {
  if (bytes > SCRATCH_MAX_BYTES) return Buffer.allocUnsafeSlow(bytes);
  if (scratchMemory === undefined || scratchMemory.length < bytes) {
    scratchMemory = Buffer.allocUnsafeSlow(Math.min(SCRATCH_MAX_BYTES, Math.ceil(bytes / (1024 * 1024)) * 1024 * 1024));
  }
  return scratchMemory.subarray(0, bytes);
}

function classify(magic: Uint8Array): { encrypted: boolean; compressed: boolean } | undefined {
  if (bytesEqual(magic, UNCOMPRESSED_BLOB_MAGIC)) return { encrypted: false, compressed: false };
  if (bytesEqual(magic, COMPRESSED_BLOB_MAGIC)) return { encrypted: false, compressed: true };
  if (bytesEqual(magic, ENCRYPTED_BLOB_MAGIC)) return { encrypted: true, compressed: false };
  if (bytesEqual(magic, ENCR_COMPR_BLOB_MAGIC)) return { encrypted: true, compressed: true };
  return undefined;
}

/** Reads and checks the fixed header (magic and length); does not check the CRC. */
export function parseBlobHeader(raw: Uint8Array, name: string): BlobHeader {
  if (raw.length < UNENCRYPTED_HEADER_SIZE) {
    throw new FormatError(`blob is too small (${raw.length} bytes, a blob header needs ${UNENCRYPTED_HEADER_SIZE})`, {
      file: name,
    });
  }
  const magic = Buffer.from(raw.buffer, raw.byteOffset, 8);
  const kind = classify(magic);
  if (kind === undefined) {
    throw new FormatError(`not a PBS blob (unknown magic ${toHex(magic)})`, { file: name, offset: 0 });
  }
  const headerSize = kind.encrypted ? ENCRYPTED_HEADER_SIZE : UNENCRYPTED_HEADER_SIZE;
  if (raw.length < headerSize) {
    throw new FormatError(`encrypted blob is too small (${raw.length} bytes, its header needs ${headerSize})`, {
      file: name,
    });
  }
  const crc = new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(8, true);
  return { magic: Buffer.from(magic), ...kind, headerSize, crc };
}

export function blobCryptMode(h: BlobHeader): BlobCryptMode {
  return h.encrypted ? 'encrypt' : 'none';
}

/** Checks the stored CRC32 against the bytes after the header (possible without a key). */
export function verifyBlobCrc(raw: Uint8Array, name: string, header = parseBlobHeader(raw, name)): void {
  const actual = crc32(raw.subarray(header.headerSize));
  if (actual !== header.crc) throw crcMismatchError(name, header.crc, actual);
}

/*
 * The errors of a failed check, shared with the pipelined decoder (src/chunks) so a chunk fails
 * with the same words whichever way it was decoded.
 */

export function crcMismatchError(name: string, stored: number, computed: number): IntegrityError {
  return new IntegrityError(`blob CRC32 mismatch (stored ${hex32(stored)}, computed ${hex32(computed)}): the file is damaged`, {
    file: name,
    offset: 8,
  });
}

export function tagMismatchError(name: string, crypt: CryptConfig, cause?: unknown): CryptoError {
  return new CryptoError(`cannot decrypt blob with key ${crypt.shortFingerprint()}: wrong key or damaged data (GCM tag mismatch)`, {
    file: name,
    cause,
  });
}

export function digestMismatchError(name: string, expected: Uint8Array, actual: Uint8Array): IntegrityError {
  return new IntegrityError(`chunk digest mismatch (expected ${toHex(expected)}, content hashes to ${toHex(actual)})`, { file: name });
}

export function sizeMismatchError(name: string, got: number, expected: number): IntegrityError {
  return new IntegrityError(`blob decodes to ${got} bytes, expected ${expected}`, { file: name });
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/**
 * Decodes (and verifies as asked) a blob or chunk; returns the plaintext: `opts.into` when given
 * and usable, else new memory, or a view of `raw` for an unencrypted, uncompressed blob.
 */
export function decodeBlob(raw: Uint8Array, opts: DecodeBlobOptions): Buffer {
  const name = opts.name;
  const header = parseBlobHeader(raw, name);
  const mode = blobCryptMode(header);
  if (opts.expectedCryptMode !== undefined && opts.expectedCryptMode !== mode) {
    throw new IntegrityError(
      opts.expectedCryptMode === 'encrypt'
        ? 'crypt mode mismatch: expected an encrypted blob but found an unencrypted one'
        : 'crypt mode mismatch: expected an unencrypted blob but found an encrypted one',
      { file: name, offset: 0 },
    );
  }
  if (opts.checkCrc !== false) verifyBlobCrc(raw, name, header);

  const maxSize = opts.maxSize ?? MAX_BLOB_SIZE;
  let payload: Buffer = Buffer.from(raw.buffer, raw.byteOffset + header.headerSize, raw.length - header.headerSize);
  // Uncompressed payloads (ciphertext included) are as long as the plaintext: refuse early,
  // before spending a decryption on them.
  if (!header.compressed && payload.length > maxSize) {
    throw new LimitError(`blob payload of ${formatBytes(payload.length)} exceeds the limit of ${formatBytes(maxSize)}`, {
      file: name,
    });
  }

  const into = opts.into !== undefined && opts.into.length === opts.expectedSize && opts.into.length <= maxSize ? opts.into : undefined;

  if (header.encrypted) {
    const crypt = opts.crypt;
    if (crypt === undefined) {
      throw new CryptoError('blob is encrypted but no key given (use --keyfile or --master-keyfile)', { file: name });
    }
    const iv = raw.subarray(12, 12 + IV_SIZE);
    const tag = raw.subarray(12 + IV_SIZE, 12 + IV_SIZE + TAG_SIZE);
    // Compressed: into reused scratch memory, decompressed right below. Else into the result.
    const out = header.compressed ? decryptScratch(payload.length) : into?.length === payload.length ? into : Buffer.allocUnsafeSlow(payload.length);
    try {
      crypt.decryptInto(iv, tag, payload, out);
    } catch (e) {
      throw tagMismatchError(name, crypt, e);
    }
    payload = out;
  }

  let plain: Buffer;
  if (header.compressed) {
    plain = into !== undefined ? decompressInto(payload, into, name) : decompress(payload, name, maxSize, opts.expectedSize);
  } else if (into !== undefined && payload !== into && payload.length === into.length) {
    into.set(payload);
    plain = into;
  } else {
    plain = payload;
  }

  if (opts.expectedSize !== undefined && plain.length !== opts.expectedSize) throw sizeMismatchError(name, plain.length, opts.expectedSize);
  if (opts.expectedDigest !== undefined) {
    let digest: Buffer;
    if (header.encrypted) {
      digest = opts.crypt!.computeDigest(plain);
    } else {
      digest = createHash('sha256').update(plain).digest();
    }
    if (!bytesEqual(digest, opts.expectedDigest)) throw digestMismatchError(name, opts.expectedDigest, digest);
  }
  return plain;
}

/** decompress() into `into` (exactly the expected size, within the size limit): the bytes written. */
function decompressInto(payload: Buffer, into: Buffer, name: string): Buffer {
  try {
    return into.subarray(0, zstdDecompressInto(payload, into));
  } catch (e) {
    throw decompressError(e, name, into.length);
  }
}

/**
 * The error of a compressed payload that failed to decompress: beyond `expectedSize` (or, given,
 * the size limit `maxSize`), or not valid zstd. Also the pipelined decoder's.
 */
export function decompressError(e: unknown, name: string, expectedSize: number | undefined, maxSize?: number): Error {
  if (e instanceof ZstdLimitError) {
    if (maxSize === undefined) {
      return new IntegrityError(`compressed blob decodes to more than the expected ${expectedSize} bytes`, { file: name, cause: e });
    }
    return new LimitError(`compressed blob decodes to more than the limit of ${formatBytes(maxSize)}`, { file: name, cause: e });
  }
  const detail = e instanceof Error ? e.message : String(e);
  return new FormatError(`compressed payload is not valid zstd (${detail})`, { file: name, cause: e });
}

function decompress(payload: Buffer, name: string, maxSize: number, expectedSize: number | undefined): Buffer {
  // With a known size, anything beyond it is already wrong: stop decoding there (as
  // decompressInto does, whose room is exactly that size).
  const bounded = expectedSize !== undefined && expectedSize <= maxSize;
  try {
    return zstdDecompress(payload, bounded ? expectedSize : maxSize, expectedSize);
  } catch (e) {
    throw decompressError(e, name, expectedSize, bounded ? undefined : maxSize);
  }
}

/**
 * Encodes a blob exactly as upstream does (spec 2.3): zstd level 1, kept only when strictly
 * smaller; with a key, compress-then-encrypt under a random (or given) 16-byte IV.
 */
export function encodeBlob(data: Uint8Array, opts: { crypt?: CryptConfig; compress: boolean; iv?: Uint8Array }): Buffer {
  if (data.length > MAX_BLOB_SIZE) {
    throw new LimitError(`data blob too large (${formatBytes(data.length)}, limit ${formatBytes(MAX_BLOB_SIZE)})`);
  }
  let payload: Uint8Array = data;
  let compressed = false;
  if (opts.compress) {
    const z = zstdCompress(data, 1);
    if (z.length < data.length) {
      payload = z;
      compressed = true;
    }
  }
  if (opts.crypt !== undefined) {
    const { iv, tag, ciphertext } = opts.crypt.encrypt(payload, opts.iv);
    const out = Buffer.allocUnsafe(ENCRYPTED_HEADER_SIZE + ciphertext.length);
    (compressed ? ENCR_COMPR_BLOB_MAGIC : ENCRYPTED_BLOB_MAGIC).copy(out, 0);
    out.writeUInt32LE(crc32(ciphertext), 8);
    iv.copy(out, 12);
    tag.copy(out, 28);
    ciphertext.copy(out, 44);
    return out;
  }
  const out = Buffer.allocUnsafe(UNENCRYPTED_HEADER_SIZE + payload.length);
  (compressed ? COMPRESSED_BLOB_MAGIC : UNCOMPRESSED_BLOB_MAGIC).copy(out, 0);
  out.writeUInt32LE(crc32(payload), 8);
  out.set(payload, 12);
  return out;
}
