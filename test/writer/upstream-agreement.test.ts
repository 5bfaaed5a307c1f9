/**
 * Our writer against the upstream-made vector datastore: every vector snapshot is written again
 * from its plaintexts (read with our readers) with the same key, crypt mode, time and chunking.
 * Chunk cut points, digests, plaintexts, index csums and sizes must equal expected.json, and the
 * manifest text (signature included) must equal the upstream manifest byte for byte. Blobs are
 * copied verbatim where their bytes are random (IVs); unencrypted blobs are re-encoded and must
 * decode to the same plaintext.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { decodeBlob } from '../../src/blob/data-blob.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { SnapshotWriter } from '../../src/writer/snapshot-writer.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/writer/chunker.js';
import { parseIndex } from '../../src/index/parse-index.js';
import { datastoreDir } from '../helpers/paths.js';
import { datastoreVectorsDir, expectedSnapshots, loadVectorKey, splitSnapshotPath, type ExpectedFile } from '../helpers/datastore-expected.js';

describe('writer agrees with the upstream vector datastore', () => {
  for (const exp of expectedSnapshots()) {
    it(`rewrites ${exp.path} (${exp.crypt_mode}) identically`, async () => {
      const key = await loadVectorKey();
      const { ns, ref } = splitSnapshotPath(exp.path);
      const src = await Snapshot.open(await LocalDatastore.open(datastoreDir), ns, ref, { crypt: key });
      const manifestCopy = readFileSync(join(datastoreVectorsDir, exp.files['index.json.blob']!.manifest_plain_copy!), 'utf8');
      const order = (JSON.parse(manifestCopy) as { files: { filename: string }[] }).files.map((f) => f.filename);
      await withDir(
        async ({ path: repo }) => {
          const w = new SnapshotWriter({
            repository: repo,
            ns,
            backupType: ref.type,
            backupId: ref.id,
            backupTime: ref.time,
            cryptMode: exp.crypt_mode,
            ...(exp.crypt_mode !== 'none' ? { crypt: key } : {}),
            prefixDirs: 'lazy',
          });
          const reencoded: string[] = [];
          for (const name of order) {
            const f: ExpectedFile = exp.files[name]!;
            if (name.endsWith('.blob')) {
              const raw = readFileSync(join(datastoreDir, exp.path, name));
              if (f.plaintext_utf8 !== undefined && exp.crypt_mode !== 'encrypt') {
                // re-encode: zstd bytes may differ, the plaintext may not
                const ours = w.addBlob(name, Buffer.from(f.plaintext_utf8, 'utf8'));
                reencoded.push(name);
                expect(ours.size).toBeGreaterThan(0);
                continue;
              }
              w.addEncodedBlob(name, raw);
              continue;
            }
            const opened = await src.openIndex(name);
            const data = await opened.readAt.readAt(0, opened.readAt.size);
            if (name.endsWith('.fidx')) {
              expect(f.chunk_size).toBeGreaterThan(0);
              const tmpImage = join(repo, `image-${name}`);
              writeFileSync(tmpImage, data);
              const r = w.addImage(name, tmpImage, { chunkSize: f.chunk_size! });
              expect(r.csum).toBe(f.index_csum);
              expect(r.size).toBe(f.image_size);
            } else {
              const avg = (f as { chunk_size_avg?: number }).chunk_size_avg ?? DEFAULT_CHUNK_SIZE;
              const a = w.dynamicArchive(name, avg);
              // feed in odd pieces: cut points must not depend on them
              for (let off = 0; off < data.length; off += 777_777) a.write(data.subarray(off, off + 777_777));
              const r = a.close();
              expect(r.size).toBe(f.archive_size);
              expect(r.csum).toBe(f.index_csum);
            }
          }
          const done = w.finish();
          for (const name of reencoded) {
            const ours = readFileSync(join(repo, done.path, name));
            expect(decodeBlob(ours, { name }).toString('utf8')).toBe(exp.files[name]!.plaintext_utf8);
          }
          // every index: same chunk list as upstream, and every chunk decodes to the right plaintext
          for (const name of order.filter((n) => !n.endsWith('.blob'))) {
            const f = exp.files[name]!;
            const idx = parseIndex(readFileSync(join(repo, done.path, name)), name);
            expect(idx.count).toBe(f.chunks!.length);
            for (let i = 0; i < idx.count; i++) {
              const c = { ...idx.chunkRange(i), digest: idx.digest(i) };
              const e = f.chunks![i]!;
              expect([c.start, c.end, c.digest.toString('hex')]).toEqual([e.start, e.end, e.digest]);
              const hex = e.digest;
              const blob = readFileSync(join(repo, '.chunks', hex.slice(0, 4), hex));
              expect(blob.subarray(0, 8).toString('hex')).toBe(e.blob_magic.slice(0, 16));
              const plain = decodeBlob(blob, { name: hex, ...(exp.crypt_mode === 'encrypt' ? { crypt: key } : {}), expectedDigest: c.digest });
              expect(createHash('sha256').update(plain).digest('hex')).toBe(e.plaintext_sha256);
            }
          }
          // the manifest: byte for byte when every blob was copied verbatim
          const ourManifest = decodeBlob(readFileSync(join(repo, done.path, 'index.json.blob')), { name: 'index.json.blob' }).toString('utf8');
          if (reencoded.length === 0) expect(ourManifest).toBe(manifestCopy);
          else {
            const a = JSON.parse(ourManifest) as { files: { filename: string; csum: string }[]; signature: unknown };
            const b = JSON.parse(manifestCopy) as { files: { filename: string; csum: string }[]; signature: unknown };
            expect(a.files.filter((x) => !x.filename.endsWith('.blob'))).toEqual(b.files.filter((x) => !x.filename.endsWith('.blob')));
            expect(typeof a.signature).toBe(typeof b.signature);
          }
        },
        { unsafeCleanup: true },
      );
    });
  }
});
