/**
 * Worker-thread entry for WorkerPoolDecoder: decodes chunks with the same function the reader
 * uses in-process, and answers with the plaintext (transferred, not copied, when it owns its
 * memory) or with the typed error's kind and text.
 */
import { parentPort } from 'node:worker_threads';
import { CryptConfig } from '../crypto/crypt-config.js';
import { isPbsfsError } from '../errors.js';
import { inlineChunkDecoder, isSameMemory } from './chunk-decoder.js';
import { DecodeGarbage } from './decode-garbage.js';
import { runDecryptStage, runDigestStage } from './stream-stages.js';
import type { DecodeRequestMessage, DecodeResponseMessage, WorkerReadyMessage, WorkerRequestMessage } from './worker-protocol.js';

const crypts = new Map<string, CryptConfig>();

function cryptFor(key: Uint8Array | undefined): CryptConfig | undefined {
  if (key === undefined) return undefined;
  const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
  let c = crypts.get(k);
  if (!c) {
    c = CryptConfig.fromKey(key);
    crypts.set(k, c);
  }
  return c;
}

const garbage = DecodeGarbage.forThisThread();

const port = parentPort;
if (port) {
  garbage.raiseMmapThreshold();
  port.on('message', (m: WorkerRequestMessage) => {
    let reply: DecodeResponseMessage;
    const transfer: ArrayBuffer[] = [];
    try {
      if (m.type !== 'decode') {
        const r = m.type === 'decrypt-stream' ? runDecryptStage(m) : runDigestStage(m);
        reply = { id: m.id, ok: true, ...r } as DecodeResponseMessage;
      } else {
        reply = decode(m, transfer);
      }
    } catch (e) {
      reply = isPbsfsError(e)
        ? { id: m.id, ok: false, kind: e.kind, message: e.message, file: e.file }
        : { id: m.id, ok: false, kind: 'bug', message: e instanceof Error ? e.message : String(e) };
    }
    try {
      port.postMessage(reply, transfer);
    } catch {
      port.postMessage(reply); // untransferable (pooled) memory: copy
    }
    // After the reply, so the collection does not delay it. Hashing makes no buffers.
    if (m.type !== 'digest-stream') garbage.produce(m.type === 'decode' ? m.expectedSize : m.size);
  });
  // The pool decodes on its own thread until this arrives (a worker takes a while to start).
  port.postMessage({ ready: true } satisfies WorkerReadyMessage);
}

function decode(m: DecodeRequestMessage, transfer: ArrayBuffer[]): DecodeResponseMessage {
  const crypt = cryptFor(m.key);
  const dest = m.dest !== undefined ? Buffer.from(m.dest.buffer, m.dest.byteOffset, m.dest.byteLength) : undefined;
  const job = {
    digest: Buffer.from(m.digest.buffer, m.digest.byteOffset, m.digest.byteLength),
    expectedSize: m.expectedSize,
    cryptMode: m.cryptMode,
    name: m.name,
    ...(crypt ? { crypt } : {}),
  };
  const plain = inlineChunkDecoder(Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength), job, dest) as Buffer;
  if (dest !== undefined && isSameMemory(plain, dest)) return { id: m.id, ok: true, intoDest: true };
  // Hand the memory over when the plaintext owns (nearly all of) its ArrayBuffer; small or
  // shared buffers are copied by the structured clone instead.
  // A view of shared memory (the raw bytes of an unencrypted, uncompressed chunk read into
  // a pooled buffer) is shared back, not moved; the reader copies it before reuse.
  const ab = plain.buffer;
  if (ab instanceof ArrayBuffer && plain.byteOffset === 0 && ab.byteLength - plain.length < 4096 && plain.length >= 65536) transfer.push(ab);
  return { id: m.id, ok: true, plain: new Uint8Array(ab, plain.byteOffset, plain.length) };
}
