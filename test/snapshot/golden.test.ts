/**
 * Golden test: every snapshot of the reference datastore, read through the whole data layer
 * (manifest, index, chunk reader, IndexReadAt), must give exactly the values in expected.json.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { ChunkReader } from '../../src/chunks/chunk-reader.js';
import { serializeManifest } from '../../src/manifest/manifest.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { datastoreDir } from '../helpers/paths.js';
import {
  archiveFacts,
  datastoreVectorsDir,
  expectedSnapshots,
  loadVectorKey,
  splitSnapshotPath,
} from '../helpers/datastore-expected.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

let ds: LocalDatastore;
let key: CryptConfig;

beforeAll(async () => {
  ds = await LocalDatastore.open(datastoreDir);
  key = await loadVectorKey();
});

describe.each(expectedSnapshots().map((s) => [s.path, s] as const))('snapshot %s', (_path, exp) => {
  const { ns, ref } = splitSnapshotPath(exp.path);

  const open = (reader?: ChunkReader): Promise<Snapshot> =>
    Snapshot.open(ds, ns, ref, { crypt: key, ...(reader ? { chunkReader: reader } : {}) });

  it('manifest matches the decoded copy and its signature verifies', async () => {
    const snap = await open();
    const copyPath = exp.files['index.json.blob']!.manifest_plain_copy!;
    const text = readFileSync(join(datastoreVectorsDir, copyPath), 'utf8');
    expect(serializeManifest(snap.manifest)).toBe(text);
    expect(snap.keyCheck.signatureVerified).toBe(exp.crypt_mode !== 'none');
    const expectedNames = Object.keys(exp.files).filter((n) => n !== 'index.json.blob').sort();
    expect(snap.manifest.files.map((f) => f.filename).sort()).toEqual(expectedNames);
    for (const f of snap.manifest.files) expect(f.cryptMode).toBe(exp.crypt_mode);
  });

  for (const [name, f] of Object.entries(exp.files)) {
    if (name === 'index.json.blob') continue;
    if (name.endsWith('.blob')) {
      it(`${name}: blob size, sha256 and contents`, async () => {
        const snap = await open();
        const { raw, entry } = await snap.readRawBlob(name.replace(/\.blob$/, ''));
        expect(raw.length).toBe(f.blob_size);
        expect(sha256(raw)).toBe(f.blob_sha256);
        expect(entry.size).toBe(f.blob_size);
        const plain = await snap.readBlob(name);
        if (f.plaintext_utf8 !== undefined) expect(plain.toString('utf8')).toBe(f.plaintext_utf8);
        if (f.blob_magic !== undefined) expect(raw.subarray(0, 8).toString('hex')).toBe(f.blob_magic);
      });
      continue;
    }
    it(`${name}: index csum/size, chunk digests, plaintext of every chunk, whole-archive sha256`, async () => {
      const reader = new ChunkReader(ds.chunkStore, { crypt: key, cacheBytes: 64 * 1024 * 1024 });
      const snap = await open(reader);
      const { index, readAt, entry } = await snap.openIndex(name);
      const facts = archiveFacts(f);
      expect(index.computeCsum().csum.toString('hex')).toBe(f.index_csum);
      expect(index.size).toBe(facts.size);
      expect(entry.size).toBe(facts.size);
      expect(index.count).toBe(f.chunks!.length);
      for (const [i, c] of f.chunks!.entries()) {
        expect(c.index ?? i).toBe(i);
        expect(index.digest(i).toString('hex')).toBe(c.digest);
        expect(index.chunkRange(i)).toEqual({ start: c.start, end: c.end });
        expect(index.chunkAt(c.start)).toBe(i);
        expect(index.chunkAt(c.end - 1)).toBe(i);
        expect(sha256(await readAt.chunk(i))).toBe(c.plaintext_sha256);
      }
      const whole = await readAt.readAt(0, readAt.size);
      expect(whole.length).toBe(facts.size);
      expect(sha256(whole)).toBe(facts.sha256);
      if (f.chunk_size !== undefined) expect(index.kind).toBe('fixed');
    });

    it(`${name}: odd-sized reads across chunk boundaries rebuild the same bytes`, async () => {
      const snap = await open();
      const { index, readAt } = await snap.openIndex(name);
      const whole = await readAt.readAt(0, readAt.size);
      // Ranges straddling every boundary, plus a stitched sequential read of prime-sized pieces.
      for (let i = 0; i + 1 < index.count; i++) {
        const b = index.chunkRange(i).end;
        for (const [back, len] of [[1, 2], [7, 13], [4093, 8191]] as const) {
          const off = Math.max(0, b - back);
          const got = await readAt.readAt(off, len);
          expect(got.equals(whole.subarray(off, off + len))).toBe(true);
        }
      }
      const step = 1_000_003;
      const parts: Buffer[] = [];
      for (let off = 0; off < readAt.size; off += step) parts.push(await readAt.readAt(off, step));
      expect(sha256(Buffer.concat(parts))).toBe(archiveFacts(f).sha256);
      // Reads at and past the end are clipped.
      expect((await readAt.readAt(readAt.size - 3, 100)).length).toBe(3);
      expect((await readAt.readAt(readAt.size, 10)).length).toBe(0);
      expect((await readAt.readAt(readAt.size + 5, 10)).length).toBe(0);
    });
  }
});
