import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes, scryptSync } from 'node:crypto';
import fc from 'fast-check';
import { gcm } from '@noble/ciphers/aes.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { pbkdf2 } from '@noble/hashes/pbkdf2.js';
import { CryptConfig, FINGERPRINT_INPUT, formatFingerprint, parseFingerprint } from '../../src/crypto/crypt-config.js';
import { CryptoError, FormatError } from '../../src/errors.js';
import { keysDir, upstreamDir } from '../helpers/paths.js';

const keysExpected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8'));
const upstream = JSON.parse(readFileSync(join(upstreamDir, 'embedded-test-constants.json'), 'utf8'));
const key00 = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const iv00 = Buffer.from(Array.from({ length: 16 }, (_, i) => i));

describe('CryptConfig', () => {
  it('FINGERPRINT_INPUT is sha256 of the documented string', () => {
    expect(FINGERPRINT_INPUT.toString('hex')).toBe(
      createHash('sha256').update('Proxmox Backup Encryption Key Fingerprint').digest('hex'),
    );
    expect(FINGERPRINT_INPUT.toString('hex')).toBe(upstream.FINGERPRINT_INPUT.hex);
  });

  it('spec 3.3 id_key and 3.6 fingerprint for key 00..1f (upstream test)', () => {
    const c = CryptConfig.fromKey(key00);
    expect(c.idKey.toString('hex')).toBe('7c2c013efd07f3b25717a485263343cd4d292a4b65c200bb3b18ea227abe225c');
    expect(formatFingerprint(c.fingerprint)).toBe(upstream.key_fingerprint_test.expected_fingerprint_text);
    expect(formatFingerprint(c.fingerprint, 'short')).toBe('0e:ab:d4:46:0b:6e:b9:ca');
  });

  it('vector key: fingerprint, compute_digest and auth tag of "hello world" from keys/expected.json', () => {
    const c = CryptConfig.fromKey(Buffer.from(keysExpected.raw_key_hex, 'hex'));
    expect(formatFingerprint(c.fingerprint)).toBe(keysExpected.fingerprint_full);
    expect(formatFingerprint(c.fingerprint, 'short')).toBe(keysExpected.fingerprint_short_display);
    const s = keysExpected.sample_keyed_digest;
    const input = Buffer.from(s.input_utf8, 'utf8');
    expect(c.computeDigest(input).toString('hex')).toBe(s.compute_digest_hex);
    expect(c.computeAuthTag(input).toString('hex')).toBe(s.compute_auth_tag_hex);
    expect(createHash('sha256').update(input).digest('hex')).toBe(s.plain_sha256_hex);
  });

  it('other key fingerprint', () => {
    const c = CryptConfig.fromKey(Buffer.from(keysExpected.other_key_raw_hex, 'hex'));
    expect(formatFingerprint(c.fingerprint)).toBe(keysExpected.other_key_fingerprint_full);
  });

  it('spec 3.7 blob digest test (key 01 x 32, i % 255)', () => {
    const t = upstream.blob_digest_test;
    const data = Buffer.from(Array.from({ length: 100000 }, (_, i) => i % 255));
    const c = CryptConfig.fromKey(Buffer.from(t.crypt_key_hex, 'hex'));
    expect(createHash('sha256').update(data).digest('hex')).toBe(t.plain_digest_hex);
    expect(c.computeDigest(data).toString('hex')).toBe(t.keyed_digest_hex);
  });

  it('spec 8.5 manifest auth tag test vector', () => {
    const t = upstream.manifest_signature_test;
    const key = scryptSync('test', Buffer.alloc(0), 32, { N: 65536, r: 8, p: 1, maxmem: 256 * 1024 * 1024 });
    expect(key.toString('hex')).toBe(t.derived_key_hex_independently_computed);
    const c = CryptConfig.fromKey(key);
    expect(c.computeAuthTag(Buffer.from(t.canonical_json_signed_independently_computed)).toString('hex')).toBe(
      t.expected_signature_hex,
    );
  });

  it('spec 2.9 example 2: AES-256-GCM with a 16-byte IV', () => {
    const c = CryptConfig.fromKey(key00);
    const { iv, tag, ciphertext } = c.encrypt(Buffer.from('hello'), iv00);
    expect(iv.toString('hex')).toBe('000102030405060708090a0b0c0d0e0f');
    expect(tag.toString('hex')).toBe('0c84c431837297c0b19e77e5608162ea');
    expect(ciphertext.toString('hex')).toBe('0f09cc1a56');
    expect(c.decrypt(iv, tag, ciphertext).toString()).toBe('hello');
    expect(c.computeDigest(Buffer.from('hello')).toString('hex')).toBe(
      'e34178a27b992c4a218599bf7f43ed50bc464a03d624d9092306fe2ed74d557e',
    );
  });

  it('decrypt with a damaged tag, ciphertext or wrong key is a CryptoError naming the file', () => {
    const c = CryptConfig.fromKey(key00);
    const { iv, tag, ciphertext } = c.encrypt(randomBytes(100));
    const badTag = Buffer.from(tag);
    badTag[3]! ^= 1;
    expect(() => c.decrypt(iv, badTag, ciphertext, 'x.blob')).toThrow(CryptoError);
    expect(() => c.decrypt(iv, badTag, ciphertext, 'x.blob')).toThrow(/x\.blob/);
    const badCt = Buffer.from(ciphertext);
    badCt[50]! ^= 0x80;
    expect(() => c.decrypt(iv, tag, badCt, 'x.blob')).toThrow(CryptoError);
    const other = CryptConfig.fromKey(randomBytes(32));
    expect(() => other.decrypt(iv, tag, ciphertext, 'x.blob')).toThrow(CryptoError);
    expect(() => c.decrypt(iv.subarray(0, 12), tag, ciphertext, 'x.blob')).toThrow(CryptoError);
  });

  it('fromKey refuses wrong key lengths', () => {
    expect(() => CryptConfig.fromKey(Buffer.alloc(31))).toThrow(CryptoError);
    expect(() => CryptConfig.fromKey(Buffer.alloc(33))).toThrow(CryptoError);
  });

  it('fingerprint text round trip and strict parsing', () => {
    const fp = parseFingerprint(keysExpected.fingerprint_full);
    expect(formatFingerprint(fp)).toBe(keysExpected.fingerprint_full);
    expect(parseFingerprint(keysExpected.fingerprint_full.toUpperCase()).equals(fp)).toBe(true);
    expect(() => parseFingerprint('58:08:fe')).toThrow(FormatError);
    expect(() => parseFingerprint(keysExpected.fingerprint_full.replace('58', 'zz'))).toThrow(FormatError);
  });

  it('matches independent implementations (@noble) on random inputs', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ maxLength: 2000 }),
        (key, iv, plain) => {
          const c = CryptConfig.fromKey(key);
          const idKey = pbkdf2(sha256, key, new TextEncoder().encode('_id_key'), { c: 10, dkLen: 32 });
          expect(Buffer.from(idKey).equals(c.idKey)).toBe(true);
          const ours = c.encrypt(plain, iv);
          const theirs = gcm(key, iv).encrypt(plain); // ciphertext || tag
          expect(Buffer.concat([ours.ciphertext, ours.tag]).equals(Buffer.from(theirs))).toBe(true);
          expect(c.decrypt(iv, ours.tag, ours.ciphertext).equals(Buffer.from(plain))).toBe(true);
          const both = new Uint8Array(plain.length + 32);
          both.set(plain);
          both.set(idKey, plain.length);
          expect(c.computeDigest(plain).equals(Buffer.from(sha256(both)))).toBe(true);
          expect(c.computeAuthTag(plain).equals(Buffer.from(hmac(sha256, idKey, plain)))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
