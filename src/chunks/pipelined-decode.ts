/**
 * Pipelined decoding of one large encrypted chunk: while the store still reads the chunk in
 * pieces, the main thread CRCs what has landed and one worker decrypts it; another hashes the
 * plaintext right behind. An uncompressed chunk (an incompressible file, most of a disk image)
 * is decrypted straight into the destination (arena memory, shared); a compressed one into the
 * worker's own memory, then, once its GCM tag has checked out, decompressed into the
 * destination step by step with the hashing right behind.
 *
 * Why: done one after the other, a cold 4 MiB chunk costs its read, CRC, AES-GCM and SHA-256 in
 * sequence, and a random 4 KiB read of a cold chunk (or the open of a cold small file, whose
 * header lies in a compressed chunk) waits for all of it. Overlapped, it waits for about the
 * slowest stage plus one step of the others (docs/performance.md).
 *
 * Every check of the whole-chunk decoder still happens, in the same order and with the same
 * errors (CRC, GCM tag, decompression, size, digest); nothing is returned before all of them pass.
 */
import { ZstdError, ZstdLimitError } from '../../native-shims/zstd.js';
import {
  ENCR_COMPR_BLOB_MAGIC,
  ENCRYPTED_BLOB_MAGIC,
  ENCRYPTED_HEADER_SIZE,
  crcMismatchError,
  decompressError,
  digestMismatchError,
  sizeMismatchError,
  tagMismatchError,
} from '../blob/data-blob.js';
import type { ChunkLease } from '../store/chunk-store.js';
import { bytesEqual } from '../util/bytes.js';
import { crc32 } from '../util/crc32.js';
import type { ChunkDecodeJob } from './chunk-decoder.js';
import type { DecodeResponseMessage, DecryptStreamMessage, DigestStreamMessage } from './worker-protocol.js';

/** Sends a stage to its worker; resolves with the worker's answer (errors arrive as rejections). */
export type StagePost = (msg: DecryptStreamMessage | DigestStreamMessage) => Promise<Extract<DecodeResponseMessage, { ok: true }>>;

/**
 * Smaller chunks are not worth three threads: their whole decode takes under a millisecond
 * more than their read.
 */
export const PIPELINE_MIN_BYTES = 1024 * 1024;
/** Compressed chunks whose stored size is below this take the whole-chunk decoder (see above). */
const COMPRESSED_MIN_RAW_BYTES = 64 * 1024;

/** Starts the pipeline for chunks it handles; undefined for the others (see PipelinedDecoder). */
export function pipelinedDecode(
  lease: ChunkLease,
  job: ChunkDecodeJob,
  dest: Buffer,
  stages: { decrypt: StagePost; digest: StagePost },
  /** Whether to take compressed chunks (see WorkerPoolDecoder: only when nothing else is decoding). */
  compressedToo = true,
): Promise<void> | undefined {
  const arriving = lease.arriving;
  const data = lease.data;
  const crypt = job.crypt;
  if (arriving === undefined || crypt === undefined || job.cryptMode !== 'encrypt') return undefined;
  if (Atomics.load(arriving.filled, 0) < ENCRYPTED_HEADER_SIZE) return undefined;
  if (!(dest.buffer instanceof SharedArrayBuffer) || dest.length !== job.expectedSize) return undefined;
  // Anything unusual (another magic, a size the index does not expect) takes the whole-chunk
  // path, which words its errors.
  const magic = data.subarray(0, 8);
  if (bytesEqual(magic, ENCRYPTED_BLOB_MAGIC)) {
    if (data.length < PIPELINE_MIN_BYTES || data.length - ENCRYPTED_HEADER_SIZE !== job.expectedSize) return undefined;
    return run(lease, job, dest, crypt, stages, false);
  }
  // Compressed: what costs is the plaintext (decompressing, hashing). A payload of a few bytes
  // (a chunk of zeros) stays with the whole-chunk decoder, which the mount pins such chunks in.
  if (compressedToo && bytesEqual(magic, ENCR_COMPR_BLOB_MAGIC) && job.expectedSize >= PIPELINE_MIN_BYTES && data.length >= COMPRESSED_MIN_RAW_BYTES) {
    return run(lease, job, dest, crypt, stages, true);
  }
  return undefined;
}

async function run(
  lease: ChunkLease,
  job: ChunkDecodeJob,
  dest: Buffer,
  crypt: NonNullable<ChunkDecodeJob['crypt']>,
  stages: { decrypt: StagePost; digest: StagePost },
  compressed: boolean,
): Promise<void> {
  const arriving = lease.arriving!;
  const data = lease.data;
  const size = job.expectedSize;
  // Plaintext bytes ready, and what the hashing stage waits for (see StreamStageCommon).
  const progress = new Int32Array(new SharedArrayBuffer(8));
  const common = { id: 0, data, plain: dest, progress, size };
  const decrypted = stages.decrypt({ ...common, type: 'decrypt-stream', filled: arriving.filled, key: crypt.encKey, ...(compressed ? { compressed } : {}) });
  const hashed = stages.digest({ ...common, type: 'digest-stream', idKey: crypt.idKey });
  // The CRC on this thread, as the pieces land: it waits for the disk anyway, and both workers
  // have more to do per byte (AES-GCM; SHA-256) than the disk takes to deliver it. Only once
  // both stages are posted: the pieces already in (their CRC takes a while) must not delay them.
  let crc = 0;
  arriving.follow((start, end) => {
    const from = Math.max(start, ENCRYPTED_HEADER_SIZE);
    if (end > from) crc = crc32(data.subarray(from, end), crc);
  });
  // A decrypting thread that died cannot say so through `progress`: tell the hashing one.
  decrypted.catch(() => {
    Atomics.store(progress, 0, -1);
    Atomics.notify(progress, 0);
  });
  // Settle everything before judging: the workers use the lease's memory and `dest` until they answer.
  const [read, dec, dig] = await Promise.allSettled([arriving.done, decrypted, hashed]);
  if (read.status === 'rejected') throw read.reason;
  if (dec.status === 'rejected') throw dec.reason;
  if (dig.status === 'rejected') throw dig.reason;
  const stopped = (): Error => new Error(`pipelined decode of ${job.name} stopped without a result`);
  const d = dec.value;
  if (!('tagOk' in d)) throw stopped();
  // The checks in the whole-chunk decoder's order (decodeBlob), with its words.
  const stored = data.readUInt32LE(8);
  if (crc !== stored) throw crcMismatchError(job.name, stored, crc);
  if (!d.tagOk) throw tagMismatchError(job.name, crypt);
  if (compressed) {
    const f = d.decompressFailed;
    if (f !== undefined) throw decompressError(f.limit ? new ZstdLimitError(f.detail) : new ZstdError(f.detail), job.name, size);
    if (d.written !== size) throw sizeMismatchError(job.name, d.written ?? 0, size);
  }
  if (!('digest' in dig.value)) throw stopped();
  if (!bytesEqual(dig.value.digest, job.digest)) throw digestMismatchError(job.name, job.digest, dig.value.digest);
}
