/**
 * Shared plumbing of the snapshot commands (snapshots, files, cat, verify): the datastore from
 * --repository, the namespace from --ns, the key from --keyfile or --master-keyfile, and
 * snapshot opening.
 */
import { ChunkReader, type ChunkDecoder } from '../chunks/chunk-reader.js';
import type { ChunkStore } from '../store/chunk-store.js';
import type { CryptConfig } from '../crypto/crypt-config.js';
import { recoverKeyWithMasterKeyFile } from '../crypto/master-key.js';
import { getPassphrase } from '../crypto/passphrase.js';
import { NotFoundError, UnsupportedError } from '../errors.js';
import type { DamageReport } from '../index/damage-report.js';
import { findManifestFile } from '../manifest/manifest.js';
import { Snapshot } from '../snapshot/snapshot.js';
import { parseNamespace, type Namespace, type SnapshotRef } from '../store/backup-ref.js';
import type { Repository } from '../store/repository.js';
import type { GlobalOptions } from './context.js';
import { existingDefaultKey, loadKeyFileArg } from './key-file-arg.js';
import { openRepositoryArg } from './open-repositories.js';
import { selectSnapshot } from './snapshot-select.js';

export const RSA_KEY_BLOB = 'rsa-encrypted.key.blob';

/** The repository of --repository (a datastore directory, a PBS server or a bucket). */
export async function openDatastore(g: GlobalOptions): Promise<Repository> {
  return openRepositoryArg(g);
}

export function namespaceOf(g: GlobalOptions): Namespace {
  return parseNamespace(g.ns ?? '');
}

/**
 * The key from --keyfile (passphrase from the PBS_ENCRYPTION_PASSWORD* sources or a prompt).
 * --master-keyfile needs a snapshot to recover from: use KeySource.forSnapshot for that.
 */
export async function loadCrypt(g: GlobalOptions): Promise<CryptConfig | undefined> {
  if (g.masterKeyfile !== undefined) {
    throw new UnsupportedError('--master-keyfile is not supported by this command; recover the key first and use --keyfile');
  }
  const file = g.keyfile ?? existingDefaultKey();
  if (file === undefined) return undefined;
  return (await loadKeyFileArg(file)).crypt;
}

/**
 * Where the key comes from. --keyfile gives one key for everything; --master-keyfile recovers
 * each snapshot's key from its rsa-encrypted.key.blob (the PEM passphrase is asked once).
 * Without either, the default key file (key-file-arg.ts) is used for snapshots that have
 * encrypted or signed files, so reading a plain snapshot never asks for a passphrase.
 */
export class KeySource {
  private fileKey: Promise<CryptConfig> | undefined;
  private masterPass: Promise<string> | undefined;
  private readonly recovered = new Map<string, Promise<CryptConfig>>();

  constructor(private readonly g: GlobalOptions) {}

  private keyFromFile(file: string): Promise<CryptConfig> {
    this.fileKey ??= loadKeyFileArg(file).then((k) => k.crypt);
    return this.fileKey;
  }

  get given(): boolean {
    return this.g.keyfile !== undefined || this.g.masterKeyfile !== undefined || this.defaultKey !== undefined;
  }

  private readonly defaultKey = existingDefaultKey();

  /**
   * The key for one snapshot, or undefined when none was given. With --master-keyfile, a
   * snapshot without an RSA key copy is an error if it has encrypted files, unless `lenient`
   * (verify then checks what it can without a key).
   */
  async forSnapshot(ds: Repository, ns: Namespace, ref: SnapshotRef, lenient = false): Promise<CryptConfig | undefined> {
    if (this.g.keyfile !== undefined) return this.keyFromFile(this.g.keyfile);
    const pem = this.g.masterKeyfile;
    if (pem === undefined) {
      if (this.defaultKey === undefined) return undefined;
      const plain = await Snapshot.open(ds, ns, ref, { cacheBytes: 0 });
      const encrypted = plain.manifest.files.some((f) => f.cryptMode !== 'none');
      await plain.close();
      return encrypted ? this.keyFromFile(this.defaultKey) : undefined;
    }
    // The manifest (read without a key) says whether there is an RSA copy of the key.
    const plain = await Snapshot.open(ds, ns, ref, { cacheBytes: 0 });
    try {
      return await this.recover(plain, pem, lenient);
    } finally {
      await plain.close();
    }
  }

  private async recover(plain: Snapshot, pem: string, lenient: boolean): Promise<CryptConfig | undefined> {
    const entry = findManifestFile(plain.manifest, RSA_KEY_BLOB);
    if (entry === undefined) {
      if (!lenient && plain.manifest.files.some((f) => f.cryptMode === 'encrypt')) {
        throw new NotFoundError(`snapshot has no ${RSA_KEY_BLOB}: its key cannot be recovered with --master-keyfile`, {
          file: plain.path,
        });
      }
      return undefined;
    }
    let p = this.recovered.get(entry.csum);
    if (!p) {
      const blob = await plain.readBlob(RSA_KEY_BLOB);
      const ask = (): Promise<string> => (this.masterPass ??= getPassphrase({ prompt: 'Master Key Password: ' }));
      p = recoverKeyWithMasterKeyFile(blob, pem, ask, `${plain.path}/${RSA_KEY_BLOB}`).then((r) => r.crypt);
      this.recovered.set(entry.csum, p);
    }
    return p;
  }
}

export interface OpenedSnapshotArgs {
  ds: Repository;
  ns: Namespace;
  ref: SnapshotRef;
  crypt: CryptConfig | undefined;
  snapshot: Snapshot;
}

/** Parses SNAPSHOT, gets the key, opens the datastore and the snapshot (manifest checked). */
export async function openSnapshotArg(
  g: GlobalOptions,
  snapshotArg: string,
  opts: { cacheBytes?: number; decoder?: ChunkDecoder; damage?: DamageReport } = {},
): Promise<OpenedSnapshotArgs> {
  const ds = await openDatastore(g);
  const { ns, ref } = await selectSnapshot(ds, namespaceOf(g), snapshotArg);
  const crypt = await new KeySource(g).forSnapshot(ds, ns, ref);
  const { decoder, ...rest } = opts;
  // A custom decoder (e.g. a worker pool) needs a reader of its own.
  const chunkReader = decoder
    ? (store: ChunkStore): ChunkReader =>
        new ChunkReader(store, { ...(crypt ? { crypt } : {}), decoder, ...(rest.cacheBytes !== undefined ? { cacheBytes: rest.cacheBytes } : {}) })
    : undefined;
  const snapshot = await Snapshot.open(ds, ns, ref, { ...(crypt ? { crypt } : {}), ...rest, ...(chunkReader ? { chunkReader } : {}) });
  return { ds, ns, ref, crypt, snapshot };
}

/** `root.pxar.didx` -> `root.pxar` (how upstream shows archive names). */
export function archiveLabel(filename: string): string {
  return filename.replace(/\.(fidx|didx|blob)$/, '');
}
