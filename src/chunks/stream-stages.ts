/**
 * The two worker-side stages of a pipelined chunk decode (see pipelined-decode.ts). Each runs
 * on its own worker thread and blocks on shared-memory counters with Atomics.wait, so bytes move
 * between the reading main thread, the decrypting thread and the hashing thread without a
 * message per piece.
 */
import { createDecipheriv, createHash } from 'node:crypto';
import { ZstdLimitError, zstdDecompressInto } from '../../native-shims/zstd.js';
import { DECRYPT_STEP_BYTES, IV_SIZE } from '../crypto/crypt-config.js';
import { ENCRYPTED_HEADER_SIZE, UNENCRYPTED_HEADER_SIZE, decryptScratch } from '../blob/data-blob.js';
import type { DecryptStreamMessage, DigestStreamMessage } from './worker-protocol.js';

/**
 * A stage waiting this long for bytes gives up: the other side is gone (a crashed thread) or
 * the disk has stopped answering. Far beyond any healthy read of one chunk.
 */
const STALL_MS = 120_000;

/** progress[DECRYPTED]: plaintext bytes decrypted (-1: gave up); progress[WANTED]: what the hashing stage waits for. */
const DECRYPTED = 0;
const WANTED = 1;
/**
 * The hashing stage, once it has caught up, sleeps until this much more is decrypted: it is the
 * faster stage, and woken for every step it spent more CPU on wake-ups than on hashing (1 GiB
 * read through the mount: +0.4-0.8 s of CPU). The tail after the last decryption stays short
 * (a fraction of a millisecond of hashing).
 */
const HASH_BATCH_BYTES = 256 * 1024;

/** Waits until cell[i] >= atLeast or is negative (the other side gave up); returns its value. */
function waitFor(cell: Int32Array, i: number, atLeast: number, what: string): number {
  for (;;) {
    const v = Atomics.load(cell, i);
    if (v < 0 || v >= atLeast) return v;
    if (Atomics.wait(cell, i, v, STALL_MS) === 'timed-out' && Atomics.load(cell, i) === v) {
      throw new Error(`${what} stalled: no progress for ${STALL_MS / 1000} s`);
    }
  }
}

function publish(cell: Int32Array, i: number, value: number): void {
  Atomics.store(cell, i, value);
  Atomics.notify(cell, i);
}

/**
 * Publishes decryption progress, waking the hashing stage only once it has what it waits for.
 * With sequentially consistent atomics on both sides (it stores WANTED, then reads DECRYPTED;
 * this stores DECRYPTED, then reads WANTED) no wake-up is lost.
 */
function publishDecrypted(progress: Int32Array, done: number): void {
  Atomics.store(progress, DECRYPTED, done);
  if (done >= Atomics.load(progress, WANTED)) Atomics.notify(progress, DECRYPTED);
}

export type DecryptResult = { tagOk: boolean; written?: number; decompressFailed?: { limit: boolean; detail: string } } | { aborted: true };

/** Decompressed bytes per hand-over to the hashing stage. */
const DECOMPRESS_STEP_BYTES = 256 * 1024;
export type DigestResult = { digest: Buffer } | { aborted: true };

/** Stage one: decrypts the ciphertext into `m.plain` as it arrives. */
export function runDecryptStage(m: DecryptStreamMessage): DecryptResult {
  const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  const { plain: dest, progress } = m;
  const compressed = m.compressed === true;
  const cipherSize = data.length - ENCRYPTED_HEADER_SIZE;
  try {
    if ((!compressed && m.size !== cipherSize) || cipherSize < 0 || dest.length !== m.size) throw new Error('pipelined decode: inconsistent sizes');
    // Compressed: the payload is decrypted here first, and only an authenticated one is
    // decompressed (zstd never sees bytes the tag has not vouched for).
    const out = compressed ? decryptScratch(cipherSize) : dest;
    if (waitFor(m.filled, 0, ENCRYPTED_HEADER_SIZE, 'chunk read') < 0) return abort(progress);
    const iv = data.subarray(UNENCRYPTED_HEADER_SIZE, UNENCRYPTED_HEADER_SIZE + IV_SIZE);
    const tag = data.subarray(UNENCRYPTED_HEADER_SIZE + IV_SIZE, ENCRYPTED_HEADER_SIZE);
    const decipher = createDecipheriv('aes-256-gcm', m.key, iv);
    decipher.setAuthTag(tag);
    let done = 0;
    while (done < cipherSize) {
      // The same steps as every other decryption (see DECRYPT_STEP_BYTES); small ones also keep
      // the hashing stage's tail short and let it read the plaintext while it is still cached.
      const n = Math.min(DECRYPT_STEP_BYTES, cipherSize - done);
      if (waitFor(m.filled, 0, ENCRYPTED_HEADER_SIZE + done + n, 'chunk read') < 0) return abort(progress);
      const at = ENCRYPTED_HEADER_SIZE + done;
      const step = decipher.update(data.subarray(at, at + n));
      // GCM is a stream mode: OpenSSL returns exactly as many bytes as it was given.
      if (step.length !== n) throw new Error(`AES-GCM returned ${step.length} bytes for ${n}`);
      out.set(step, done);
      done += n;
      if (!compressed) publishDecrypted(progress, done);
    }
    let tagOk = true;
    try {
      decipher.final();
    } catch {
      tagOk = false;
    }
    if (!compressed) return { tagOk };
    // From here on the hashing stage is fed decompressed bytes, or told to stand down.
    if (!tagOk) {
      abort(progress);
      return { tagOk };
    }
    let written: number;
    try {
      written = zstdDecompressInto(out, dest, { step: DECOMPRESS_STEP_BYTES, report: (w) => publishDecrypted(progress, w) });
    } catch (e) {
      abort(progress);
      return { tagOk, decompressFailed: { limit: e instanceof ZstdLimitError, detail: e instanceof Error ? e.message : String(e) } };
    }
    // Short output: the hashing stage would wait for bytes that never come.
    if (written !== m.size) abort(progress);
    return { tagOk, written };
  } catch (e) {
    abort(progress); // the hashing stage must not wait for bytes that never come
    throw e;
  }
}

function abort(progress: Int32Array): { aborted: true } {
  publish(progress, DECRYPTED, -1);
  return { aborted: true };
}

/**
 * Stage two: hashes the plaintext as it is decrypted, then the id key, if given. Takes all that
 * is ready at each wake-up, and sleeps for HASH_BATCH_BYTES more at a time.
 */
export function runDigestStage(m: DigestStreamMessage): DigestResult {
  const { plain, progress } = m;
  const h = createHash('sha256');
  let done = 0;
  while (done < m.size) {
    const want = Math.min(m.size, done + HASH_BATCH_BYTES);
    Atomics.store(progress, WANTED, want);
    const ready = waitFor(progress, DECRYPTED, want, 'chunk decryption');
    if (ready < 0) return { aborted: true };
    const to = Math.min(ready, m.size);
    h.update(plain.subarray(done, to));
    done = to;
  }
  if (m.idKey !== undefined) h.update(m.idKey);
  return { digest: h.digest() };
}
