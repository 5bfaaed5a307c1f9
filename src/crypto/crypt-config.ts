/**
 * CryptConfig: everything derived from a 32-byte PBS encryption key (spec section 3).
 *
 * - AES-256-GCM with a 16-byte IV and empty AAD encrypts blob payloads;
 * - id_key = PBKDF2-HMAC-SHA256(enc_key, "_id_key", 10 iterations, 32 bytes) keys the chunk
 *   digest (sha256(data || id_key)) and the manifest signature (HMAC-SHA256(id_key, data));
 * - the fingerprint is the keyed digest of a fixed 32-byte constant.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { CryptoError, FormatError } from '../errors.js';

/** sha256("Proxmox Backup Encryption Key Fingerprint"), the fingerprint input (spec 1). */
export const FINGERPRINT_INPUT = Buffer.from(
  '6ed0ef77471fff4d55c7a8fe4a9db62161407f134c725ddf30992d25ec45ed26',
  'hex',
);

export const KEY_SIZE = 32;
export const IV_SIZE = 16;
export const TAG_SIZE = 16;

export class CryptConfig {
  readonly encKey: Buffer;
  readonly idKey: Buffer;
  readonly fingerprint: Buffer;

  private constructor(encKey: Buffer) {
    this.encKey = encKey;
    this.idKey = pbkdf2Sync(encKey, '_id_key', 10, 32, 'sha256');
    this.fingerprint = this.computeDigest(FINGERPRINT_INPUT);
  }

  /** Builds the config from the raw 32-byte key (copied, so callers may wipe theirs). */
  static fromKey(encKey: Uint8Array): CryptConfig {
    if (encKey.length !== KEY_SIZE) {
      throw new CryptoError(`an encryption key must be ${KEY_SIZE} bytes, got ${encKey.length}`);
    }
    return new CryptConfig(Buffer.from(encKey));
  }

  /** Keyed chunk digest: sha256(data || id_key). */
  computeDigest(data: Uint8Array): Buffer {
    return createHash('sha256').update(data).update(this.idKey).digest();
  }

  /** Manifest signature: HMAC-SHA256 keyed with id_key. */
  computeAuthTag(data: Uint8Array): Buffer {
    return createHmac('sha256', this.idKey).update(data).digest();
  }

  /** AES-256-GCM with a 16-byte IV (random unless given) and empty AAD. */
  encrypt(plain: Uint8Array, iv?: Uint8Array): { iv: Buffer; tag: Buffer; ciphertext: Buffer } {
    return aesGcmEncrypt(this.encKey, plain, iv);
  }

  /** Authenticated decryption; a tag mismatch (wrong key or damaged data) is a CryptoError. */
  decrypt(iv: Uint8Array, tag: Uint8Array, ciphertext: Uint8Array, file?: string): Buffer {
    return aesGcmDecrypt(this.encKey, iv, tag, ciphertext, file);
  }

  /** decrypt() into `out`, exactly as long as the ciphertext (see aesGcmDecryptInto). */
  decryptInto(iv: Uint8Array, tag: Uint8Array, ciphertext: Uint8Array, out: Uint8Array, file?: string): void {
    aesGcmDecryptInto(this.encKey, iv, tag, ciphertext, out, file);
  }

  /** "58:08:fe:07:60:20:9d:51" style short fingerprint, for messages. */
  shortFingerprint(): string {
    return formatFingerprint(this.fingerprint, 'short');
  }
}

export function aesGcmEncrypt(
  key: Uint8Array,
  plain: Uint8Array,
  iv?: Uint8Array,
): { iv: Buffer; tag: Buffer; ciphertext: Buffer } {
  const ivBuf = iv !== undefined ? Buffer.from(iv) : randomBytes(IV_SIZE);
  if (ivBuf.length !== IV_SIZE) throw new CryptoError(`AES-GCM IV must be ${IV_SIZE} bytes, got ${ivBuf.length}`);
  const c = createCipheriv('aes-256-gcm', key, ivBuf);
  const head = c.update(plain);
  const tail = c.final();
  const ciphertext = tail.length === 0 ? head : Buffer.concat([head, tail]);
  return { iv: ivBuf, tag: c.getAuthTag(), ciphertext };
}

export function aesGcmDecrypt(
  key: Uint8Array,
  iv: Uint8Array,
  tag: Uint8Array,
  ciphertext: Uint8Array,
  file?: string,
): Buffer {
  const out = Buffer.allocUnsafeSlow(ciphertext.length);
  aesGcmDecryptInto(key, iv, tag, ciphertext, out, file);
  return out;
}

/**
 * Plaintext OpenSSL produces per call when decrypting in steps. Node hands each call's output
 * back as a new buffer; in small steps those come from reused heap memory, while one call for a
 * whole 4 MiB chunk gets fresh pages every time, which costs several times the decryption itself
 * on a machine where page faults are dear; much smaller steps pay per-call overhead instead.
 */
export const DECRYPT_STEP_BYTES = 64 * 1024;

/**
 * Authenticated decryption into `out` (exactly as long as the ciphertext), in steps of
 * DECRYPT_STEP_BYTES; a tag mismatch (wrong key or damaged data) is a CryptoError. On failure
 * `out` holds unauthenticated bytes: callers must not use it.
 */
export function aesGcmDecryptInto(
  key: Uint8Array,
  iv: Uint8Array,
  tag: Uint8Array,
  ciphertext: Uint8Array,
  out: Uint8Array,
  file?: string,
): void {
  const ctx = file !== undefined ? { file } : {};
  if (iv.length !== IV_SIZE || tag.length !== TAG_SIZE) {
    throw new CryptoError(`AES-GCM needs a ${IV_SIZE}-byte IV and a ${TAG_SIZE}-byte tag`, ctx);
  }
  if (out.length !== ciphertext.length) throw new RangeError(`decryption needs ${ciphertext.length} bytes of room, got ${out.length}`);
  try {
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAuthTag(tag);
    for (let at = 0; at < ciphertext.length; at += DECRYPT_STEP_BYTES) {
      const part = d.update(ciphertext.subarray(at, at + DECRYPT_STEP_BYTES));
      // GCM is a stream mode: every call returns exactly as many bytes as it was given.
      out.set(part, at);
    }
    d.final(); // checks the tag; GCM has no tail
  } catch (e) {
    throw new CryptoError('decryption failed: authentication tag mismatch (wrong key or damaged data)', {
      ...ctx,
      cause: e,
    });
  }
}

/** Colon-separated lowercase hex; `short` = first 8 bytes (how PBS shows keys in messages). */
export function formatFingerprint(fp: Uint8Array, form: 'full' | 'short' = 'full'): string {
  const bytes = form === 'short' ? fp.subarray(0, 8) : fp;
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  return hex.replace(/(..)(?!$)/g, '$1:');
}

/** Parses a full fingerprint: colons are removed, then exactly 64 hex digits (either case). */
export function parseFingerprint(s: string): Buffer {
  const hex = s.replace(/:/g, '');
  if (hex.length !== 64 || !/^[0-9a-fA-F]+$/.test(hex)) {
    throw new FormatError(`not a key fingerprint (need 32 colon-separated hex bytes): ${JSON.stringify(s.slice(0, 120))}`);
  }
  return Buffer.from(hex, 'hex');
}
