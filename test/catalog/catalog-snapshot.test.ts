/**
 * The catalog read where it lives: `catalog.pcat1.didx` of a vector snapshot, through the
 * snapshot layer (encrypted chunks need the key), listed exactly as upstream lists it.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CatalogReader } from '../../src/catalog/index.js';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { CryptoError } from '../../src/errors.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { parseNamespace, parseSnapshotRef } from '../../src/store/backup-ref.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { datastoreDir, keysDir, vectorsDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';

interface ListingItem {
  path_hex: string;
  type: string;
  start?: number;
  size?: number;
  mtime?: number;
}
const expected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as {
  snapshots: { path: string; crypt_mode: string; files: Record<string, { catalog_listing?: ListingItem[] }> }[];
};
const withCatalog = expected.snapshots.filter((s) => s.files['catalog.pcat1.didx']?.catalog_listing !== undefined);

function split(path: string): { ns: string; ref: string } {
  const m = /^((?:ns\/[^/]+\/)*)([^/]+\/[^/]+\/[^/]+)$/.exec(path)!;
  return { ns: m[1]!.split('/').filter((_, i) => i % 2 === 1).join('/'), ref: m[2]! };
}

describe('catalog.pcat1.didx through the snapshot layer', () => {
  it('lists every vector catalog as upstream does', async () => {
    expect(withCatalog.length).toBeGreaterThan(0);
    const { crypt } = await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE);
    const ds = await LocalDatastore.open(datastoreDir);
    for (const s of withCatalog) {
      const { ns, ref } = split(s.path);
      const snap = await Snapshot.open(ds, parseNamespace(ns), parseSnapshotRef(ref), s.crypt_mode === 'encrypt' ? { crypt } : {});
      const { readAt } = await snap.openIndex('catalog.pcat1.didx');
      const cat = await CatalogReader.open(readAt);
      const got = (await cat.list()).map(({ path, entry }) => ({
        path_hex: path.toString('hex'),
        type: entry.type,
        ...(entry.type === 'd' ? { start: entry.start } : {}),
        ...(entry.type === 'f' ? { size: entry.size, mtime: entry.mtime } : {}),
      }));
      const want = s.files['catalog.pcat1.didx']!.catalog_listing!.map(({ path_hex, type, start, size, mtime }) => ({
        path_hex,
        type,
        ...(start !== undefined ? { start } : {}),
        ...(size !== undefined ? { size, mtime } : {}),
      }));
      expect(got).toEqual(want);
    }
  });

  it('needs the key for an encrypted catalog', async () => {
    const enc = withCatalog.find((s) => s.crypt_mode === 'encrypt');
    expect(enc).toBeDefined();
    const { ns, ref } = split(enc!.path);
    const snap = await Snapshot.open(await LocalDatastore.open(datastoreDir), parseNamespace(ns), parseSnapshotRef(ref));
    await expect((async () => CatalogReader.open((await snap.openIndex('catalog.pcat1.didx')).readAt))()).rejects.toBeInstanceOf(
      CryptoError,
    );
  });
});
