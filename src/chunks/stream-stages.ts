/**
 * The two worker-side stages of a pipelined chunk decode (see pipelined-decode.ts). Each runs
 * on its own worker thread and blocks on shared-memory counters with Atomics.wait, so bytes move
 * between the reading main thread, the decrypting thread and the hashing thread without a
 * message per piece.
 */
import { createDecipheriv, createHash } from 'node:crypto';
import { IV_SIZE } from '../crypto/crypt-config.js';
import { ENCRYPTED_HEADER_SIZE, UNENCRYPTED_HEADER_SIZE } from '../blob/data-blob.js';
import type { DecryptStreamMessage, DigestStreamMessage } from './worker-protocol.js';

/**
 * Plaintext handed from one stage to the next at a time: small, so the hashing stage's tail
 * after the last decryption is short. The ring is a whole number of steps.
 */
export const STEP_BYTES = 256 * 1024;
/**
 * A stage waiting this long for bytes gives up: the other side is gone (a crashed thread) or
 * the disk has stopped answering. Far beyond any healthy read of one chunk.
 */
const STALL_MS = 120_000;

const DECRYPTED = 0;
const HASHED = 1;

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

export type DecryptResult = { plain: Uint8Array; tagOk: boolean } | { aborted: true };
export type DigestResult = { digest: Buffer } | { aborted: true };

/** Stage one; `transfer` receives the plaintext's memory (moved to the main thread, not copied). */
export function runDecryptStage(m: DecryptStreamMessage, transfer: ArrayBuffer[]): DecryptResult {
  const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  const { ring, progress } = m;
  try {
    if (m.size !== data.length - ENCRYPTED_HEADER_SIZE || ring.length % STEP_BYTES !== 0) throw new Error('pipelined decode: inconsistent sizes');
    if (waitFor(m.filled, 0, ENCRYPTED_HEADER_SIZE, 'chunk read') < 0) return abort(progress);
    const iv = data.subarray(UNENCRYPTED_HEADER_SIZE, UNENCRYPTED_HEADER_SIZE + IV_SIZE);
    const tag = data.subarray(UNENCRYPTED_HEADER_SIZE + IV_SIZE, ENCRYPTED_HEADER_SIZE);
    const decipher = createDecipheriv('aes-256-gcm', m.key, iv);
    decipher.setAuthTag(tag);
    const out = Buffer.allocUnsafeSlow(m.size);
    let done = 0;
    while (done < m.size) {
      const n = Math.min(STEP_BYTES, m.size - done);
      if (waitFor(m.filled, 0, ENCRYPTED_HEADER_SIZE + done + n, 'chunk read') < 0) return abort(progress);
      // The ring slot about to be written must have been hashed already.
      if (waitFor(progress, HASHED, done + n - ring.length, 'chunk hashing') < 0) return abort(progress);
      const at = ENCRYPTED_HEADER_SIZE + done;
      const plain = decipher.update(data.subarray(at, at + n));
      // GCM is a stream mode: OpenSSL returns exactly as many bytes as it was given.
      if (plain.length !== n) throw new Error(`AES-GCM returned ${plain.length} bytes for ${n}`);
      ring.set(plain, done % ring.length);
      out.set(plain, done);
      done += n;
      publish(progress, DECRYPTED, done);
    }
    let tagOk = true;
    try {
      decipher.final();
    } catch {
      tagOk = false;
    }
    transfer.push(out.buffer as ArrayBuffer);
    return { plain: new Uint8Array(out.buffer, 0, m.size), tagOk };
  } catch (e) {
    abort(progress); // the hashing stage must not wait for bytes that never come
    throw e;
  }
}

function abort(progress: Int32Array): { aborted: true } {
  publish(progress, DECRYPTED, -1);
  return { aborted: true };
}

export function runDigestStage(m: DigestStreamMessage): DigestResult {
  const { ring, progress } = m;
  const h = createHash('sha256');
  let done = 0;
  try {
    while (done < m.size) {
      const n = Math.min(STEP_BYTES, m.size - done);
      if (waitFor(progress, DECRYPTED, done + n, 'chunk decryption') < 0) return { aborted: true };
      const at = done % ring.length;
      h.update(ring.subarray(at, at + n));
      done += n;
      publish(progress, HASHED, done);
    }
  } catch (e) {
    publish(progress, HASHED, -1); // the decrypting stage must not wait for ring space
    throw e;
  }
  if (m.idKey !== undefined) h.update(m.idKey);
  return { digest: h.digest() };
}
