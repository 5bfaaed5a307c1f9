import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  decodeBlob,
  encodeBlob,
  parseBlobHeader,
  verifyBlobCrc,
  COMPRESSED_BLOB_MAGIC,
  ENCR_COMPR_BLOB_MAGIC,
  ENCRYPTED_BLOB_MAGIC,
  UNCOMPRESSED_BLOB_MAGIC,
} from '../../src/blob/data-blob.js';
import { CryptConfig } from '../../src/crypto/crypt-config.js';
import { crc32 } from '../../src/util/crc32.js';
import { zstdCompress } from '../../native-shims/zstd.js';
import { CryptoError, FormatError, IntegrityError, LimitError, isPbsfsError } from '../../src/errors.js';
import { blobsDir, keysDir } from '../helpers/paths.js';

interface BlobExpect {
  file: string;
  magic_hex: string;
  crc32: number;
  blob_size: number;
  plaintext_file: string;
  plaintext_sha256?: string;
  plaintext_size?: number;
  compressed?: boolean;
  encrypted?: boolean;
  crypt_mode?: string;
  chunk_digest_hex?: string;
}
const expected: BlobExpect[] = JSON.parse(readFileSync(join(blobsDir, 'expected.json'), 'utf8'));
const keys = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8'));
const crypt = CryptConfig.fromKey(Buffer.from(keys.raw_key_hex, 'hex'));
const otherCrypt = CryptConfig.fromKey(Buffer.from(keys.other_key_raw_hex, 'hex'));
const read = (f: string): Buffer => readFileSync(join(blobsDir, f));

const key00 = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const iv00 = Buffer.from(Array.from({ length: 16 }, (_, i) => i));

describe('vector blobs', () => {
  for (const e of expected) {
    it(`${e.file} decodes to its plaintext with every check`, () => {
      const raw = read(e.file);
      expect(raw.length).toBe(e.blob_size);
      const h = parseBlobHeader(raw, e.file);
      expect(h.magic.toString('hex')).toBe(e.magic_hex);
      expect(h.crc).toBe(e.crc32);
      if (e.compressed !== undefined) expect(h.compressed).toBe(e.compressed);
      if (e.encrypted !== undefined) expect(h.encrypted).toBe(e.encrypted);
      verifyBlobCrc(raw, e.file);
      const plainFile = read(e.plaintext_file);
      const plain = decodeBlob(raw, {
        name: e.file,
        crypt,
        expectedCryptMode: h.encrypted ? 'encrypt' : 'none',
        ...(e.chunk_digest_hex !== undefined ? { expectedDigest: Buffer.from(e.chunk_digest_hex, 'hex') } : {}),
        expectedSize: plainFile.length,
      });
      expect(plain.equals(plainFile)).toBe(true);
      if (e.plaintext_sha256 !== undefined) {
        expect(createHash('sha256').update(plain).digest('hex')).toBe(e.plaintext_sha256);
      }
      if (e.plaintext_size !== undefined) expect(plain.length).toBe(e.plaintext_size);
    });
  }

  it('unencrypted blobs decode without a key', () => {
    for (const e of expected.filter((x) => !parseBlobHeader(read(x.file), x.file).encrypted)) {
      expect(decodeBlob(read(e.file), { name: e.file }).equals(read(e.plaintext_file))).toBe(true);
    }
  });
});

describe('spec 2.9 worked examples', () => {
  it('hello, no key', () => {
    expect(encodeBlob(Buffer.from('hello'), { compress: true }).toString('hex')).toBe(
      '42ab3807be8370a186a6103668656c6c6f',
    );
  });
  it('hello, key 00..1f, IV 00..0f', () => {
    const c = CryptConfig.fromKey(key00);
    const blob = encodeBlob(Buffer.from('hello'), { crypt: c, compress: true, iv: iv00 });
    expect(blob.toString('hex')).toBe(
      '7b6785be222d4cf0' + '784eea93' + '000102030405060708090a0b0c0d0e0f' + '0c84c431837297c0b19e77e5608162ea' + '0f09cc1a56',
    );
    const digest = Buffer.from('e34178a27b992c4a218599bf7f43ed50bc464a03d624d9092306fe2ed74d557e', 'hex');
    expect(decodeBlob(blob, { name: 'hello', crypt: c, expectedDigest: digest }).toString()).toBe('hello');
  });
  it('empty plaintext', () => {
    expect(encodeBlob(Buffer.alloc(0), { compress: true }).toString('hex')).toBe('42ab3807be8370a100000000');
    expect(decodeBlob(Buffer.from('42ab3807be8370a100000000', 'hex'), { name: 'e' }).length).toBe(0);
  });
});

describe('encode -> decode round trips', () => {
  const compressible = Buffer.from('abcdefgh'.repeat(5000));
  const random = randomBytes(5000);
  const variants: [string, Buffer, boolean, CryptConfig | undefined, Buffer][] = [
    ['uncompressed-unencrypted', random, true, undefined, UNCOMPRESSED_BLOB_MAGIC],
    ['compressed-unencrypted', compressible, true, undefined, COMPRESSED_BLOB_MAGIC],
    ['uncompressed-encrypted', random, true, crypt, ENCRYPTED_BLOB_MAGIC],
    ['compressed-encrypted', compressible, true, crypt, ENCR_COMPR_BLOB_MAGIC],
    ['compress=false keeps it raw', compressible, false, undefined, UNCOMPRESSED_BLOB_MAGIC],
  ];
  for (const [name, data, compress, c, magic] of variants) {
    it(name, () => {
      const blob = encodeBlob(data, { compress, ...(c ? { crypt: c } : {}) });
      expect(blob.subarray(0, 8).equals(magic)).toBe(true);
      const digest = c ? c.computeDigest(data) : createHash('sha256').update(data).digest();
      const out = decodeBlob(blob, {
        name,
        ...(c ? { crypt: c } : {}),
        expectedDigest: digest,
        expectedSize: data.length,
        expectedCryptMode: c ? 'encrypt' : 'none',
      });
      expect(out.equals(data)).toBe(true);
    });
  }

  it('property: any data, either key state', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4000 }), fc.boolean(), fc.boolean(), (data, enc, compress) => {
        const blob = encodeBlob(data, { compress, ...(enc ? { crypt } : {}) });
        expect(decodeBlob(blob, { name: 'p', crypt }).equals(Buffer.from(data))).toBe(true);
        // compressed form only when strictly smaller
        const h = parseBlobHeader(blob, 'p');
        if (h.compressed) expect(blob.length - h.headerSize).toBeLessThan(data.length);
      }),
      { numRuns: 100 },
    );
  });
});

describe('hostile blobs', () => {
  const enc = read('compressed-encrypted.blob');
  const plainBlob = read('compressed-unencrypted.blob');
  const name = 'chunk dddfcecc of root.pxar.didx';

  it('truncated below each header size -> FormatError naming the blob', () => {
    for (const n of [0, 7, 11]) {
      expect(() => decodeBlob(plainBlob.subarray(0, n), { name })).toThrow(FormatError);
      expect(() => decodeBlob(plainBlob.subarray(0, n), { name })).toThrow(name);
    }
    for (const n of [12, 30, 43]) expect(() => decodeBlob(enc.subarray(0, n), { name, crypt })).toThrow(FormatError);
  });

  it('truncated payload -> IntegrityError (CRC) or, unchecked, a typed error', () => {
    const cut = enc.subarray(0, enc.length - 10);
    expect(() => decodeBlob(cut, { name, crypt })).toThrow(IntegrityError);
    expect(() => decodeBlob(cut, { name, crypt, checkCrc: false })).toThrow(CryptoError);
    const cutPlain = plainBlob.subarray(0, plainBlob.length - 10);
    expect(() => decodeBlob(cutPlain, { name })).toThrow(IntegrityError);
    expect(() => decodeBlob(cutPlain, { name, checkCrc: false })).toThrow(FormatError);
  });

  it('bit flips in each region give the matching typed error', () => {
    const flip = (b: Buffer, off: number): Buffer => {
      const c = Buffer.from(b);
      c[off]! ^= 0x10;
      return c;
    };
    expect(() => decodeBlob(flip(enc, 2), { name, crypt })).toThrow(FormatError); // magic
    expect(() => decodeBlob(flip(enc, 9), { name, crypt })).toThrow(IntegrityError); // crc
    expect(() => decodeBlob(flip(enc, 20), { name, crypt })).toThrow(CryptoError); // iv (not under crc)
    expect(() => decodeBlob(flip(enc, 35), { name, crypt })).toThrow(CryptoError); // tag
    expect(() => decodeBlob(flip(enc, 100), { name, crypt })).toThrow(IntegrityError); // ciphertext: crc first
    expect(() => decodeBlob(flip(enc, 100), { name, crypt, checkCrc: false })).toThrow(CryptoError);
    expect(() => decodeBlob(flip(enc, 20), { name, crypt })).toThrow(name);
  });

  it('magic flipped into another valid magic is caught by the crypt-mode rule', () => {
    const c = Buffer.from(enc);
    ENCRYPTED_BLOB_MAGIC.copy(c, 0); // claims "not compressed"
    expect(() => decodeBlob(c, { name, crypt, expectedDigest: crypt.computeDigest(read('compressed-unencrypted.plain')) })).toThrow(
      IntegrityError,
    );
    const d = Buffer.from(plainBlob);
    ENCRYPTED_BLOB_MAGIC.copy(d, 0);
    expect(() => decodeBlob(d, { name, crypt, expectedCryptMode: 'none' })).toThrow(IntegrityError);
    expect(() => decodeBlob(enc, { name, crypt, expectedCryptMode: 'none' })).toThrow(/crypt mode/);
    expect(() => decodeBlob(plainBlob, { name, expectedCryptMode: 'encrypt' })).toThrow(IntegrityError);
  });

  it('wrong key -> CryptoError; missing key -> CryptoError', () => {
    expect(() => decodeBlob(enc, { name, crypt: otherCrypt })).toThrow(CryptoError);
    expect(() => decodeBlob(enc, { name, crypt: otherCrypt })).toThrow(name);
    expect(() => decodeBlob(enc, { name })).toThrow(/encrypted but no key/);
  });

  it('digest and size mismatches -> IntegrityError', () => {
    const e = expected.find((x) => x.file === 'chunk-unencrypted.blob')!;
    const raw = read(e.file);
    const wrong = Buffer.from(e.chunk_digest_hex!, 'hex');
    wrong[0]! ^= 1;
    expect(() => decodeBlob(raw, { name, expectedDigest: wrong })).toThrow(IntegrityError);
    expect(() => decodeBlob(raw, { name, expectedSize: 21489 })).toThrow(IntegrityError);
    expect(() => decodeBlob(raw, { name, expectedSize: 21491 })).toThrow(IntegrityError);
    // unkeyed digest of an encrypted chunk is not accepted: encrypted magics use the keyed digest
    const ec = read('chunk-encrypted.blob');
    expect(() => decodeBlob(ec, { name, crypt, expectedDigest: Buffer.from(e.chunk_digest_hex!, 'hex') })).toThrow(
      IntegrityError,
    );
  });

  it('compressed payload that is garbage -> FormatError', () => {
    const garbage = randomBytes(200);
    const blob = Buffer.concat([COMPRESSED_BLOB_MAGIC, Buffer.alloc(4), garbage]);
    blob.writeUInt32LE(crc32(garbage), 8);
    expect(() => decodeBlob(blob, { name })).toThrow(FormatError);
    expect(() => decodeBlob(blob, { name })).toThrow(name);
    // also inside an encrypted blob (authentic but not zstd)
    const { iv, tag, ciphertext } = crypt.encrypt(garbage);
    const eb = Buffer.concat([ENCR_COMPR_BLOB_MAGIC, Buffer.alloc(4), iv, tag, ciphertext]);
    eb.writeUInt32LE(crc32(ciphertext), 8);
    expect(() => decodeBlob(eb, { name, crypt })).toThrow(FormatError);
  });

  it('decompression bomb -> LimitError', () => {
    const z = zstdCompress(Buffer.alloc(64 * 1024 * 1024), 19);
    expect(z.length).toBeLessThan(64 * 1024);
    const blob = Buffer.concat([COMPRESSED_BLOB_MAGIC, Buffer.alloc(4), z]);
    blob.writeUInt32LE(crc32(z), 8);
    expect(() => decodeBlob(blob, { name, maxSize: 1024 * 1024 })).toThrow(LimitError);
    // a known expected size smaller than the output is an integrity failure, found without
    // decoding the whole bomb
    expect(() => decodeBlob(blob, { name, expectedSize: 4096 })).toThrow(IntegrityError);
    // an uncompressed encrypted payload beyond maxSize is refused before any decryption
    const bigEnc = encodeBlob(randomBytes(5000), { crypt, compress: false });
    expect(() => decodeBlob(bigEnc, { name, crypt: otherCrypt, maxSize: 4000 })).toThrow(LimitError);
    // uncompressed payload beyond maxSize is a LimitError too
    expect(() => decodeBlob(encodeBlob(randomBytes(5000), { compress: false }), { name, maxSize: 4000 })).toThrow(
      LimitError,
    );
  });

  it('random bytes never escape as anything but a typed error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(0, 1, 2, 3), (tail, m) => {
        const magic = [UNCOMPRESSED_BLOB_MAGIC, COMPRESSED_BLOB_MAGIC, ENCRYPTED_BLOB_MAGIC, ENCR_COMPR_BLOB_MAGIC][m]!;
        const raw = Buffer.concat([magic, Buffer.from(tail)]);
        for (const checkCrc of [true, false]) {
          try {
            decodeBlob(raw, { name, crypt, checkCrc });
          } catch (e) {
            expect(isPbsfsError(e)).toBe(true);
            expect((e as Error).message).toContain(name);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('encodeBlob refuses more than 128 MiB', () => {
    expect(() => encodeBlob(Buffer.alloc(128 * 1024 * 1024 + 1), { compress: false })).toThrow(LimitError);
  });
});

describe('decoding into given memory (opts.into)', () => {
  const name = 'chunk into-test';
  /** Shared memory of n bytes, as the chunk reader's arena hands out. */
  const arena = (n: number): Buffer => Buffer.from(new SharedArrayBuffer(n + 64), 32, n);
  /** Class and words of a failure, or 'ok'. */
  const outcome = (f: () => unknown): string => {
    try {
      f();
      return 'ok';
    } catch (e) {
      return `${(e as Error).constructor.name}: ${(e as Error).message}`;
    }
  };

  it('every vector blob decodes into exactly the memory given, with the same bytes', () => {
    for (const e of expected) {
      const raw = read(e.file);
      const plainFile = read(e.plaintext_file);
      const h = parseBlobHeader(raw, e.file);
      const into = arena(plainFile.length);
      const got = decodeBlob(raw, { name: e.file, crypt, expectedCryptMode: h.encrypted ? 'encrypt' : 'none', expectedSize: plainFile.length, into });
      expect(got.equals(plainFile)).toBe(true);
      if (plainFile.length > 0) {
        expect(got.buffer).toBe(into.buffer);
        expect(got.byteOffset).toBe(into.byteOffset);
      }
    }
  });

  it('property: the same plaintext with and without `into`, for every kind of blob', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300_000 }), fc.boolean(), fc.boolean(), (bytes, keyed, repetitive) => {
        const data = repetitive ? Buffer.alloc(bytes.length, bytes[0]) : Buffer.from(bytes);
        const raw = encodeBlob(data, { ...(keyed ? { crypt } : {}), compress: true });
        const opts = { name, crypt, expectedSize: data.length };
        const into = arena(data.length);
        const got = decodeBlob(raw, { ...opts, into });
        expect(got.equals(data)).toBe(true);
        expect(got.buffer).toBe(into.buffer);
        expect(decodeBlob(raw, opts).equals(data)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('fails with the same error, class and words, as without `into`', () => {
    const data = Buffer.from('pbsfs '.repeat(20_000));
    const cases: [string, Buffer, number, CryptConfig | undefined, boolean][] = [];
    for (const keyed of [false, true]) {
      const c = keyed ? crypt : undefined;
      for (const compress of [false, true]) {
        const raw = encodeBlob(data, { ...(c ? { crypt: c } : {}), compress });
        cases.push([`${keyed ? 'encrypted' : 'plain'} ${compress ? 'compressed' : 'raw'}: too small`, raw, data.length - 1, c, true]);
        cases.push([`${keyed ? 'encrypted' : 'plain'} ${compress ? 'compressed' : 'raw'}: too large`, raw, data.length + 1, c, true]);
        const flipped = Buffer.from(raw);
        flipped[flipped.length - 7]! ^= 0x20;
        cases.push([`${keyed ? 'encrypted' : 'plain'} ${compress ? 'compressed' : 'raw'}: flipped, no CRC check`, flipped, data.length, c, false]);
        if (keyed) cases.push([`wrong key, ${compress ? 'compressed' : 'raw'}`, raw, data.length, otherCrypt, true]);
      }
    }
    // A compressed payload cut short (its CRC fixed, so the decoder meets the truncated frame).
    const z = zstdCompress(data, 1);
    const cut = z.subarray(0, z.length - 40);
    const truncated = Buffer.concat([COMPRESSED_BLOB_MAGIC, Buffer.alloc(4), cut]);
    truncated.writeUInt32LE(crc32(cut), 8);
    cases.push(['truncated zstd frame', truncated, data.length, undefined, true]);
    // Two frames back to back decode as one plaintext; one byte more than expected is refused.
    const two = Buffer.concat([zstdCompress(data.subarray(0, 1000), 1), zstdCompress(data.subarray(1000), 1)]);
    const twoFrames = Buffer.concat([COMPRESSED_BLOB_MAGIC, Buffer.alloc(4), two]);
    twoFrames.writeUInt32LE(crc32(two), 8);
    cases.push(['two frames', twoFrames, data.length, undefined, true]);
    cases.push(['two frames, one byte short of room', twoFrames, data.length - 1, undefined, true]);
    const succeeded: string[] = [];
    for (const [what, raw, size, c, checkCrc] of cases) {
      const opts = { name, ...(c ? { crypt: c } : {}), expectedSize: size, checkCrc };
      const plainWay = outcome(() => decodeBlob(raw, opts));
      const intoWay = outcome(() => decodeBlob(raw, { ...opts, into: arena(size) }));
      expect(intoWay, what).toBe(plainWay);
      if (plainWay === 'ok') succeeded.push(what);
    }
    // The intact two-frame blob, and a flip that no check covers (no CRC check, no digest).
    expect(succeeded).toEqual(['plain raw: flipped, no CRC check', 'two frames']);
  });

  it('memory of another length is not used', () => {
    const raw = encodeBlob(Buffer.alloc(5000, 7), { crypt, compress: true });
    const wrong = arena(4999);
    const got = decodeBlob(raw, { name, crypt, expectedSize: 5000, into: wrong });
    expect(got.equals(Buffer.alloc(5000, 7))).toBe(true);
    expect(got.buffer).not.toBe(wrong.buffer);
    expect(() => decodeBlob(raw, { name, crypt, into: arena(5000) })).not.toThrow(); // no expected size: ignored
  });
});
