/** DataBlob decoding: without a key, with the key, with a small maxSize, and as a chunk with digest/size checks. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  ENCR_COMPR_BLOB_MAGIC,
  ENCRYPTED_BLOB_MAGIC,
  decodeBlob,
  encodeBlob,
  parseBlobHeader,
  verifyBlobCrc,
} from '../../../src/blob/data-blob.js';
import { crc32 } from '../../../src/util/crc32.js';
import type { FuzzTarget } from '../framework.js';
import { blobsDir } from '../paths.js';
import { check, filesBelow, plainKey, range, rel } from './common.js';

/** Recomputes the CRC32 of a blob with a known magic, so that mutations reach the payload code. */
export function fixBlobCrc(b: Buffer): Buffer {
  if (b.length < 12) return b;
  const magic = b.subarray(0, 8);
  const header = magic.equals(ENCRYPTED_BLOB_MAGIC) || magic.equals(ENCR_COMPR_BLOB_MAGIC) ? 44 : 12;
  if (b.length < header) return b;
  b.writeUInt32LE(crc32(b.subarray(header)), 8);
  return b;
}

export const blobTarget: FuzzTarget = {
  name: 'blob',
  description: 'DataBlob decode (with and without key, maxSize, digest)',
  async prepare() {
    const key = await plainKey('key-none.json');
    const seeds = filesBelow(blobsDir, (n) => n.endsWith('.blob')).map((p) => ({ name: rel(p), data: readFileSync(p), hot: range(0, 64) }));
    const structured = fc
      .record({
        data: fc.oneof(fc.uint8Array({ maxLength: 2048 }), fc.integer({ min: 0, max: 200_000 }).map((n) => new Uint8Array(n))),
        compress: fc.boolean(),
        encrypt: fc.boolean(),
        iv: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        flip: fc.option(fc.nat(), { nil: undefined }),
      })
      .map(({ data, compress, encrypt, iv, flip }) => {
        const b = encodeBlob(data, { compress, ...(encrypt ? { crypt: key, iv } : {}) });
        if (flip !== undefined) b[flip % b.length] = b[flip % b.length]! ^ 0x20;
        return b;
      });
    const name = 'fuzz/blob';
    return {
      seeds,
      structured,
      fixup: (b) => fixBlobCrc(b),
      async decode(input) {
        const header = parseBlobHeader(input, name);
        verifyBlobCrc(input, name, header);
        let first: unknown;
        for (const opts of [{ name }, { name, crypt: key }, { name, crypt: key, maxSize: 1000 }]) {
          try {
            const plain = decodeBlob(input, opts);
            check(plain.length <= (opts.maxSize ?? 128 * 1024 * 1024), `decoded ${plain.length} bytes past maxSize`);
          } catch (e) {
            first ??= e;
          }
        }
        // As a chunk: digest and size must hold when it decodes.
        const plain = decodeBlob(input, { name, crypt: key, checkCrc: false, maxSize: 16 * 1024 * 1024 });
        const digest = header.encrypted ? key.computeDigest(plain) : createHash('sha256').update(plain).digest();
        const again = decodeBlob(input, { name, crypt: key, expectedDigest: digest, expectedSize: plain.length, expectedCryptMode: header.encrypted ? 'encrypt' : 'none' });
        check(again.equals(plain), 'a second decode gave other bytes');
        if (first !== undefined) throw first;
      },
    };
  },
};
