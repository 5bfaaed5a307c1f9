/**
 * Random damage to real vector files: the parsers and the chunk reader either succeed with
 * correct output or throw a PbsfsError; no RangeError/TypeError, never wrong bytes.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChunkReader } from '../../src/chunks/chunk-reader.js';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { isPbsfsError } from '../../src/errors.js';
import { parseIndex } from '../../src/index/parse-index.js';
import { decodeManifestBlob, parseManifest } from '../../src/manifest/manifest.js';
import { datastoreDir } from '../helpers/paths.js';
import { datastoreVectorsDir, expectedSnapshots, loadVectorKey } from '../helpers/datastore-expected.js';

/** A byte-level mutation: flips, overwrites, truncation or extension. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), pos: fc.nat() }),
  fc.record({ kind: fc.constant('grow' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(src: Buffer, muts: Mutation[]): Buffer {
  let b = Buffer.from(src);
  for (const m of muts) {
    if (b.length === 0) break;
    if (m.kind === 'flip') b[m.pos % b.length]! ^= 1 << m.bit;
    else if (m.kind === 'set') b[m.pos % b.length] = m.value;
    else if (m.kind === 'cut') b = b.subarray(0, m.pos % b.length);
    else b = Buffer.concat([b, Buffer.from(m.bytes)]);
  }
  return b;
}

function onlyTypedErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!isPbsfsError(e)) throw e;
  }
}

const snaps = expectedSnapshots();
let key: CryptConfig;
beforeAll(async () => {
  key = await loadVectorKey();
});

describe('fuzzed data-layer inputs', () => {
  it('index files', () => {
    const files = snaps.flatMap((s) => Object.keys(s.files).filter((n) => n.endsWith('idx')).map((n) => `${s.path}/${n}`));
    const raws = files.map((f) => [f, readFileSync(join(datastoreDir, f))] as const);
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (which, muts) => {
        const [name, raw] = raws[which % raws.length]!;
        onlyTypedErrors(() => {
          const idx = parseIndex(mutate(raw, muts), name);
          for (let i = 0; i < idx.count; i++) {
            const r = idx.chunkRange(i);
            expect(r.end).toBeGreaterThan(r.start);
            expect(idx.chunkAt(r.start)).toBe(i);
          }
          idx.computeCsum();
        });
      }),
      { numRuns: 300 },
    );
  });

  it('manifest blobs and texts', () => {
    const blobs = snaps.map((s) => readFileSync(join(datastoreDir, s.path, 'index.json.blob')));
    const texts = snaps.map((s) => readFileSync(join(datastoreVectorsDir, s.files['index.json.blob']!.manifest_plain_copy!)));
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (which, muts) => {
        onlyTypedErrors(() => decodeManifestBlob(mutate(blobs[which % blobs.length]!, muts), 'm'));
        onlyTypedErrors(() => parseManifest(mutate(texts[which % texts.length]!, muts).toString('utf8'), 'm'));
      }),
      { numRuns: 300 },
    );
  });

  it('chunks: decoded bytes are right or the read fails with a typed error', async () => {
    const chunks = snaps.flatMap((s) =>
      Object.values(s.files).flatMap((f) => (f.chunks ?? []).map((c) => ({ ...c, mode: s.crypt_mode === 'encrypt' ? 'encrypt' : 'none' }) as const)),
    );
    const small = chunks.filter((c) => c.blob_size < 200_000);
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 3 }), async (which, muts) => {
        const c = small[which % small.length]!;
        const digest = Buffer.from(c.digest, 'hex');
        const raw = readFileSync(join(datastoreDir, '.chunks', c.digest.slice(0, 4), c.digest));
        const damaged = mutate(raw, muts);
        const reader = new ChunkReader({ name: 'fuzz', get: async () => damaged }, { crypt: key, cacheBytes: 0 });
        try {
          const plain = await reader.get({ digest, expectedSize: c.end - c.start, cryptMode: c.mode });
          expect(createHash('sha256').update(plain).digest('hex')).toBe(c.plaintext_sha256);
        } catch (e) {
          if (!isPbsfsError(e)) throw e;
        }
      }),
      { numRuns: 150 },
    );
  });
});
