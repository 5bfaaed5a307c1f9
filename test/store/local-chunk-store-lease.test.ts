/**
 * LocalChunkStore.lease: O_DIRECT reads into pooled, page-aligned buffers. Same bytes as get()
 * for every vector chunk, the same typed errors, a fallback where the file system refuses
 * O_DIRECT (tmpfs), and no plaintext that still points into a reused read buffer.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dir, type DirectoryResult } from 'tmp-promise';
import { encodeBlob } from '../../src/blob/data-blob.js';
import { ChunkReader } from '../../src/chunks/chunk-reader.js';
import { WorkerPoolDecoder } from '../../src/chunks/worker-pool-decoder.js';
import { NotFoundError } from '../../src/errors.js';
import { chunkRelPath } from '../../src/store/chunk-store.js';
import { LocalChunkStore } from '../../src/store/local-chunk-store.js';
import { expectedSnapshots } from '../helpers/datastore-expected.js';
import { datastoreDir, projectRoot } from '../helpers/paths.js';
import { pathToFileURL } from 'node:url';

const workerUrl = pathToFileURL(join(projectRoot, 'dist', 'src', 'chunks', 'decode-worker.js'));

function allDigests(): Buffer[] {
  const seen = new Set<string>();
  for (const s of expectedSnapshots()) for (const f of Object.values(s.files)) for (const c of f.chunks ?? []) seen.add(c.digest);
  return [...seen].map((d) => Buffer.from(d, 'hex'));
}

/** A datastore of unencrypted, uncompressed chunks (their plaintext is a view of the raw bytes). */
function writeStore(root: string, chunks: Buffer[]): Buffer[] {
  const digests: Buffer[] = [];
  for (const data of chunks) {
    const digest = createHash('sha256').update(data).digest();
    const path = join(root, chunkRelPath(digest));
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, encodeBlob(data, { compress: false }));
    digests.push(digest);
  }
  return digests;
}

let disk: DirectoryResult;
let shm: DirectoryResult | undefined;
beforeAll(async () => {
  disk = await dir({ unsafeCleanup: true, prefix: 'pbsfs-lease-' });
  if (existsSync('/dev/shm')) shm = await dir({ unsafeCleanup: true, prefix: 'pbsfs-lease-', tmpdir: '/dev/shm' });
});
afterAll(async () => {
  await disk?.cleanup();
  await shm?.cleanup();
});

describe('LocalChunkStore.lease', () => {
  it('lends exactly the bytes get() returns, for every vector chunk, and takes the slot back', async () => {
    const store = new LocalChunkStore(datastoreDir);
    const digests = allDigests();
    expect(digests.length).toBeGreaterThan(5);
    for (const d of digests) {
      const lease = await store.lease(d);
      try {
        expect(lease.data.equals(await store.get(d)), chunkRelPath(d)).toBe(true);
      } finally {
        lease.release();
      }
    }
  });

  it('reads chunk files with O_DIRECT into shared, page-aligned memory where the file system can', async () => {
    const data = randomBytes(300_001);
    const [d] = writeStore(disk.path, [data]);
    const store = new LocalChunkStore(disk.path);
    const lease = await store.lease(d!);
    expect(lease.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(lease.data.byteOffset % 4096).toBe(0);
    expect(lease.data.subarray(12).equals(data)).toBe(true);
    expect(lease.data.length).toBe(300_001 + 12);
    lease.release();
  });

  it('tmpfs (O_DIRECT refused before Linux 6.6, accepted since): the same bytes either way', async () => {
    if (shm === undefined) return;
    const data = randomBytes(70_000);
    const [d] = writeStore(shm.path, [data]);
    const store = new LocalChunkStore(shm.path);
    const lease = await store.lease(d!);
    expect(lease.data.equals(await store.get(d!))).toBe(true);
    lease.release();
  });

  it('with direct I/O off, a lease is an ordinary read', async () => {
    const data = randomBytes(70_000);
    const [d] = writeStore(disk.path, [data]);
    const store = new LocalChunkStore(disk.path, { directIo: false });
    const lease = await store.lease(d!);
    expect(lease.data.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(lease.data.subarray(12).equals(data)).toBe(true);
    lease.release();
  });

  it('a missing chunk is the same NotFoundError as with get(), and frees its slot', async () => {
    const store = new LocalChunkStore(datastoreDir);
    const missing = Buffer.alloc(32, 0xab);
    for (let i = 0; i < 10; i++) {
      const e = await store.lease(missing).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NotFoundError);
      expect((e as NotFoundError).message).toContain(chunkRelPath(missing));
    }
    // Had the failures kept their slots, this would wait forever.
    const [d] = allDigests();
    (await store.lease(d!)).release();
  });

  it('chunks larger than a pool slot take an ordinary read', async () => {
    const data = randomBytes(17 * 1024 * 1024);
    const [d] = writeStore(disk.path, [data]);
    const store = new LocalChunkStore(disk.path);
    const lease = await store.lease(d!);
    expect(lease.data.length).toBe(data.length + 12);
    expect(lease.data.subarray(12).equals(data)).toBe(true);
    lease.release();
  });
});

describe('ChunkReader over leased reads', () => {
  for (const mode of ['in-process', 'worker'] as const) {
    it(`${mode}: a cached plaintext never changes when its read buffer is reused`, async () => {
      const chunks = Array.from({ length: 12 }, (_, i) => randomBytes(100_000 + i * 4096));
      const root = join(disk.path, `reuse-${mode}`);
      const digests = writeStore(root, chunks);
      const pool = mode === 'worker' ? new WorkerPoolDecoder({ threads: 1, workerUrl }) : undefined;
      try {
        const reader = new ChunkReader(new LocalChunkStore(root), { ...(pool ? { decoder: pool.decoder } : {}) });
        const got: Buffer[] = [];
        // Sequentially (slots reused at once) and then all at once (every slot busy).
        for (let i = 0; i < 6; i++) got.push(await reader.get({ digest: digests[i]!, expectedSize: chunks[i]!.length, cryptMode: 'none' }));
        got.push(...(await Promise.all(digests.slice(6).map((d, i) => reader.get({ digest: d, expectedSize: chunks[6 + i]!.length, cryptMode: 'none' })))));
        for (let i = 0; i < chunks.length; i++) {
          expect(got[i]!.equals(chunks[i]!), `chunk ${i}`).toBe(true);
          expect(got[i]!.buffer).not.toBeInstanceOf(SharedArrayBuffer);
        }
      } finally {
        await pool?.close();
      }
    });
  }
});
