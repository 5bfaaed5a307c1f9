/**
 * The snapshot manifest, `index.json.blob` (spec 8): which files a snapshot has, their sizes and
 * checksums, and (with a key) an HMAC signature over all of it.
 *
 * Parsing distrusts everything: types, file names (safe characters and a known extension, so a
 * name can be joined to a path), sizes, hex strings. The key check runs before any chunk is
 * read: a wrong key fails at once, naming both fingerprints.
 */
import { timingSafeEqual } from 'node:crypto';
import { decodeBlob } from '../blob/data-blob.js';
import { formatFingerprint, parseFingerprint, type CryptConfig } from '../crypto/crypt-config.js';
import { CryptoError, FormatError, IntegrityError, isPbsfsError } from '../errors.js';
import { isBackupType, isValidArchiveFileName, isValidBackupId, type BackupType } from '../store/backup-ref.js';
import { canonicalJson, prettyJson } from './json-text.js';

export type CryptMode = 'none' | 'encrypt' | 'sign-only';
export const MANIFEST_BLOB_NAME = 'index.json.blob';
/** Manifests are a few hundred bytes per file; this bounds a hostile one. */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const MAX_FILES = 65536;

export interface ManifestFile {
  filename: string;
  cryptMode: CryptMode;
  /** .blob: encoded file length; .fidx/.didx: archive data size. */
  size: number;
  /** Lowercase hex SHA-256 (.blob) or index_csum (.fidx/.didx). */
  csum: string;
  /** Unknown fields, kept because they are covered by the signature. */
  extra?: Record<string, unknown>;
}

export interface Manifest {
  backupType: BackupType;
  backupId: string;
  backupTime: number;
  files: ManifestFile[];
  /** Lowercase hex HMAC-SHA256, or null when unsigned. */
  signature: string | null;
  /** Not covered by the signature (key-fingerprint, verify_state, notes, ...). */
  unprotected: Record<string, unknown>;
  /** Unknown top-level fields (signed). */
  extra?: Record<string, unknown>;
  /** The JSON value as parsed, when this manifest was read from a file (what gets verified). */
  parsed?: Record<string, unknown>;
}

const CRYPT_MODES: readonly CryptMode[] = ['none', 'encrypt', 'sign-only'];
const HEX64_RE = /^[0-9a-fA-F]{64}$/;
const KNOWN_TOP = new Set(['backup-type', 'backup-id', 'backup-time', 'files', 'signature', 'unprotected']);
const KNOWN_FILE = new Set(['filename', 'crypt-mode', 'size', 'csum']);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function extraFields(o: Record<string, unknown>, known: Set<string>): Record<string, unknown> | undefined {
  const extra: Record<string, unknown> = {};
  let any = false;
  for (const k of Object.keys(o)) {
    if (!known.has(k)) {
      extra[k] = o[k];
      any = true;
    }
  }
  return any ? extra : undefined;
}

/** Parses and validates manifest JSON text. `name` names the file in errors. */
export function parseManifest(text: string, name: string): Manifest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`manifest is not valid JSON (${(e as Error).message})`, { file: name, cause: e });
  }
  const bad = (problem: string): never => {
    throw new FormatError(`manifest ${problem}`, { file: name });
  };
  if (!isObject(v)) return bad('is not a JSON object');
  const type = v['backup-type'];
  if (typeof type !== 'string' || !isBackupType(type)) bad(`has a bad backup-type ${JSON.stringify(type)}`);
  const id = v['backup-id'];
  if (typeof id !== 'string' || !isValidBackupId(id)) bad(`has a bad backup-id ${JSON.stringify(id)}`);
  const time = v['backup-time'];
  if (typeof time !== 'number' || !Number.isSafeInteger(time) || time < 1) bad(`has a bad backup-time ${JSON.stringify(time)}`);
  const filesV = v['files'];
  if (!Array.isArray(filesV)) return bad('has no files array');
  if (filesV.length > MAX_FILES) bad(`lists ${filesV.length} files (limit ${MAX_FILES})`);
  const seen = new Set<string>();
  const files: ManifestFile[] = filesV.map((f: unknown, i: number): ManifestFile => {
    if (!isObject(f)) return bad(`files[${i}] is not an object`);
    const filename = f['filename'];
    if (typeof filename !== 'string' || !isValidArchiveFileName(filename)) {
      return bad(`files[${i}] has a bad filename ${JSON.stringify(filename)?.slice(0, 100)} (need a safe name ending in .blob, .fidx or .didx)`);
    }
    if (seen.has(filename)) bad(`lists ${filename} twice`);
    seen.add(filename);
    const cm = f['crypt-mode'] ?? 'none'; // absent in pre-0.8 backups
    if (typeof cm !== 'string' || !(CRYPT_MODES as readonly string[]).includes(cm)) {
      bad(`entry ${filename} has a bad crypt-mode ${JSON.stringify(cm)}`);
    }
    const size = f['size'];
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) bad(`entry ${filename} has a bad size ${JSON.stringify(size)}`);
    const csum = f['csum'];
    if (typeof csum !== 'string' || !HEX64_RE.test(csum)) bad(`entry ${filename} has a bad csum ${JSON.stringify(csum)?.slice(0, 100)}`);
    const extra = extraFields(f, KNOWN_FILE);
    return {
      filename,
      cryptMode: cm as CryptMode,
      size: size as number,
      csum: (csum as string).toLowerCase(),
      ...(extra ? { extra } : {}),
    };
  });
  const sig = v['signature'] ?? null;
  if (sig !== null && (typeof sig !== 'string' || !HEX64_RE.test(sig))) bad(`has a bad signature ${JSON.stringify(sig)?.slice(0, 100)}`);
  const unprotected = v['unprotected'] ?? {};
  if (!isObject(unprotected)) return bad('has an unprotected field that is not an object');
  const extra = extraFields(v, KNOWN_TOP);
  const m: Manifest = {
    backupType: type as BackupType,
    backupId: id as string,
    backupTime: time as number,
    files,
    signature: sig === null ? null : (sig as string).toLowerCase(),
    unprotected,
    ...(extra ? { extra } : {}),
    parsed: v,
  };
  manifestKeyFingerprint(m, name); // validates the field early
  return m;
}

/** Decodes `index.json.blob` bytes (never encrypted) and parses the manifest. */
export function decodeManifestBlob(raw: Buffer, name: string): Manifest {
  if (raw.length > MAX_MANIFEST_BYTES) {
    throw new FormatError(`manifest blob is ${raw.length} bytes, more than the ${MAX_MANIFEST_BYTES}-byte limit`, { file: name });
  }
  const plain = decodeBlob(raw, { name, expectedCryptMode: 'none', maxSize: MAX_MANIFEST_BYTES, checkCrc: true });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(plain);
  } catch (e) {
    throw new FormatError('manifest is not valid UTF-8', { file: name, cause: e });
  }
  return parseManifest(text, name);
}

/** The JSON value of a manifest (sorted-key output is done by the printers). */
export function manifestToJson(m: Manifest): Record<string, unknown> {
  return {
    ...(m.extra ?? {}),
    'backup-type': m.backupType,
    'backup-id': m.backupId,
    'backup-time': m.backupTime,
    files: m.files.map((f) => ({
      ...(f.extra ?? {}),
      filename: f.filename,
      'crypt-mode': f.cryptMode,
      size: f.size,
      csum: f.csum,
    })),
    signature: m.signature,
    unprotected: m.unprotected,
  };
}

/** Manifest text exactly as upstream writes it (spec 8.3). */
export function serializeManifest(m: Manifest): string {
  return prettyJson(manifestToJson(m));
}

/** The bytes the signature covers: canonical JSON without `signature` and `unprotected`. */
export function signedManifestText(value: Record<string, unknown>): string {
  const { signature: _s, unprotected: _u, ...signed } = value;
  return canonicalJson(signed, 'manifest');
}

/** HMAC-SHA256(id_key, canonical signed part), hex. Uses the parsed value when there is one. */
export function computeManifestSignature(m: Manifest, crypt: CryptConfig): string {
  return crypt.computeAuthTag(Buffer.from(signedManifestText(m.parsed ?? manifestToJson(m)), 'utf8')).toString('hex');
}

/** A signed copy: `signature` set and `unprotected.key-fingerprint` = the key's full fingerprint. */
export function signManifest(m: Manifest, crypt: CryptConfig): Manifest {
  const { parsed: _p, ...rest } = m;
  const unsigned: Manifest = { ...rest, signature: null };
  return {
    ...unsigned,
    signature: computeManifestSignature(unsigned, crypt),
    unprotected: { ...m.unprotected, 'key-fingerprint': formatFingerprint(crypt.fingerprint, 'full') },
  };
}

/** `unprotected.key-fingerprint`, if present. */
export function manifestKeyFingerprint(m: Manifest, name = MANIFEST_BLOB_NAME): Buffer | undefined {
  const fp = m.unprotected['key-fingerprint'];
  if (fp === undefined || fp === null) return undefined;
  if (typeof fp !== 'string') throw new FormatError('manifest key-fingerprint is not a string', { file: name });
  try {
    return parseFingerprint(fp);
  } catch (e) {
    if (isPbsfsError(e)) throw new FormatError(`manifest ${e.message}`, { file: name, cause: e });
    throw e;
  }
}

export interface ManifestKeyCheck {
  /** True when a signature was present and checked with the given key. */
  signatureVerified: boolean;
  /** The fingerprint the manifest names, if any. */
  keyFingerprint: Buffer | undefined;
}

/**
 * The key policy, applied before any chunk is read (spec 8.4):
 * - key given, manifest names another key: CryptoError with both short fingerprints;
 * - key given, manifest signed: the HMAC must match (IntegrityError otherwise);
 * - key given, manifest unsigned: accepted;
 * - no key: accepted here; reading an encrypted file later fails (see requireKeyFor).
 */
export function checkManifestKey(m: Manifest, crypt: CryptConfig | undefined, name: string): ManifestKeyCheck {
  const fp = manifestKeyFingerprint(m, name);
  if (crypt === undefined) return { signatureVerified: false, keyFingerprint: fp };
  if (fp !== undefined && !fp.equals(crypt.fingerprint)) {
    throw new CryptoError(
      `wrong key: this snapshot was made with key ${formatFingerprint(fp, 'short')}, but the given key is ${crypt.shortFingerprint()}`,
      { file: name },
    );
  }
  if (m.signature === null) return { signatureVerified: false, keyFingerprint: fp };
  const expected = Buffer.from(computeManifestSignature(m, crypt), 'hex');
  const actual = Buffer.from(m.signature, 'hex');
  if (!timingSafeEqual(expected, actual)) {
    throw new IntegrityError(
      fp !== undefined
        ? 'manifest signature mismatch: the manifest was modified after it was signed'
        : `manifest signature mismatch: the manifest was modified, or signed with a key other than ${crypt.shortFingerprint()}`,
      { file: name },
    );
  }
  return { signatureVerified: true, keyFingerprint: fp };
}

/** The manifest entry for a server file name, if listed. */
export function findManifestFile(m: Manifest, filename: string): ManifestFile | undefined {
  return m.files.find((f) => f.filename === filename);
}
