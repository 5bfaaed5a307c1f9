/**
 * Typed access to vectors/datastore/expected.json and the vector key, for the data-layer tests.
 * Everything is read from the vector files (the holdout set has other values).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { parseSnapshotRef, type Namespace, type SnapshotRef } from '../../src/store/backup-ref.js';
import { VECTOR_PASSPHRASE, keysDir, vectorsDir } from './paths.js';

export interface ExpectedChunk {
  /** Present for fixed indexes only; otherwise the array position. */
  index?: number;
  start: number;
  end: number;
  digest: string;
  plaintext_sha256: string;
  blob_size: number;
  blob_magic: string;
  all_zero?: boolean;
}

export interface ExpectedFile {
  index_csum?: string;
  image_size?: number;
  image_sha256?: string;
  archive_size?: number;
  archive_sha256?: string;
  chunk_size?: number;
  chunks?: ExpectedChunk[];
  blob_sha256?: string;
  blob_size?: number;
  blob_magic?: string;
  plaintext_utf8?: string;
  manifest_plain_copy?: string;
}

export interface ExpectedSnapshot {
  path: string;
  crypt_mode: 'none' | 'encrypt' | 'sign-only';
  namespace?: string;
  files: Record<string, ExpectedFile>;
}

export const datastoreVectorsDir = join(vectorsDir, 'datastore');

export function expectedSnapshots(): ExpectedSnapshot[] {
  const d = JSON.parse(readFileSync(join(datastoreVectorsDir, 'expected.json'), 'utf8')) as { snapshots: ExpectedSnapshot[] };
  return d.snapshots;
}

/** Splits `ns/a/ns/b/TYPE/ID/TIME` into namespace and snapshot ref. */
export function splitSnapshotPath(path: string): { ns: Namespace; ref: SnapshotRef } {
  const parts = path.split('/');
  const ns: string[] = [];
  while (parts[0] === 'ns') {
    ns.push(parts[1]!);
    parts.splice(0, 2);
  }
  return { ns, ref: parseSnapshotRef(parts.join('/')) };
}

/** Data size and sha256 of an index archive, whichever names the vectors use. */
export function archiveFacts(f: ExpectedFile): { size: number; sha256: string } {
  return { size: (f.image_size ?? f.archive_size)!, sha256: (f.image_sha256 ?? f.archive_sha256)! };
}

let vectorKey: Promise<CryptConfig> | undefined;
/** The vector encryption key (key-scrypt.json with the set passphrase), loaded once per file. */
export function loadVectorKey(): Promise<CryptConfig> {
  vectorKey ??= loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE).then((k) => k.crypt);
  return vectorKey;
}

export async function loadOtherKey(): Promise<CryptConfig> {
  return (await loadKeyFile(join(keysDir, 'other-key-none.json'))).crypt;
}
