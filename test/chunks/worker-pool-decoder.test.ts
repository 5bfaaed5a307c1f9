/**
 * The worker-pool decoder gives the same bytes and the same typed errors as in-process decoding.
 * Workers run the compiled script (the suite builds before testing).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkReader } from '../../src/chunks/chunk-reader.js';
import { WorkerPoolDecoder } from '../../src/chunks/worker-pool-decoder.js';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { CryptoError, IntegrityError } from '../../src/errors.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';
import { LocalChunkStore } from '../../src/store/local-chunk-store.js';
import { datastoreDir, projectRoot } from '../helpers/paths.js';
import { expectedSnapshots, loadOtherKey, loadVectorKey } from '../helpers/datastore-expected.js';

const workerUrl = pathToFileURL(join(projectRoot, 'dist', 'src', 'chunks', 'decode-worker.js'));
let pool: WorkerPoolDecoder;
let key: CryptConfig;
beforeAll(async () => {
  key = await loadVectorKey();
  pool = new WorkerPoolDecoder({ threads: 2, workerUrl });
});
afterAll(() => pool.close());

const chunks = expectedSnapshots().flatMap((s) =>
  Object.values(s.files).flatMap((f) =>
    (f.chunks ?? []).map((c) => ({ ...c, mode: s.crypt_mode === 'encrypt' ? ('encrypt' as const) : ('none' as const) })),
  ),
);
const req = (c: (typeof chunks)[number]) => ({ digest: Buffer.from(c.digest, 'hex'), expectedSize: c.end - c.start, cryptMode: c.mode });

describe('WorkerPoolDecoder', () => {
  it('decodes every vector chunk concurrently to the expected plaintext', async () => {
    const reader = new ChunkReader(new LocalChunkStore(datastoreDir), { crypt: key, decoder: pool.decoder, cacheBytes: 0 });
    const out = await Promise.all(chunks.map((c) => reader.get(req(c))));
    out.forEach((b, i) => expect(createHash('sha256').update(b).digest('hex')).toBe(chunks[i]!.plaintext_sha256));
    expect(reader.stats.errors).toBe(0);
  });

  it('damage and wrong keys come back as the same typed errors, naming the chunk', async () => {
    const enc = chunks.find((c) => c.mode === 'encrypt')!;
    const plain = chunks.find((c) => c.mode === 'none')!;
    const path = (hex: string): string => join(datastoreDir, '.chunks', hex.slice(0, 4), hex);
    const flipped = readFileSync(path(plain.digest));
    flipped[flipped.length - 1]! ^= 1;
    const store: ChunkStore = { name: 'mem', get: async () => Buffer.from(flipped) };
    const r1 = new ChunkReader(store, { decoder: pool.decoder });
    const e1 = await r1.get(req(plain)).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(IntegrityError);
    expect((e1 as Error).message).toContain(`.chunks/${plain.digest.slice(0, 4)}/${plain.digest}`);
    const r2 = new ChunkReader(new LocalChunkStore(datastoreDir), { crypt: await loadOtherKey(), decoder: pool.decoder });
    await expect(r2.get(req(enc))).rejects.toThrow(CryptoError);
    const r3 = new ChunkReader(new LocalChunkStore(datastoreDir), { crypt: key, decoder: pool.decoder });
    await expect(r3.get({ ...req(plain), cryptMode: 'encrypt' })).rejects.toThrow(IntegrityError);
    // The pool still works after errors.
    expect(createHash('sha256').update(await r3.get(req(enc))).digest('hex')).toBe(enc.plaintext_sha256);
  });

  it('with inlineUntilReady, decodes on the calling thread until the workers have started', async () => {
    const p = new WorkerPoolDecoder({ threads: 2, workerUrl, inlineUntilReady: true });
    try {
      const reader = new ChunkReader(new LocalChunkStore(datastoreDir), { crypt: key, decoder: p.decoder, cacheBytes: 0 });
      const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
      // Worker start-up takes tens of milliseconds: these decodes cannot have waited for it.
      expect(p.readyWorkers).toBe(0);
      const early = await Promise.all(chunks.slice(0, 4).map((c) => reader.get(req(c))));
      early.forEach((b, i) => expect(sha(b)).toBe(chunks[i]!.plaintext_sha256));
      // No pipelining before both stages have a thread.
      expect(p.pipelined).toBeDefined();
      if (p.readyWorkers < 2) expect(p.pipelined!({} as never, {} as never, Buffer.alloc(0))).toBeUndefined();
      await p.whenReady();
      expect(p.readyWorkers).toBe(2);
      await p.whenReady(); // at once, now
      const late = await Promise.all(chunks.map((c) => reader.get(req(c))));
      late.forEach((b, i) => expect(sha(b)).toBe(chunks[i]!.plaintext_sha256));
    } finally {
      await p.close();
    }
  });

  it('a closed pool refuses work; waiting for its workers ends with it', async () => {
    const p = new WorkerPoolDecoder({ threads: 1, workerUrl });
    const waiting = p.whenReady();
    await p.close();
    await waiting;
    await p.whenReady();
    const reader = new ChunkReader(new LocalChunkStore(datastoreDir), { decoder: p.decoder });
    await expect(reader.get(req(chunks.find((c) => c.mode === 'none')!))).rejects.toThrow(/closed/);
  });
});
