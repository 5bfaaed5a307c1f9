/**
 * The fixtures of the damaged-datastore matrix (test/damaged/damaged-datastore.test.ts, and the
 * mount row in damaged-mount.test.ts): the victim snapshot and archive picked from expected.json
 * (holdout-safe), the chunk that is damaged, and one Fixture per fault: how to damage a temp copy
 * of the vector datastore and which typed error, exit code and message it must produce.
 */
import { createHash } from 'node:crypto';
import { copyFile, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeBlob, encodeBlob } from '../../src/blob/data-blob.js';
import { formatFingerprint } from '../../src/crypto/crypt-config.js';
import { CryptoError, FormatError, IntegrityError, NotFoundError, PbsfsError } from '../../src/errors.js';
import { formatSnapshotRef } from '../../src/store/backup-ref.js';
import { crc32 } from '../../src/util/crc32.js';
import { expectedSnapshots, loadOtherKey, loadVectorKey, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { keysDir } from '../helpers/paths.js';

export const snaps = expectedSnapshots();
const pxarName = (files: Record<string, unknown>): string | undefined => Object.keys(files).find((n) => n.endsWith('.pxar.didx'));
/** The encrypted snapshot whose pxar archive has the most chunks. */
export const victim = snaps
  .filter((s) => s.crypt_mode === 'encrypt' && pxarName(s.files) !== undefined)
  .sort((a, b) => b.files[pxarName(b.files)!]!.chunks!.length - a.files[pxarName(a.files)!]!.chunks!.length)[0]!;
export const archive = pxarName(victim.files)!;
export const chunks = victim.files[archive]!.chunks!;
export const { ns, ref } = splitSnapshotPath(victim.path);
export const refText = formatSnapshotRef(ref);
export const nsArgs = ns.length > 0 ? ['--ns', ns.join('/')] : [];
/** A middle chunk whose digest occurs once in the index. */
export const damagedChunk = chunks.find((c, i) => i >= chunks.length >> 1 && chunks.filter((d) => d.digest === c.digest).length === 1) ?? chunks[0]!;
/** Another chunk with other content, to swap in. */
export const otherChunk = chunks.find((c) => c.digest !== damagedChunk.digest && c.plaintext_sha256 !== damagedChunk.plaintext_sha256)!;
/** Another snapshot with the same crypt mode, for the foreign-manifest fixture. */
export const foreign = snaps.find((s) => s.crypt_mode === victim.crypt_mode && s.path !== victim.path)!;

/** kdf-less copy of the vector key: same key, no scrypt cost per CLI run. */
export const plainKeyFile = join(keysDir, 'key-none.json');
export const WRONG_PASSPHRASE = 'not the passphrase 7f3a';

export const chunkPath = (root: string, digest: string): string => join(root, '.chunks', digest.slice(0, 4), digest);
export const chunkRel = (digest: string): string => `.chunks/${digest.slice(0, 4)}/${digest}`;
export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function patchChunk(root: string, edit: (raw: Buffer) => Buffer | void): Promise<void> {
  const p = chunkPath(root, damagedChunk.digest);
  const raw = await readFile(p);
  await writeFile(p, edit(raw) ?? raw);
}

async function rewriteManifest(root: string, edit: (text: string) => string): Promise<void> {
  const p = join(root, victim.path, 'index.json.blob');
  const text = decodeBlob(await readFile(p), { name: p }).toString('utf8');
  await writeFile(p, encodeBlob(Buffer.from(edit(text)), { compress: true }));
}

export interface Fixture {
  /** What is damaged. */
  name: string;
  /** The typed error it must produce. */
  error: new (problem: string) => PbsfsError;
  exit: number;
  /** Matches the error message (library and CLI). */
  message: RegExp;
  /** Substrings every message must contain (the damaged file, and what else identifies it). */
  names: () => string[];
  damage(root: string): Promise<void>;
  /** Key file and passphrase (default: the vector key, no passphrase needed). */
  keyFile?: string;
  passphrase?: string;
  /** Only the manifest/key is involved: the error comes before any archive byte. */
  early?: boolean;
}

let vectorFp = '';
let otherFp = '';

/** Sets the key fingerprints the wrong-key fixture's messages name; call once before using FIXTURES. */
export async function loadFingerprints(): Promise<void> {
  vectorFp = formatFingerprint((await loadVectorKey()).fingerprint, 'short');
  otherFp = formatFingerprint((await loadOtherKey()).fingerprint, 'short');
}

export const FIXTURES: Fixture[] = [
  {
    name: 'missing chunk',
    error: NotFoundError,
    exit: 3, // chunk-missing: damaged data, not a name the user got wrong
    message: /no such file|missing|not found/i,
    names: () => [archive, damagedChunk.digest, chunkRel(damagedChunk.digest)],
    damage: (root) => rm(chunkPath(root, damagedChunk.digest)),
  },
  {
    name: 'bit flip in the chunk ciphertext (CRC mismatch)',
    error: IntegrityError,
    exit: 3,
    message: /CRC/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[raw.length - 1]! ^= 0x01)),
  },
  {
    name: 'bit flip in the chunk ciphertext with a matching CRC (GCM tag mismatch)',
    error: CryptoError,
    exit: 2,
    message: /GCM|decrypt/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) =>
      patchChunk(root, (raw) => {
        raw[raw.length >> 1]! ^= 0x40;
        raw.writeUInt32LE(crc32(raw.subarray(44)), 8);
      }),
  },
  {
    name: 'bit flip in the chunk GCM tag',
    error: CryptoError,
    exit: 2,
    message: /GCM|decrypt/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[12 + 16 + 3]! ^= 0x01)),
  },
  {
    name: 'bit flip in the chunk IV',
    error: CryptoError,
    exit: 2,
    message: /GCM|decrypt/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[12 + 5]! ^= 0x80)),
  },
  {
    name: 'bit flip in the chunk CRC field',
    error: IntegrityError,
    exit: 3,
    message: /CRC/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[9]! ^= 0x10)),
  },
  {
    name: 'bit flip in the chunk header magic',
    error: FormatError,
    exit: 3,
    message: /magic/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[0]! ^= 0x01)),
  },
  {
    name: 'chunk swapped for another valid chunk (digest mismatch)',
    error: IntegrityError,
    exit: 3,
    message: /digest mismatch|decodes to .*expected|expected .* bytes/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => copyFile(chunkPath(root, otherChunk.digest), chunkPath(root, damagedChunk.digest)),
  },
  {
    name: 'unencrypted chunk inside an encrypted index (crypt mode mismatch)',
    error: IntegrityError,
    exit: 3,
    message: /crypt mode/,
    names: () => [archive, damagedChunk.digest],
    damage: async (root) => {
      const key = await loadVectorKey();
      await patchChunk(root, (raw) => encodeBlob(decodeBlob(raw, { name: 'chunk', crypt: key }), { compress: true }));
    },
  },
  {
    name: 'truncated index (format error)',
    error: FormatError,
    exit: 3,
    message: /truncat|size|short|entries|length|multiple/i,
    names: () => [`${victim.path}/${archive}`],
    damage: async (root) => {
      const p = join(root, victim.path, archive);
      await truncate(p, (await readFile(p)).length - 7);
    },
    early: true,
  },
  {
    name: 'index checksum mismatch',
    error: IntegrityError,
    exit: 3,
    message: /csum|checksum/i,
    names: () => [`${victim.path}/${archive}`, victim.files[archive]!.index_csum!],
    damage: async (root) => {
      const p = join(root, victim.path, archive);
      const raw = await readFile(p);
      raw[4096 + 8 + 5]! ^= 0xff; // inside the first entry's digest
      await writeFile(p, raw);
    },
    early: true,
  },
  {
    name: 'tampered manifest signature',
    error: IntegrityError,
    exit: 3,
    message: /signature/,
    names: () => [`${victim.path}/index.json.blob`],
    damage: (root) =>
      rewriteManifest(root, (t) => t.replace(/"signature": "(.)/, (_m, c: string) => `"signature": "${c === '0' ? '1' : '0'}`)),
    early: true,
  },
  {
    name: 'manifest of another snapshot',
    error: IntegrityError,
    exit: 3,
    message: /snapshot|manifest/,
    names: () => [victim.path, foreign.path],
    damage: (root) => copyFile(join(root, foreign.path, 'index.json.blob'), join(root, victim.path, 'index.json.blob')),
    early: true,
  },
  {
    name: 'snapshot directory without manifest',
    error: NotFoundError,
    exit: 4,
    message: /manifest|index\.json\.blob|not found|no such/i,
    names: () => ['index.json.blob'],
    damage: (root) => rm(join(root, victim.path, 'index.json.blob')),
    early: true,
  },
  {
    name: 'wrong key',
    error: CryptoError,
    exit: 2,
    message: /wrong key/,
    names: () => [vectorFp, otherFp],
    damage: async () => {},
    keyFile: join(keysDir, 'other-key-none.json'),
    early: true,
  },
  {
    name: 'wrong passphrase',
    error: CryptoError,
    exit: 2,
    message: /decrypt the key|passphrase/,
    names: () => [join(keysDir, 'key-pbkdf2.json')],
    damage: async () => {},
    keyFile: join(keysDir, 'key-pbkdf2.json'),
    passphrase: WRONG_PASSPHRASE,
    early: true,
  },
];
