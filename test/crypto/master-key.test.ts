import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, createPrivateKey, createPublicKey, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import {
  createMasterKeyPair,
  encryptKeyForMaster,
  masterKeyConfigFor,
  masterPublicKeyInfo,
  openMasterPrivateKey,
  recoverKeyFromMasterKey,
  rsaPkcs1v15Decrypt,
} from '../../src/crypto/master-key.js';
import { CryptConfig, formatFingerprint } from '../../src/crypto/crypt-config.js';
import { parseKeyConfig, serializeKeyConfig, type KeyConfig } from '../../src/crypto/key-config.js';
import { decodeBlob } from '../../src/blob/data-blob.js';
import { CryptoError, FormatError } from '../../src/errors.js';
import { datastoreDir, keysDir, upstreamDir, vectorsDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';

const keysExpected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8'));
const dsExpected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8'));
const rsaTest = JSON.parse(readFileSync(join(upstreamDir, 'rsa-test-key.json'), 'utf8'));
const privatePem = readFileSync(join(keysDir, 'master-private.pem'), 'utf8');
const publicPem = readFileSync(join(keysDir, 'master-public.pem'), 'utf8');
const pass = (p: string) => async (): Promise<string> => p;

// The snapshot holding rsa-encrypted.key.blob, found through expected.json (not hard-coded).
const rsaSnap = (dsExpected.snapshots as { path: string; files: Record<string, Record<string, unknown>> }[]).find(
  (s) => s.files['rsa-encrypted.key.blob'] !== undefined,
)!;
const rsaInfo = rsaSnap.files['rsa-encrypted.key.blob'] as {
  blob_magic: string;
  rsa_ciphertext_hex: string;
  rsa_plaintext_utf8: string;
};
const rsaBlobPath = join(datastoreDir, rsaSnap.path, 'rsa-encrypted.key.blob');

/** Independent RSA: c^d mod n with BigInt. */
function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}
const toBig = (b: Uint8Array): bigint => BigInt('0x' + (Buffer.from(b).toString('hex') || '0'));
const toBuf = (v: bigint, len: number): Buffer => Buffer.from(v.toString(16).padStart(len * 2, '0'), 'hex');
const b64u = (dec: string): string => toBuf(BigInt(dec), Math.ceil(BigInt(dec).toString(16).length / 2)).toString('base64url');

function upstreamTestKey(): { priv: KeyObject; pubPem: string } {
  const jwk = {
    kty: 'RSA',
    n: b64u(rsaTest.n),
    e: b64u(rsaTest.e),
    d: b64u(rsaTest.d),
    p: b64u(rsaTest.p),
    q: b64u(rsaTest.q),
    dp: b64u(rsaTest.dmp1),
    dq: b64u(rsaTest.dmq1),
    qi: b64u(rsaTest.iqmp),
  };
  const priv = createPrivateKey({ key: jwk, format: 'jwk' });
  return { priv, pubPem: createPublicKey(priv).export({ type: 'spki', format: 'pem' }).toString() };
}

describe('recovery from the datastore snapshot', () => {
  it('rsa-encrypted.key.blob decodes, decrypts to the expected KeyConfig JSON and the set key', async () => {
    const payload = decodeBlob(readFileSync(rsaBlobPath), { name: 'rsa-encrypted.key.blob' });
    expect(readFileSync(rsaBlobPath).subarray(0, 8).toString('hex')).toBe(rsaInfo.blob_magic);
    expect(payload.toString('hex')).toBe(rsaInfo.rsa_ciphertext_hex);
    const key = await openMasterPrivateKey(privatePem, pass(VECTOR_PASSPHRASE));
    expect(rsaPkcs1v15Decrypt(key, payload).toString('utf8')).toBe(rsaInfo.rsa_plaintext_utf8);
    const r = await recoverKeyFromMasterKey(payload, privatePem, pass(VECTOR_PASSPHRASE));
    expect(r.crypt.encKey.toString('hex')).toBe(keysExpected.raw_key_hex);
    expect(formatFingerprint(r.crypt.fingerprint)).toBe(keysExpected.fingerprint_full);
    expect(r.keyConfig.kdf).toBeNull();
  });

  it('our unpadding agrees with an independent BigInt RSA decryption', async () => {
    const payload = decodeBlob(readFileSync(rsaBlobPath), { name: 'rsa' });
    const jwk = (await openMasterPrivateKey(privatePem, pass(VECTOR_PASSPHRASE))).export({ format: 'jwk' });
    const n = toBig(Buffer.from(jwk.n!, 'base64url'));
    const d = toBig(Buffer.from(jwk.d!, 'base64url'));
    const em = toBuf(modPow(toBig(payload), d, n), 512);
    expect(em[0]).toBe(0);
    expect(em[1]).toBe(2);
    const sep = em.indexOf(0, 2);
    expect(sep).toBeGreaterThanOrEqual(10);
    expect(em.subarray(sep + 1).toString('utf8')).toBe(rsaInfo.rsa_plaintext_utf8);
  });

  it('wrong master passphrase -> CryptoError naming the key', async () => {
    const payload = decodeBlob(readFileSync(rsaBlobPath), { name: 'rsa' });
    const err = await recoverKeyFromMasterKey(payload, privatePem, pass('not the passphrase'), {
      pemName: 'master-private.pem',
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CryptoError);
    expect((err as Error).message).toMatch(/master-private\.pem.*wrong passphrase/);
  });

  it('wrong master key -> CryptoError', async () => {
    const payload = decodeBlob(readFileSync(rsaBlobPath), { name: 'rsa' });
    const wrongPem = upstreamTestKey().priv.export({ type: 'pkcs8', format: 'pem' }).toString();
    await expect(recoverKeyFromMasterKey(payload, wrongPem, pass('unused'))).rejects.toThrow(CryptoError);
  });

  it('damaged ciphertext -> CryptoError; wrong length -> FormatError; not a PEM -> FormatError', async () => {
    const payload = Buffer.from(decodeBlob(readFileSync(rsaBlobPath), { name: 'rsa' }));
    payload[100]! ^= 1;
    await expect(recoverKeyFromMasterKey(payload, privatePem, pass(VECTOR_PASSPHRASE))).rejects.toThrow(CryptoError);
    await expect(recoverKeyFromMasterKey(payload.subarray(1), privatePem, pass(VECTOR_PASSPHRASE))).rejects.toThrow(
      FormatError,
    );
    await expect(recoverKeyFromMasterKey(payload, 'hello', pass(VECTOR_PASSPHRASE))).rejects.toThrow(FormatError);
  });

  it('show-master-pubkey info matches expected.json', () => {
    const info = masterPublicKeyInfo(publicPem);
    expect(info.modulus).toBe(String(keysExpected.master_key.modulus_hex).toUpperCase());
    expect(info.exponent).toBe(keysExpected.master_key.public_exponent);
    expect(info.length).toBe(keysExpected.master_key.bits);
  });
});

describe('PKCS#1 v1.5 padding checks', () => {
  const { priv, pubPem } = upstreamTestKey();
  const k = 512;
  const rawEncrypt = (em: Buffer): Buffer => publicEncrypt({ key: pubPem, padding: constants.RSA_NO_PADDING }, em);
  const em = (type: number, psLen: number, msg: Buffer, sep = true): Buffer => {
    const out = Buffer.alloc(k);
    out[1] = type;
    for (let i = 0; i < psLen; i++) out[2 + i] = 1 + (i % 255);
    if (!sep) for (let i = 2 + psLen; i < k; i++) out[i] = 7;
    else msg.copy(out, 3 + psLen);
    return out;
  };

  it('accepts a well-formed block and rejects each defect', () => {
    const msg = Buffer.from('payload');
    const good = em(2, k - 3 - msg.length, msg);
    expect(rsaPkcs1v15Decrypt(priv, rawEncrypt(good)).toString()).toBe('payload');
    expect(rsaPkcs1v15Decrypt(priv, rawEncrypt(em(2, 8, Buffer.alloc(k - 11, 0x41)))).length).toBe(k - 11);
    expect(() => rsaPkcs1v15Decrypt(priv, rawEncrypt(em(1, k - 3 - msg.length, msg)))).toThrow(CryptoError); // type 1
    expect(() => rsaPkcs1v15Decrypt(priv, rawEncrypt(em(2, 7, Buffer.alloc(k - 10, 0x41))))).toThrow(CryptoError); // PS < 8
    expect(() => rsaPkcs1v15Decrypt(priv, rawEncrypt(em(2, 0, Buffer.alloc(0), false)))).toThrow(CryptoError); // no 00
  });
});

describe('upstream RSA test key (rsa-test-key.json)', () => {
  it('round-trips the upstream test KeyConfig through encryptKeyForMaster / recoverKeyFromMasterKey', async () => {
    const { priv, pubPem } = upstreamTestKey();
    expect(masterPublicKeyInfo(pubPem).length).toBe(rsaTest.modulus_bits);
    const t = rsaTest.plaintext_key_config_used_in_test;
    const crypt = CryptConfig.fromKey(Buffer.from(t.data_bytes_hex, 'hex'));
    expect(crypt.fingerprint.toString('hex')).toBe(t.fingerprint_hex);
    const kc = masterKeyConfigFor(crypt, '2020-06-26T13:56:05+00:00');
    const ct = encryptKeyForMaster(kc, pubPem);
    expect(ct.length).toBe(512);
    // independent decryption: the ciphertext is real PKCS#1 v1.5 type 2
    const n = BigInt(rsaTest.n);
    const emBytes = toBuf(modPow(toBig(ct), BigInt(rsaTest.d), n), 512);
    expect(emBytes.subarray(0, 2).toString('hex')).toBe('0002');
    expect(emBytes.subarray(emBytes.indexOf(0, 2) + 1).toString()).toBe(serializeKeyConfig(kc));
    const pem = priv.export({ type: 'pkcs8', format: 'pem' }).toString();
    const r = await recoverKeyFromMasterKey(ct, pem, pass('unused for a plain PEM'));
    expect(r.crypt.encKey.toString('hex')).toBe(t.data_bytes_hex);
    expect(r.keyConfig).toEqual(parseKeyConfig(serializeKeyConfig(kc), 'kc'));
  });

  it('a recovered KeyConfig with a wrong fingerprint is refused', async () => {
    const { priv, pubPem } = upstreamTestKey();
    const crypt = CryptConfig.fromKey(randomBytes(32));
    const kc: KeyConfig = { ...masterKeyConfigFor(crypt, '2020-06-26T13:56:05+00:00'), fingerprint: keysExpected.fingerprint_full };
    const pem = priv.export({ type: 'pkcs8', format: 'pem' }).toString();
    await expect(recoverKeyFromMasterKey(encryptKeyForMaster(kc, pubPem), pem, pass('x'))).rejects.toThrow(/fingerprint/);
  });
});

describe('create-master-key', () => {
  it('makes an RSA-4096 pair whose private half is passphrase-protected PKCS#8, and recovery works', async () => {
    const { publicPem: pub, privatePem: priv } = await createMasterKeyPair('master pass');
    expect(pub.startsWith('-----BEGIN PUBLIC KEY-----\n')).toBe(true);
    expect(priv.startsWith('-----BEGIN ENCRYPTED PRIVATE KEY-----\n')).toBe(true);
    const info = masterPublicKeyInfo(pub);
    expect(info.length).toBe(4096);
    expect(info.exponent).toBe('65537');
    const crypt = CryptConfig.fromKey(Buffer.from(keysExpected.raw_key_hex, 'hex'));
    const ct = encryptKeyForMaster(masterKeyConfigFor(crypt, '2024-06-01T00:00:00+00:00'), pub);
    const r = await recoverKeyFromMasterKey(ct, priv, pass('master pass'));
    expect(r.crypt.encKey.equals(crypt.encKey)).toBe(true);
    await expect(recoverKeyFromMasterKey(ct, priv, pass('other pass'))).rejects.toThrow(CryptoError);
  });
});
