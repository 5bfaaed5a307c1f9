/**
 * The same golden comparison through the datastore: every snapshot holding a file archive
 * (root.pxar.didx, or the split root.mpxar.didx + root.ppxar.didx), decoded through the index and
 * chunk layers with the vector key, must match the upstream listing entry by entry.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSnapshotPxar } from '../../src/cli/pxar-hooks.js';
import type { ReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { expectedSnapshots, loadVectorKey, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { datastoreDir, pxarDir } from '../helpers/paths.js';
import { expectEntryMatches, loadListing } from './listing.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const vectorSha = {
  v1: sha(readFileSync(join(pxarDir, 'archive-v1.pxar'))),
  mpxar: sha(readFileSync(join(pxarDir, 'archive-v2.mpxar'))),
  ppxar: sha(readFileSync(join(pxarDir, 'archive-v2.ppxar'))),
};

async function streamSha(r: ReadAt): Promise<string> {
  const h = createHash('sha256');
  for (let off = 0; off < r.size; off += 1 << 20) h.update(await r.readAt(off, 1 << 20));
  return h.digest('hex');
}

const snaps = expectedSnapshots().filter((s) => Object.keys(s.files).some((f) => /\.(m?pxar)\.didx$/.test(f)));

describe('pxar archives inside the datastore snapshots', () => {
  it('covers unified and split archives', () => {
    expect(snaps.some((s) => 'root.pxar.didx' in s.files)).toBe(true);
    expect(snaps.some((s) => 'root.mpxar.didx' in s.files)).toBe(true);
  });

  for (const s of snaps) {
    it(`${s.path} (${s.crypt_mode}) decodes to the listing`, async () => {
      const ds = await LocalDatastore.open(datastoreDir);
      const { ns, ref } = splitSnapshotPath(s.path);
      const crypt = s.crypt_mode === 'encrypt' ? await loadVectorKey() : undefined;
      const snapshot = await Snapshot.open(ds, ns, ref, crypt ? { crypt } : {});
      for (const name of ['root.pxar', 'root.pxar.didx', 'root.mpxar.didx']) {
        if (name === 'root.mpxar.didx' && !('root.mpxar.didx' in s.files)) continue;
        const { archive, payload } = await openSnapshotPxar(snapshot, name);
        const split = payload !== undefined;
        expect(split).toBe('root.mpxar.didx' in s.files);
        // The datastore holds the vector archives (checked, so the listing applies).
        const want = split ? s.files['root.mpxar.didx']!.archive_sha256 : s.files['root.pxar.didx']!.archive_sha256;
        expect(await streamSha(archive)).toBe(want);
        expect(want).toBe(split ? vectorSha.mpxar : vectorSha.v1);
        if (split) expect(await streamSha(payload)).toBe(vectorSha.ppxar);
        const listing = loadListing(split ? 'v2' : 'v1');

        const dec = await PxarSequentialDecoder.open(archive, payload);
        let i = 0;
        for await (const e of dec.entries()) {
          let contents: Buffer | undefined;
          if (e.kind === 'file') {
            const parts: Buffer[] = [];
            for await (const b of dec.stream(e)) parts.push(b);
            contents = Buffer.concat(parts);
          }
          expectEntryMatches(listing[i++]!, e, contents, e.path);
        }
        expect(i).toBe(listing.length);

        const acc = await PxarAccessor.open(archive, payload);
        for (const exp of listing) {
          const path = Buffer.from(exp.path_hex, 'hex');
          const e = await acc.lookupPath(path);
          let contents: Buffer | undefined;
          if (e?.kind === 'file') {
            const parts: Buffer[] = [];
            for await (const b of acc.stream(e)) parts.push(b);
            contents = Buffer.concat(parts);
          }
          expectEntryMatches(exp, e!, contents, path);
        }
      }
    });
  }
});
