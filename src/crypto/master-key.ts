/**
 * RSA master key (spec section 6).
 *
 * At backup time the client stores `rsa-encrypted.key.blob`: the compact JSON of an unprotected
 * KeyConfig for the backup key, encrypted with the master public key using RSAES-PKCS1-v1_5.
 * With the master private key (an encrypted PKCS#8 PEM) the backup key can be recovered.
 *
 * Node >= 20.11.1 refuses PKCS#1 v1.5 private decryption (Marvin mitigation), so we do the raw
 * RSA operation (RSA_NO_PADDING) and check the type-2 padding ourselves, without data-dependent
 * early exits. This is a local, offline operation on a file the user owns: there is no oracle an
 * attacker could query, but the check is kept branch-free over the secret bytes anyway.
 */
import {
  constants,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  privateDecrypt,
  publicEncrypt,
  type KeyObject,
} from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { CryptoError, FormatError, UnsupportedError, fromSystemError } from '../errors.js';
import { getPassphrase } from './passphrase.js';
import { CryptConfig, formatFingerprint } from './crypt-config.js';
import { decryptKeyConfig, keyTimestampNow, parseKeyConfig, serializeKeyConfig, type KeyConfig } from './key-config.js';

export const MASTER_KEY_BITS = 4096;

/** Opens a PEM private key; encrypted PKCS#8 PEMs ask for the passphrase. */
export async function openMasterPrivateKey(
  pem: string,
  passphrase: () => Promise<string>,
  file = 'master private key',
): Promise<KeyObject> {
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem) || /Proc-Type:\s*4,ENCRYPTED/.test(pem);
  if (!/-----BEGIN (ENCRYPTED |RSA )?PRIVATE KEY-----/.test(pem)) {
    throw new FormatError('not a PEM private key (expected "-----BEGIN ENCRYPTED PRIVATE KEY-----")', { file });
  }
  let key: KeyObject;
  try {
    key = encrypted ? createPrivateKey({ key: pem, format: 'pem', passphrase: await passphrase() }) : createPrivateKey(pem);
  } catch (e) {
    if (e instanceof CryptoError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    if (encrypted && /bad decrypt|decrypt|passphrase|interrupted or cancelled/i.test(msg)) {
      throw new CryptoError('unable to open the master private key (wrong passphrase?)', { file, cause: e });
    }
    throw new FormatError(`unable to read the master private key (${msg})`, { file, cause: e });
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new UnsupportedError(`the master key is ${key.asymmetricKeyType ?? 'unknown'}, not RSA`, { file });
  }
  return key;
}

/**
 * RSAES-PKCS1-v1_5 decryption: raw RSA, then strip EM = 00 || 02 || PS (>= 8 non-zero) || 00 || M.
 * Any padding defect gives the same CryptoError.
 */
export function rsaPkcs1v15Decrypt(key: KeyObject, ciphertext: Uint8Array, file = 'RSA ciphertext'): Buffer {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  const k = bits !== undefined ? Math.ceil(bits / 8) : undefined;
  if (k === undefined || ciphertext.length !== k) {
    throw new FormatError(`RSA ciphertext must be ${k ?? 'modulus-size'} bytes, got ${ciphertext.length}`, { file });
  }
  let em: Buffer;
  try {
    em = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, ciphertext);
  } catch (e) {
    throw new CryptoError('RSA decryption failed (wrong master key or damaged data)', { file, cause: e });
  }
  if (em.length !== k) {
    // OpenSSL returns exactly k bytes for RSA_NO_PADDING; be safe if not.
    const padded = Buffer.alloc(k);
    em.copy(padded, k - em.length);
    em = padded;
  }
  // Branch-free scan: find the first zero separator after the padding string.
  let bad = em[0]! | (em[1]! ^ 0x02);
  let sepIndex = 0;
  let found = 0;
  for (let i = 2; i < k; i++) {
    const isZero = ((em[i]! - 1) >>> 31) & 1; // 1 when em[i] == 0
    const take = isZero & (found ^ 1);
    sepIndex |= -take & i;
    found |= isZero;
  }
  bad |= found ^ 1;
  bad |= (sepIndex - 10) >>> 31; // PS must be at least 8 bytes: separator index >= 10
  if (bad !== 0) {
    throw new CryptoError('RSA decryption failed: invalid PKCS#1 v1.5 padding (wrong master key or damaged data)', {
      file,
    });
  }
  return Buffer.from(em.subarray(sepIndex + 1));
}

/** Encrypts the compact JSON of `keyConfig` for the master public key (the writer's side). */
export function encryptKeyForMaster(keyConfig: KeyConfig, publicPem: string): Buffer {
  let pub: KeyObject;
  try {
    pub = createPublicKey(publicPem);
  } catch (e) {
    throw new FormatError(`not a PEM public key (${e instanceof Error ? e.message : String(e)})`, {
      file: 'master public key',
      cause: e,
    });
  }
  if (pub.asymmetricKeyType !== 'rsa') throw new UnsupportedError('the master public key is not RSA');
  const json = Buffer.from(serializeKeyConfig(keyConfig), 'utf8');
  const k = Math.ceil((pub.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
  if (json.length > k - 11) throw new CryptoError(`the master key (${k * 8} bits) is too small for the key config`);
  return publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, json);
}

/**
 * The unprotected KeyConfig the client encrypts for the master key: kdf null, raw key, full
 * fingerprint, the key file's original `created`, `modified` now, no hint.
 */
export function masterKeyConfigFor(crypt: CryptConfig, created: string, modified = keyTimestampNow()): KeyConfig {
  return {
    kdf: null,
    created,
    modified,
    data: crypt.encKey.toString('base64'),
    fingerprint: formatFingerprint(crypt.fingerprint),
  };
}

/**
 * Recovers the backup key from the decoded payload of `rsa-encrypted.key.blob` with the master
 * private key. The recovered KeyConfig's fingerprint is checked (IntegrityError on mismatch).
 */
export async function recoverKeyFromMasterKey(
  rsaBlobPlaintext: Buffer,
  privateKeyPem: string,
  passphrase: () => Promise<string>,
  opts: { blobName?: string; pemName?: string } = {},
): Promise<{ crypt: CryptConfig; keyConfig: KeyConfig }> {
  const blobName = opts.blobName ?? 'rsa-encrypted.key.blob';
  const key = await openMasterPrivateKey(privateKeyPem, passphrase, opts.pemName);
  const json = rsaPkcs1v15Decrypt(key, rsaBlobPlaintext, blobName);
  const keyConfig = parseKeyConfig(json.toString('utf8'), blobName);
  const noPassphrase = async (): Promise<string> => {
    throw new CryptoError('the key config inside the RSA blob is passphrase-protected, which upstream never writes', {
      file: blobName,
    });
  };
  const { key: raw } = await decryptKeyConfig(keyConfig, noPassphrase, blobName);
  return { crypt: CryptConfig.fromKey(raw), keyConfig };
}

/** A new RSA-4096 master key pair, the private half as AES-256-CBC encrypted PKCS#8 PEM. */
export function createMasterKeyPair(passphrase: string, bits = MASTER_KEY_BITS): Promise<{ publicPem: string; privatePem: string }> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'rsa',
      {
        modulusLength: bits,
        publicExponent: 65537,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase },
      },
      (err, publicPem, privatePem) => {
        if (err) reject(new CryptoError(`RSA key generation failed: ${err.message}`, { cause: err }));
        else resolve({ publicPem, privatePem });
      },
    );
  });
}

/** What `key show-master-pubkey` prints: modulus (uppercase hex), exponent, bits. */
export function masterPublicKeyInfo(pem: string, file = 'master public key'): { modulus: string; exponent: string; length: number } {
  let pub: KeyObject;
  try {
    pub = createPublicKey(pem);
  } catch (e) {
    throw new FormatError(`not a PEM public or private key (${e instanceof Error ? e.message : String(e)})`, { file, cause: e });
  }
  const jwk = pub.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA' || jwk.n === undefined || jwk.e === undefined) throw new UnsupportedError('not an RSA key', { file });
  const n = Buffer.from(jwk.n, 'base64url');
  const e = Buffer.from(jwk.e, 'base64url');
  return {
    modulus: n.toString('hex').replace(/^0+/, '').toUpperCase(),
    exponent: BigInt('0x' + (e.toString('hex') || '0')).toString(10),
    length: pub.asymmetricKeyDetails?.modulusLength ?? n.length * 8,
  };
}

/**
 * For reading commands given `--master-keyfile PEM`: reads the PEM file and recovers the backup
 * key from the decoded `rsa-encrypted.key.blob` payload. The passphrase defaults to the usual
 * sources (PBS_ENCRYPTION_PASSWORD… or a "Master Key Password: " prompt). The caller must then
 * compare `crypt.fingerprint` with the manifest's `unprotected.key-fingerprint`.
 */
export async function recoverKeyWithMasterKeyFile(
  rsaBlobPlaintext: Buffer,
  pemPath: string,
  passphrase?: () => Promise<string>,
  blobName = 'rsa-encrypted.key.blob',
): Promise<{ crypt: CryptConfig; keyConfig: KeyConfig }> {
  const pem = await readMasterKeyFile(pemPath);
  const ask = passphrase ?? (() => getPassphrase({ prompt: 'Master Key Password: ' }));
  return recoverKeyFromMasterKey(rsaBlobPlaintext, pem, ask, { blobName, pemName: pemPath });
}

/** Reads a PEM file (bounded; RSA-4096 PEMs are about 3 KiB). */
export async function readMasterKeyFile(path: string): Promise<string> {
  try {
    const st = await stat(path);
    if (st.size > 1024 * 1024) throw new FormatError(`not a PEM key file (${st.size} bytes)`, { file: path });
    return await readFile(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, path, 'cannot read master key file');
  }
}
