/**
 * The pipelined decode of large encrypted chunks (read in pieces, CRC on the main thread,
 * decryption, and for compressed ones decompression once the tag has checked out, on one worker,
 * hashing on another): the same plaintext and the same errors as the whole-chunk decoder, on a
 * real directory store read with O_DIRECT where the disk allows it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dir, type DirectoryResult } from 'tmp-promise';
import { ENCR_COMPR_BLOB_MAGIC, ENCRYPTED_HEADER_SIZE, encodeBlob } from '../../src/blob/data-blob.js';
import { zstdCompress } from '../../native-shims/zstd.js';
import { crc32 } from '../../src/util/crc32.js';
import { ChunkReader, inlineChunkDecoder, type PipelinedDecoder } from '../../src/chunks/chunk-reader.js';
import { PIPELINE_MIN_BYTES } from '../../src/chunks/pipelined-decode.js';
import { WorkerPoolDecoder } from '../../src/chunks/worker-pool-decoder.js';
import { CryptConfig } from '../../src/crypto/crypt-config.js';
import { CryptoError, FormatError, IntegrityError, IoError } from '../../src/errors.js';
import type { ChunkLease, ChunkStore } from '../../src/store/chunk-store.js';
import { chunkRelPath } from '../../src/store/chunk-store.js';
import { LocalChunkStore } from '../../src/store/local-chunk-store.js';
import { projectRoot } from '../helpers/paths.js';

const workerUrl = pathToFileURL(join(projectRoot, 'dist', 'src', 'chunks', 'decode-worker.js'));
const crypt = CryptConfig.fromKey(randomBytes(32));
// Not multiples of the read piece or the hand-over step, one just at the threshold, one large.
const SIZES = [PIPELINE_MIN_BYTES, PIPELINE_MIN_BYTES + 1234, 3 * 1024 * 1024 + 7, 9 * 1024 * 1024 + 4095];

let tmp: DirectoryResult;
let pool: WorkerPoolDecoder;
const chunks: { digest: Buffer; plain: Buffer }[] = [];

function writeChunk(root: string, digest: Buffer, raw: Buffer): void {
  const rel = chunkRelPath(digest);
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), raw);
}

beforeAll(async () => {
  // On the project's disk, not /tmp: O_DIRECT needs a file system that does it.
  tmp = await dir({ unsafeCleanup: true, tmpdir: projectRoot, prefix: '.test-pipeline-' });
  for (const size of SIZES) {
    const plain = randomBytes(size);
    const digest = crypt.computeDigest(plain);
    writeChunk(tmp.path, digest, encodeBlob(plain, { crypt, compress: true })); // random data stays uncompressed
    chunks.push({ digest, plain });
  }
  pool = new WorkerPoolDecoder({ threads: 2, workerUrl });
});
afterAll(async () => {
  await pool.close();
  await tmp.cleanup();
});

/** The pool's pipelined decoder, counting the chunks it took on. */
function counting(): { pipelined: PipelinedDecoder; taken: () => number } {
  let n = 0;
  const inner = pool.pipelined!;
  return {
    pipelined: (lease, job, dest) => {
      const p = inner(lease, job, dest);
      if (p !== undefined) n++;
      return p;
    },
    taken: () => n,
  };
}

const req = (c: { digest: Buffer; plain: Buffer }) => ({ digest: c.digest, expectedSize: c.plain.length, cryptMode: 'encrypt' as const });

describe('pipelined chunk decode', () => {
  it('decodes large encrypted chunks to their exact plaintext, concurrently and more than the pool holds at once', async () => {
    const { pipelined, taken } = counting();
    const reader = new ChunkReader(new LocalChunkStore(tmp.path), { crypt, decoder: pool.decoder, pipelined, cacheBytes: 0 });
    // 12 distinct chunks at once, with 4 read buffers.
    const all = [...chunks];
    for (let i = 0; i < 8; i++) {
      const plain = randomBytes(PIPELINE_MIN_BYTES + i * 77777);
      const digest = crypt.computeDigest(plain);
      writeChunk(tmp.path, digest, encodeBlob(plain, { crypt, compress: false }));
      all.push({ digest, plain });
    }
    const out = await Promise.all(all.map((c) => reader.get(req(c))));
    out.forEach((b, i) => expect(b.equals(all[i]!.plain)).toBe(true));
    expect(taken()).toBe(all.length);
    expect(reader.stats.errors).toBe(0);
    // The plaintext is memory of its own: reading more chunks through the same buffers leaves it intact.
    const again = await reader.get(req(chunks[0]!));
    expect(out[1]!.equals(chunks[1]!.plain)).toBe(true);
    expect(again.equals(chunks[0]!.plain)).toBe(true);
  });

  it('leaves small chunks to the whole-chunk decoder', async () => {
    const plain = randomBytes(PIPELINE_MIN_BYTES - 100); // with its header, just under the threshold
    const digest = crypt.computeDigest(plain);
    writeChunk(tmp.path, digest, encodeBlob(plain, { crypt, compress: false }));
    const { pipelined, taken } = counting();
    const reader = new ChunkReader(new LocalChunkStore(tmp.path), { crypt, decoder: pool.decoder, pipelined });
    expect((await reader.get(req({ digest, plain }))).equals(plain)).toBe(true);
    expect(taken()).toBe(0);
  });

  /** Raw bytes decoded both ways must fail with the same error class and words. */
  async function sameFailure(raw: Buffer, digest: Buffer, size: number): Promise<Error> {
    const root = join(tmp.path, `bad-${digest.toString('hex').slice(0, 8)}-${raw[raw.length - 1]}`);
    writeChunk(root, digest, raw);
    const { pipelined, taken } = counting();
    const reader = new ChunkReader(new LocalChunkStore(root), { crypt, decoder: pool.decoder, pipelined });
    const piped = (await reader.get({ digest, expectedSize: size, cryptMode: 'encrypt' }).catch((e: unknown) => e)) as Error;
    expect(taken()).toBe(1);
    let whole: unknown;
    try {
      inlineChunkDecoder(raw, { digest, expectedSize: size, cryptMode: 'encrypt', name: chunkRelPath(digest), crypt });
    } catch (e) {
      whole = e;
    }
    expect(whole).toBeInstanceOf(Error);
    expect(piped.constructor).toBe((whole as Error).constructor);
    expect(piped.message).toBe((whole as Error).message);
    expect(piped.message).toContain(chunkRelPath(digest));
    // The workers are still healthy afterwards.
    const ok = new ChunkReader(new LocalChunkStore(tmp.path), { crypt, decoder: pool.decoder, pipelined: pool.pipelined! });
    expect((await ok.get(req(chunks[2]!))).equals(chunks[2]!.plain)).toBe(true);
    return piped;
  }

  it('a flipped ciphertext byte is a CRC mismatch, as in the whole-chunk decoder', async () => {
    const c = chunks[2]!;
    const raw = readFileSync(join(tmp.path, chunkRelPath(c.digest)));
    raw[raw.length - 100]! ^= 0x40;
    const e = await sameFailure(raw, c.digest, c.plain.length);
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toContain('CRC32 mismatch');
  });

  it('a damaged tag with an intact CRC is a GCM tag mismatch (wrong key or damaged data)', async () => {
    const c = chunks[1]!;
    const raw = readFileSync(join(tmp.path, chunkRelPath(c.digest)));
    raw[30]! ^= 1; // inside the tag, which the CRC does not cover
    const e = await sameFailure(raw, c.digest, c.plain.length);
    expect(e).toBeInstanceOf(CryptoError);
    expect(e.message).toContain('GCM tag mismatch');
  });

  it('a genuine chunk filed under another digest is a digest mismatch', async () => {
    const c = chunks[1]!;
    const raw = readFileSync(join(tmp.path, chunkRelPath(c.digest)));
    const other = createHash('sha256').update('another chunk').digest();
    const e = await sameFailure(raw, other, c.plain.length);
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toContain('digest mismatch');
  });

  it('a read that fails half-way fails the chunk with the read error, and the stages stand down', async () => {
    const c = chunks[3]!;
    const raw = readFileSync(join(tmp.path, chunkRelPath(c.digest)));
    // A store whose chunk arrives in two halves, the second of which never comes.
    const store: ChunkStore = {
      name: 'half',
      get: () => Promise.reject(new Error('not used')),
      lease: (): Promise<ChunkLease> => {
        const data = Buffer.from(new SharedArrayBuffer(raw.length));
        const half = 2 * 1024 * 1024;
        raw.copy(data, 0, 0, half);
        const filled = new Int32Array(new SharedArrayBuffer(4));
        Atomics.store(filled, 0, half);
        const done = new Promise<void>((_, reject) =>
          setTimeout(() => {
            Atomics.store(filled, 0, -1);
            Atomics.notify(filled, 0);
            reject(new IoError('cannot read chunk: input/output error', { file: chunkRelPath(c.digest) }));
          }, 20),
        );
        done.catch(() => undefined);
        return Promise.resolve({
          data,
          release: () => undefined,
          arriving: { filled, done, follow: (fn) => fn(0, half) },
        });
      },
    };
    const { pipelined, taken } = counting();
    const reader = new ChunkReader(store, { crypt, decoder: pool.decoder, pipelined });
    const e = (await reader.get(req(c)).catch((x: unknown) => x)) as Error;
    expect(taken()).toBe(1);
    expect(e).toBeInstanceOf(IoError);
    expect(e.message).toContain('input/output error');
    const ok = new ChunkReader(new LocalChunkStore(tmp.path), { crypt, decoder: pool.decoder, pipelined: pool.pipelined! });
    expect((await ok.get(req(chunks[0]!))).equals(chunks[0]!.plain)).toBe(true);
  });

  /** Text-like bytes: compressible, but not to nothing. */
  const text = (n: number): Buffer => Buffer.from(randomBytes(Math.ceil((n * 3) / 4) + 3).toString('base64').slice(0, n));

  /** An encrypted, compressed blob of `payload` as the compressed bytes, valid zstd or not. */
  function compressedBlob(payload: Buffer): Buffer {
    const { iv, tag, ciphertext } = crypt.encrypt(payload);
    const out = Buffer.alloc(ENCRYPTED_HEADER_SIZE + ciphertext.length);
    ENCR_COMPR_BLOB_MAGIC.copy(out, 0);
    out.writeUInt32LE(crc32(ciphertext), 8);
    iv.copy(out, 12);
    tag.copy(out, 28);
    ciphertext.copy(out, ENCRYPTED_HEADER_SIZE);
    return out;
  }

  it('decodes large compressed chunks too, when both threads are idle (a cold open), and leaves tiny payloads alone', async () => {
    const made: { digest: Buffer; plain: Buffer }[] = [];
    for (const size of [PIPELINE_MIN_BYTES, 3 * 1024 * 1024 + 7, 9 * 1024 * 1024 + 4095]) {
      const plain = text(size);
      const digest = crypt.computeDigest(plain);
      const raw = encodeBlob(plain, { crypt, compress: true });
      expect(raw.subarray(0, 8).equals(ENCR_COMPR_BLOB_MAGIC)).toBe(true);
      writeChunk(tmp.path, digest, raw);
      made.push({ digest, plain });
    }
    const { pipelined, taken } = counting();
    const reader = new ChunkReader(new LocalChunkStore(tmp.path), { crypt, decoder: pool.decoder, pipelined, cacheBytes: 0 });
    for (const c of made) expect((await reader.get(req(c))).equals(c.plain)).toBe(true);
    expect(taken()).toBe(made.length);
    // Several at once: some go whole to one thread each; every byte is still right.
    const out = await Promise.all([...made, ...made].map((c) => reader.get(req(c))));
    out.forEach((b, i) => expect(b.equals(made[i % made.length]!.plain)).toBe(true));
    expect(taken()).toBeGreaterThan(made.length);
    expect(taken()).toBeLessThan(3 * made.length);
    // 2 MiB of zeros compress to a few bytes: the whole-chunk decoder (where the mount pins them).
    const zeros = Buffer.alloc(2 * 1024 * 1024);
    const zd = crypt.computeDigest(zeros);
    writeChunk(tmp.path, zd, encodeBlob(zeros, { crypt, compress: true }));
    const before = taken();
    expect((await reader.get(req({ digest: zd, plain: zeros }))).equals(zeros)).toBe(true);
    expect(taken()).toBe(before);
    expect(reader.stats.errors).toBe(0);
  });

  describe('compressed chunks fail as in the whole-chunk decoder', () => {
    const plain = text(2 * 1024 * 1024 + 99);
    const digest = crypt.computeDigest(plain);
    const good = (): Buffer => encodeBlob(plain, { crypt, compress: true });

    it('a flipped ciphertext byte: CRC mismatch', async () => {
      const raw = good();
      raw[raw.length - 10]! ^= 0x08;
      expect((await sameFailure(raw, digest, plain.length)).message).toContain('CRC32 mismatch');
    });

    it('a damaged tag: GCM tag mismatch, and the unauthenticated payload is never decompressed', async () => {
      const raw = good();
      raw[40]! ^= 1;
      const e = await sameFailure(raw, digest, plain.length);
      expect(e).toBeInstanceOf(CryptoError);
      expect(e.message).toContain('GCM tag mismatch');
    });

    it('an authentic payload that is not zstd: not valid zstd', async () => {
      const e = await sameFailure(compressedBlob(randomBytes(300_000)), digest, plain.length);
      expect(e).toBeInstanceOf(FormatError);
      expect(e.message).toContain('not valid zstd');
    });

    it('a payload that decodes to more than the index says: more than expected', async () => {
      const e = await sameFailure(good(), digest, plain.length - 5000);
      expect(e).toBeInstanceOf(IntegrityError);
      expect(e.message).toContain('more than the expected');
    });

    it('a payload that decodes to less: the size mismatch', async () => {
      const e = await sameFailure(good(), digest, plain.length + 5000);
      expect(e).toBeInstanceOf(IntegrityError);
      expect(e.message).toContain(`decodes to ${plain.length} bytes`);
    });

    it('a truncated zstd frame inside an authentic payload', async () => {
      const z = zstdCompress(plain, 1);
      const e = await sameFailure(compressedBlob(z.subarray(0, z.length - 1000)), digest, plain.length);
      expect(e).toBeInstanceOf(FormatError);
    });

    it('a genuine compressed chunk filed under another digest: digest mismatch', async () => {
      const e = await sameFailure(good(), createHash('sha256').update('elsewhere').digest(), plain.length);
      expect(e.message).toContain('digest mismatch');
    });
  });
});
