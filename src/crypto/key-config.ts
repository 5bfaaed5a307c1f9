/**
 * PBS key files (KeyConfig JSON, spec section 4).
 *
 * {"kdf":null|{"Scrypt":{n,r,p,salt}}|{"PBKDF2":{iter,salt}},"created":…,"modified":…,
 *  "data":base64,"fingerprint":"aa:bb:…","hint":…}
 *
 * With a KDF, `data` is iv(16) || tag(16) || AES-256-GCM(wrapping key, raw key); without one it is
 * the raw 32-byte key.
 */
import { pbkdf2, randomBytes, scrypt } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { CryptoError, FormatError, IntegrityError, LimitError, UsageError, fromSystemError } from '../errors.js';
import { CryptConfig, KEY_SIZE, aesGcmDecrypt, aesGcmEncrypt, formatFingerprint } from './crypt-config.js';
import { getPassphrase } from './passphrase.js';
import { bytesEqual } from '../util/bytes.js';
import { formatRfc3339Local, parseRfc3339 } from '../util/rfc3339.js';

export type Kdf =
  | null
  | { Scrypt: { n: number; r: number; p: number; salt: string } }
  | { PBKDF2: { iter: number; salt: string } };

export interface KeyConfig {
  kdf: Kdf;
  created: string;
  modified: string;
  data: string;
  fingerprint?: string;
  hint?: string;
}

export type KdfName = 'none' | 'scrypt' | 'pbkdf2';

/** Upstream allows scrypt to use up to 1025 MiB; more is a hostile or broken file. */
const SCRYPT_MAX_MEM = 1025 * 1024 * 1024;
/** PBKDF2 iteration bound (upstream writes 65535); keeps a hostile file from hanging us. */
const PBKDF2_MAX_ITER = 10_000_000;
/** Key files are a few hundred bytes. */
const MAX_KEY_FILE_SIZE = 1024 * 1024;
export const MIN_PASSPHRASE_BYTES = 5;

export function kdfName(kc: KeyConfig): KdfName {
  if (kc.kdf === null) return 'none';
  return 'Scrypt' in kc.kdf ? 'scrypt' : 'pbkdf2';
}

/** Standard base64, with or without padding; anything else is refused (Buffer.from is too lax). */
export function decodeBase64(s: string, what: string, file: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.replace(/=+$/, '').length % 4 === 1) {
    throw new FormatError(`${what} is not valid base64`, { file });
  }
  return Buffer.from(s, 'base64');
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function posInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

/** Parses and validates the JSON; unknown fields are ignored as upstream does. */
export function parseKeyConfig(text: string, file: string): KeyConfig {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`not a key file: invalid JSON (${(e as Error).message})`, { file, cause: e });
  }
  if (!isObj(j)) throw new FormatError('not a key file: expected a JSON object', { file });
  const bad = (what: string): never => {
    throw new FormatError(`not a valid key file: ${what}`, { file });
  };

  let kdf: Kdf = null;
  const k = j.kdf;
  if (k !== undefined && k !== null) {
    if (!isObj(k)) return bad('"kdf" must be null or an object');
    const keys = Object.keys(k);
    if (keys.length !== 1) return bad('"kdf" must have exactly one of "Scrypt" or "PBKDF2"');
    if (isObj(k.Scrypt)) {
      const { n, r, p, salt } = k.Scrypt;
      if (!posInt(n) || !posInt(r) || !posInt(p) || typeof salt !== 'string') {
        return bad('"kdf.Scrypt" needs positive integers n, r, p and a salt string');
      }
      kdf = { Scrypt: { n, r, p, salt } };
    } else if (isObj(k.PBKDF2)) {
      const { iter, salt } = k.PBKDF2;
      if (!posInt(iter) || typeof salt !== 'string') return bad('"kdf.PBKDF2" needs a positive integer iter and a salt string');
      kdf = { PBKDF2: { iter, salt } };
    } else {
      return bad(`unknown kdf ${JSON.stringify(keys[0])} (expected "Scrypt" or "PBKDF2")`);
    }
  }
  for (const f of ['created', 'modified', 'data'] as const) {
    if (typeof j[f] !== 'string') bad(`"${f}" must be a string`);
  }
  const kc: KeyConfig = { kdf, created: j.created as string, modified: j.modified as string, data: j.data as string };
  for (const f of ['created', 'modified'] as const) {
    try {
      parseRfc3339(kc[f], `"${f}"`);
    } catch (e) {
      throw new FormatError(`not a valid key file: ${(e as Error).message}`, { file, cause: e });
    }
  }
  if (j.fingerprint !== undefined && j.fingerprint !== null) {
    if (typeof j.fingerprint !== 'string') bad('"fingerprint" must be a string');
    kc.fingerprint = j.fingerprint as string;
  }
  if (j.hint !== undefined && j.hint !== null) {
    if (typeof j.hint !== 'string') bad('"hint" must be a string');
    kc.hint = j.hint as string;
  }
  return kc;
}

/** Compact JSON with the upstream field order (kdf, created, modified, data, fingerprint, hint). */
export function serializeKeyConfig(kc: KeyConfig): string {
  return JSON.stringify(orderedKeyConfig(kc));
}

/** Pretty JSON (2-space indent, upstream field order), as printed on paper keys. */
export function serializeKeyConfigPretty(kc: KeyConfig): string {
  return JSON.stringify(orderedKeyConfig(kc), null, 2);
}

function orderedKeyConfig(kc: KeyConfig): Record<string, unknown> {
  let kdf: unknown = null;
  if (kc.kdf !== null) {
    kdf =
      'Scrypt' in kc.kdf
        ? { Scrypt: { n: kc.kdf.Scrypt.n, r: kc.kdf.Scrypt.r, p: kc.kdf.Scrypt.p, salt: kc.kdf.Scrypt.salt } }
        : { PBKDF2: { iter: kc.kdf.PBKDF2.iter, salt: kc.kdf.PBKDF2.salt } };
  }
  const o: Record<string, unknown> = { kdf, created: kc.created, modified: kc.modified, data: kc.data };
  if (kc.fingerprint !== undefined) o.fingerprint = kc.fingerprint;
  if (kc.hint !== undefined) o.hint = kc.hint;
  return o;
}

/** Derives the 32-byte wrapping key with the parameters stored in the file. */
export async function deriveWrappingKey(kdf: Exclude<Kdf, null>, passphrase: string, file: string): Promise<Buffer> {
  const pass = Buffer.from(passphrase, 'utf8');
  if (pass.length < MIN_PASSPHRASE_BYTES) {
    throw new CryptoError(`the passphrase is too short (at least ${MIN_PASSPHRASE_BYTES} bytes)`, { file });
  }
  if ('Scrypt' in kdf) {
    const { n, r, p } = kdf.Scrypt;
    const salt = decodeBase64(kdf.Scrypt.salt, 'the scrypt salt', file);
    if (n < 2 || (n & (n - 1)) !== 0) throw new FormatError(`scrypt n=${n} is not a power of two`, { file });
    const mem = 128 * n * r * p;
    if (!Number.isSafeInteger(mem) || mem > SCRYPT_MAX_MEM) {
      throw new LimitError(`scrypt parameters n=${n} r=${r} p=${p} need more than 1025 MiB`, { file });
    }
    // Node counts 128*N*r (+ a little) against maxmem; give it what the parameters need.
    const maxmem = Math.max(128 * 1024 * 1024, 128 * n * r * (p + 1) + 16 * 1024 * 1024);
    return new Promise((resolve, reject) => {
      scrypt(pass, salt, KEY_SIZE, { N: n, r, p, maxmem }, (err, key) => {
        if (err) reject(new CryptoError(`scrypt failed: ${err.message}`, { file, cause: err }));
        else resolve(key);
      });
    });
  }
  const { iter } = kdf.PBKDF2;
  const salt = decodeBase64(kdf.PBKDF2.salt, 'the PBKDF2 salt', file);
  if (iter > PBKDF2_MAX_ITER) throw new LimitError(`PBKDF2 iteration count ${iter} is unreasonably high`, { file });
  return new Promise((resolve, reject) => {
    pbkdf2(pass, salt, iter, KEY_SIZE, 'sha256', (err, key) => {
      if (err) reject(new CryptoError(`PBKDF2 failed: ${err.message}`, { file, cause: err }));
      else resolve(key);
    });
  });
}

/**
 * Recovers the raw key (spec 4.6). The passphrase is asked for only when the file has a KDF.
 * Wrong passphrase -> CryptoError naming the file (and its hint); fingerprint mismatch ->
 * IntegrityError.
 */
export async function decryptKeyConfig(
  kc: KeyConfig,
  passphrase: () => Promise<string>,
  file: string,
): Promise<{ key: Buffer; created: string; fingerprint: Buffer }> {
  const data = decodeBase64(kc.data, '"data"', file);
  let key: Buffer;
  if (kc.kdf === null) {
    key = data;
  } else {
    if (data.length < 32) throw new FormatError(`"data" is too short for a protected key (${data.length} bytes)`, { file });
    const wrap = await deriveWrappingKey(kc.kdf, await passphrase(), file);
    try {
      key = aesGcmDecrypt(wrap, data.subarray(0, 16), data.subarray(16, 32), data.subarray(32));
    } catch (e) {
      const why = kc.hint !== undefined ? `password hint: ${kc.hint}` : 'wrong passphrase?';
      throw new CryptoError(`unable to decrypt the key (${why})`, { file, cause: e });
    }
  }
  if (key.length !== KEY_SIZE) {
    throw new FormatError(`the key is ${key.length} bytes, expected ${KEY_SIZE}`, { file });
  }
  const crypt = CryptConfig.fromKey(key);
  if (kc.fingerprint !== undefined) {
    let stored: Buffer | undefined;
    const hex = kc.fingerprint.replace(/:/g, '');
    if (/^[0-9a-fA-F]{64}$/.test(hex)) stored = Buffer.from(hex, 'hex');
    if (stored === undefined || !bytesEqual(stored, crypt.fingerprint)) {
      throw new IntegrityError(
        `the key file states fingerprint ${kc.fingerprint} but the key's fingerprint is ${formatFingerprint(crypt.fingerprint)}`,
        { file },
      );
    }
  }
  return { key, created: kc.created, fingerprint: crypt.fingerprint };
}

/** Reads, parses and decrypts a key file. */
export async function loadKeyFile(
  path: string,
  passphrase?: () => Promise<string>,
): Promise<{ crypt: CryptConfig; keyConfig: KeyConfig; created: string }> {
  let text: string;
  try {
    const st = await stat(path);
    if (st.size > MAX_KEY_FILE_SIZE) throw new LimitError(`key file is too large (${st.size} bytes)`, { file: path });
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, path, 'cannot read key file');
  }
  const keyConfig = parseKeyConfig(text, path);
  const ask = passphrase ?? (() => getPassphrase());
  const { key, created } = await decryptKeyConfig(keyConfig, ask, path);
  return { crypt: CryptConfig.fromKey(key), keyConfig, created };
}

/** Current time in the key-file timestamp form (local time, numeric offset). */
export function keyTimestampNow(): string {
  return formatRfc3339Local(Math.floor(Date.now() / 1000));
}

/**
 * Builds a KeyConfig for `key`: fresh 32-byte salt and 16-byte IV, upstream default parameters
 * (scrypt n=65536 r=8 p=1, PBKDF2 65535 iterations), fingerprint always written.
 * `created` defaults to now; `modified` is always now.
 */
export async function createKeyConfig(
  key: Uint8Array,
  opts: {
    kdf: KdfName;
    passphrase?: string;
    hint?: string;
    created?: string;
    /** For reproducible output (tests, spec examples) only; normally random / now. */
    modified?: string;
    salt?: Uint8Array;
    iv?: Uint8Array;
  },
): Promise<KeyConfig> {
  if (key.length !== KEY_SIZE) throw new CryptoError(`an encryption key must be ${KEY_SIZE} bytes, got ${key.length}`);
  const now = opts.modified ?? keyTimestampNow();
  const created = opts.created ?? now;
  const fingerprint = formatFingerprint(CryptConfig.fromKey(key).fingerprint);
  if (opts.kdf === 'none') {
    if (opts.hint !== undefined) throw new UsageError('a password hint makes no sense without a KDF (--kdf none)');
    return { kdf: null, created, modified: now, data: Buffer.from(key).toString('base64'), fingerprint };
  }
  if (opts.passphrase === undefined) throw new UsageError(`--kdf ${opts.kdf} needs a passphrase`);
  if (Buffer.byteLength(opts.passphrase, 'utf8') < MIN_PASSPHRASE_BYTES) {
    throw new UsageError(`the passphrase is too short (at least ${MIN_PASSPHRASE_BYTES} bytes)`);
  }
  const salt = Buffer.from(opts.salt ?? randomBytes(32)).toString('base64');
  const kdf: Exclude<Kdf, null> =
    opts.kdf === 'scrypt' ? { Scrypt: { n: 65536, r: 8, p: 1, salt } } : { PBKDF2: { iter: 65535, salt } };
  const wrap = await deriveWrappingKey(kdf, opts.passphrase, 'new key file');
  const { iv, tag, ciphertext } = aesGcmEncrypt(wrap, key, opts.iv);
  const kc: KeyConfig = {
    kdf,
    created,
    modified: now,
    data: Buffer.concat([iv, tag, ciphertext]).toString('base64'),
    fingerprint,
  };
  if (opts.hint !== undefined) kc.hint = opts.hint;
  return kc;
}
