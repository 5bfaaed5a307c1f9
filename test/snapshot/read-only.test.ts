/**
 * pbsfs never writes to a datastore: run every read path of the data layer over a copy and
 * check the tree fingerprint (listing, sizes, modes, mtimes, contents) is unchanged.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { verifySnapshot } from '../../src/snapshot/verify.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { copyDatastore, type DatastoreCopy } from '../helpers/datastore-copy.js';
import { loadVectorKey } from '../helpers/datastore-expected.js';
import { treeFingerprint } from '../helpers/tree-fingerprint.js';

let copy: DatastoreCopy;
let key: CryptConfig;
beforeAll(async () => {
  copy = await copyDatastore();
  key = await loadVectorKey();
});
afterAll(() => copy.cleanup());

it('every read path leaves the datastore byte-for-byte and mtime-for-mtime unchanged', async () => {
  const before = treeFingerprint(copy.root);
  const ds = await LocalDatastore.open(copy.root);
  let archives = 0;
  for (const ns of [[], ...(await ds.listNamespaces())]) {
    await ds.listGroups(ns);
    for (const info of await ds.listSnapshots(ns)) {
      for (const crypt of [key, undefined]) {
        const report = await verifySnapshot(ds, ns, info, crypt ? { crypt } : {});
        expect(report.ok).toBe(true);
      }
      const snap = await Snapshot.open(ds, ns, info, { crypt: key });
      for (const f of snap.manifest.files) {
        if (f.filename.endsWith('.blob')) {
          await snap.readBlob(f.filename);
        } else {
          const { readAt } = await snap.openIndex(f.filename);
          const all = await readAt.readAt(0, readAt.size);
          expect(all.length).toBe(f.size);
        }
        archives++;
      }
    }
  }
  expect(archives).toBeGreaterThan(0);
  expect(treeFingerprint(copy.root)).toBe(before);
});
