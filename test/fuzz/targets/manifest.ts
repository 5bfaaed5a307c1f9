/** Manifests: index.json.blob bytes or manifest text; parse, key/signature checks, re-serialise. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { COMPRESSED_BLOB_MAGIC, UNCOMPRESSED_BLOB_MAGIC, encodeBlob } from '../../../src/blob/data-blob.js';
import {
  checkManifestKey,
  computeManifestSignature,
  decodeManifestBlob,
  parseManifest,
  serializeManifest,
  signManifest,
  type Manifest,
} from '../../../src/manifest/manifest.js';
import { isPbsfsError } from '../../../src/errors.js';
import type { FuzzTarget, Seed } from '../framework.js';
import { vectorsDir } from '../paths.js';
import { fixBlobCrc } from './blob.js';
import { check, expectedSnapshots, plainKey, range, snapshotFileSeeds } from './common.js';

const hex64 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
const anyValue = fc.jsonValue({ maxDepth: 2 });
const fileArb = fc.record(
  {
    filename: fc.oneof(fc.constantFrom('root.pxar.didx', 'drive-scsi0.img.fidx', 'a.blob', '../x.blob', '.x.didx', 'a b.fidx'), fc.string()),
    'crypt-mode': fc.oneof(fc.constantFrom('none', 'encrypt', 'sign-only'), anyValue),
    size: fc.oneof(fc.nat(), fc.constantFrom(-1, 2 ** 53, 1.5), anyValue),
    csum: fc.oneof(hex64, fc.string()),
  },
  { requiredKeys: [] },
);
const manifestArb = fc.record(
  {
    'backup-type': fc.oneof(fc.constantFrom('vm', 'ct', 'host', 'VM', ''), anyValue),
    'backup-id': fc.oneof(fc.constantFrom('100', 'testhost', '..', '-x', 'a/b'), fc.string()),
    'backup-time': fc.oneof(fc.integer({ min: -10, max: 2 ** 40 }), fc.constantFrom(0, 2 ** 53, 1e300, 1.5), anyValue),
    files: fc.oneof(fc.array(fileArb, { maxLength: 6 }), anyValue),
    signature: fc.oneof(fc.constant(null), hex64, fc.string()),
    unprotected: fc.oneof(fc.record({ 'key-fingerprint': fc.oneof(fc.string(), hex64) }, { requiredKeys: [] }), anyValue),
    extra: anyValue,
  },
  { requiredKeys: [] },
);

function isBlob(b: Buffer): boolean {
  const m = b.subarray(0, 8);
  return b.length >= 8 && (m.equals(UNCOMPRESSED_BLOB_MAGIC) || m.equals(COMPRESSED_BLOB_MAGIC));
}

export const manifestTarget: FuzzTarget = {
  name: 'manifest',
  description: 'manifest blob/text parse + key and signature verification',
  async prepare() {
    const key = await plainKey('key-none.json');
    const other = await plainKey('other-key-none.json');
    const blobs = snapshotFileSeeds((n) => n === 'index.json.blob', () => range(0, 64));
    const texts: Seed[] = expectedSnapshots().flatMap((s) => {
      const copy = s.files['index.json.blob']?.manifest_plain_copy;
      return copy ? [{ name: copy, data: readFileSync(join(vectorsDir, 'datastore', copy)) }] : [];
    });
    const structured = fc
      .record({ m: manifestArb, pretty: fc.boolean(), blob: fc.boolean(), compress: fc.boolean() })
      .map(({ m, pretty, blob, compress }) => {
        const text = Buffer.from(JSON.stringify(m, null, pretty ? 2 : undefined));
        return blob ? encodeBlob(text, { compress }) : text;
      });
    const name = 'fuzz/index.json.blob';
    return {
      seeds: [...blobs, ...texts],
      structured,
      fixup: (b) => (isBlob(b) ? fixBlobCrc(b) : b),
      async decode(input) {
        const m: Manifest = isBlob(input) ? decodeManifestBlob(input, name) : parseManifest(input.toString('utf8'), name);
        checkManifestKey(m, undefined, name);
        const text = serializeManifest(m);
        const back = parseManifest(text, name);
        check(back.files.length === m.files.length && back.backupTime === m.backupTime, 'manifest does not survive a round trip');
        const signed = signManifest(m, key);
        const sig = computeManifestSignature(parseManifest(serializeManifest(signed), name), key);
        check(sig === signed.signature, 'a manifest we signed does not verify');
        // The other key must be refused cleanly when the manifest names or is signed by ours.
        try {
          checkManifestKey(m, other, name);
        } catch (e) {
          if (!isPbsfsError(e)) throw e;
        }
        checkManifestKey(m, key, name);
      },
    };
  },
};
