/**
 * One snapshot, opened for reading: the manifest is read and checked first (right snapshot,
 * key fingerprint, signature), then archives are opened by name. Every index is checked against
 * its manifest entry (csum, size) when opened; every blob's SHA-256 and size when read.
 */
import { createHash } from 'node:crypto';
import { ENCRYPTED_HEADER_SIZE, MAX_BLOB_SIZE, decodeBlob, parseBlobHeader } from '../blob/data-blob.js';
import { ChunkReader, DEFAULT_CACHE_BYTES } from '../chunks/chunk-reader.js';
import { formatFingerprint, type CryptConfig } from '../crypto/crypt-config.js';
import { CryptoError, FormatError, IntegrityError, NotFoundError, UsageError, isPbsfsError } from '../errors.js';
import { checkIndexAgainstManifest, type ChunkIndex } from '../index/chunk-index.js';
import type { DamageReport } from '../index/damage-report.js';
import { IndexReadAt } from '../index/index-read-at.js';
import { parseIndex } from '../index/parse-index.js';
import {
  MANIFEST_BLOB_NAME,
  MAX_MANIFEST_BYTES,
  checkManifestKey,
  decodeManifestBlob,
  findManifestFile,
  type Manifest,
  type ManifestFile,
  type ManifestKeyCheck,
} from '../manifest/manifest.js';
import { formatSnapshotRef, snapshotRelPath, type Namespace, type SnapshotRef } from '../store/backup-ref.js';
import type { ChunkStore } from '../store/chunk-store.js';
import type { Repository, SnapshotSource } from '../store/repository.js';

/** Index files are 32-40 bytes per chunk; 1 GiB covers a multi-terabyte archive at 64 KiB chunks. */
export const MAX_INDEX_BYTES = 1024 * 1024 * 1024;

export interface OpenSnapshotOptions {
  crypt?: CryptConfig;
  /** Chunk cache bound in bytes (default 128 MiB); used when the shared reader is created. */
  cacheBytes?: number;
  /**
   * Use this reader instead of the shared one; called with the opened snapshot's chunk store
   * (a reader must read from the store of its own snapshot).
   */
  chunkReader?: ChunkReader | ((store: ChunkStore) => ChunkReader);
  /**
   * `--allow-damaged`: unreadable chunks of every index opened from this snapshot read as zeros
   * and are recorded here (see IndexReadAt). Blobs and indexes themselves are never zero-filled.
   */
  damage?: DamageReport;
}

export interface OpenedIndex {
  index: ChunkIndex;
  readAt: IndexReadAt;
  entry: ManifestFile;
}

/** How a file-level archive is stored: one `.pxar.didx`, or a split `.mpxar.didx` + `.ppxar.didx`. */
export type PxarLayout =
  | { kind: 'single'; archive: string }
  | { kind: 'split'; meta: string; payload: string };

const readers = new WeakMap<ChunkStore, Map<string, ChunkReader>>();

/**
 * One ChunkReader (and so one cache) per chunk store and key: snapshots of a local datastore
 * share its chunk store and chunks (deduplication), so they share the cache too.
 */
export function sharedChunkReader(store: ChunkStore, crypt: CryptConfig | undefined, cacheBytes = DEFAULT_CACHE_BYTES): ChunkReader {
  let byKey = readers.get(store);
  if (!byKey) {
    byKey = new Map();
    readers.set(store, byKey);
  }
  const k = crypt ? crypt.fingerprint.toString('hex') : 'none';
  let r = byKey.get(k);
  if (!r) {
    r = new ChunkReader(store, { ...(crypt ? { crypt } : {}), cacheBytes });
    byKey.set(k, r);
  }
  return r;
}

/**
 * The manifest of an opened snapshot, checked to belong to it. A missing manifest means the
 * backup is still running or was aborted.
 */
export async function readManifest(source: SnapshotSource, ref: SnapshotRef): Promise<Manifest> {
  const manifestName = `${source.path}/${MANIFEST_BLOB_NAME}`;
  let raw: Buffer;
  try {
    raw = await source.readFile(MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES);
  } catch (e) {
    if (e instanceof NotFoundError) {
      throw new NotFoundError('snapshot is incomplete (no index.json.blob: backup still running or aborted)', {
        file: source.path,
        cause: e,
        errorCode: 'snapshot-incomplete',
      });
    }
    throw e;
  }
  const manifest = decodeManifestBlob(raw, manifestName);
  if (manifest.backupType !== ref.type || manifest.backupId !== ref.id || manifest.backupTime !== ref.time) {
    const says = formatSnapshotRef({ type: manifest.backupType, id: manifest.backupId, time: manifest.backupTime });
    throw new IntegrityError(`manifest belongs to snapshot ${says}, not to ${formatSnapshotRef(ref)}`, { file: manifestName });
  }
  return manifest;
}

/** Server file names an archive name may stand for, most specific first. */
function candidateNames(name: string): string[] {
  if (/\.(fidx|didx|blob)$/.test(name)) return [name];
  return [`${name}.fidx`, `${name}.didx`, `${name}.blob`];
}

/** `index.json` or `index.json.blob`: the manifest, which the manifest itself does not list. */
export function isManifestName(name: string): boolean {
  return name === MANIFEST_BLOB_NAME || `${name}.blob` === MANIFEST_BLOB_NAME;
}

export class Snapshot {
  /** Datastore-relative directory, e.g. `ns/dev/host/testhost/2024-06-05T11:00:00Z`. */
  readonly path: string;

  private constructor(
    readonly repository: Repository,
    /** Where this snapshot's files and chunks are read from (a reader session on a server). */
    readonly source: SnapshotSource,
    readonly ns: Namespace,
    readonly ref: SnapshotRef,
    readonly manifest: Manifest,
    readonly keyCheck: ManifestKeyCheck,
    readonly crypt: CryptConfig | undefined,
    readonly chunkReader: ChunkReader,
    readonly damage: DamageReport | undefined,
  ) {
    this.path = snapshotRelPath(ns, ref);
  }

  /** Reads and checks the manifest; fails fast on a wrong key, before any chunk is read. */
  static async open(repo: Repository, ns: Namespace, ref: SnapshotRef, opts: OpenSnapshotOptions = {}): Promise<Snapshot> {
    const source = await repo.openSnapshot(ns, ref);
    try {
      const manifest = await readManifest(source, ref);
      const manifestName = `${source.path}/${MANIFEST_BLOB_NAME}`;
      const keyCheck = checkManifestKey(manifest, opts.crypt, manifestName);
      const given = opts.chunkReader;
      const reader =
        given === undefined
          ? sharedChunkReader(source.chunkStore, opts.crypt, opts.cacheBytes)
          : typeof given === 'function'
            ? given(source.chunkStore)
            : given;
      return new Snapshot(repo, source, ns, ref, manifest, keyCheck, opts.crypt, reader, opts.damage);
    } catch (e) {
      await source.close();
      throw e;
    }
  }

  /** Ends the snapshot's source (a server's reader session); the snapshot is unusable after. */
  async close(): Promise<void> {
    await this.source.close();
  }

  /** The manifest as stored: the JSON text inside index.json.blob (`cat SNAPSHOT index.json`). */
  async manifestText(): Promise<Buffer> {
    const raw = await this.source.readFile(MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES);
    return decodeBlob(raw, { name: `${this.path}/${MANIFEST_BLOB_NAME}`, expectedCryptMode: 'none', maxSize: MAX_MANIFEST_BYTES, checkCrc: true });
  }

  /** `TYPE/ID/TIME` of this snapshot. */
  get refString(): string {
    return formatSnapshotRef(this.ref);
  }

  /** The manifest entry for an archive named with or without its server extension. */
  resolveFile(name: string): ManifestFile {
    for (const c of candidateNames(name)) {
      const f = findManifestFile(this.manifest, c);
      if (f) return f;
    }
    const have = this.manifest.files.map((f) => f.filename).join(', ');
    throw new NotFoundError(`snapshot has no archive ${JSON.stringify(name)} (it has: ${have || 'nothing'})`, {
      file: this.path,
      errorCode: 'archive-not-found',
    });
  }

  /**
   * Which files hold a file-level archive: `root.pxar` (or `root.pxar.didx`, `root.mpxar`, ...)
   * maps to `root.pxar.didx`, or to the split pair `root.mpxar.didx` + `root.ppxar.didx`.
   */
  pxarLayout(name: string): PxarLayout {
    const label = name.replace(/\.didx$/, '').replace(/\.(pxar|mpxar|ppxar)$/, '');
    const has = (f: string): boolean => findManifestFile(this.manifest, f) !== undefined;
    const single = `${label}.pxar.didx`;
    const meta = `${label}.mpxar.didx`;
    const payload = `${label}.ppxar.didx`;
    if (has(single)) return { kind: 'single', archive: single };
    if (has(meta) && has(payload)) return { kind: 'split', meta, payload };
    if (has(meta) || has(payload)) {
      throw new FormatError(`split archive ${label} is incomplete: needs both ${meta} and ${payload}`, { file: this.path });
    }
    if (isManifestName(name)) {
      throw new UsageError(`${MANIFEST_BLOB_NAME} is the snapshot's manifest, not a file archive: read it with \`pbsfs cat\``, {
        file: this.path,
        errorCode: 'not-a-file-archive',
      });
    }
    // Another kind of file by that name: say which command reads it.
    const other = candidateNames(name).map((c) => findManifestFile(this.manifest, c)).find((f) => f !== undefined);
    if (other !== undefined) {
      const what = other.filename.endsWith('.fidx') ? 'a disk image' : other.filename.endsWith('.blob') ? 'a blob' : 'not a pxar archive';
      throw new UsageError(`${other.filename} is ${what}, not a file archive: read it with \`pbsfs cat\` or \`pbsfs mount\``, {
        file: this.path,
        errorCode: 'not-a-file-archive',
      });
    }
    throw new NotFoundError(`snapshot has no file archive ${JSON.stringify(name)}`, { file: this.path, errorCode: 'archive-not-found' });
  }

  /** Fails (before any chunk is read) when an encrypted file is read without a key. */
  private requireKey(filename: string): void {
    if (this.crypt !== undefined) return;
    const fp = this.keyCheck.keyFingerprint;
    const file = `${this.path}/${filename}`;
    throw new CryptoError(
      fp !== undefined
        ? `${file} was encrypted with key ${formatFingerprint(fp, 'short')}; give --keyfile`
        : `${file} is encrypted; give --keyfile`,
    );
  }

  /** Parses an index and checks it against the manifest; no key needed, no chunk read. */
  async loadIndex(name: string): Promise<{ index: ChunkIndex; entry: ManifestFile }> {
    const entry = this.resolveFile(name);
    if (entry.filename.endsWith('.blob')) {
      throw new FormatError(`${entry.filename} is a blob, not an index archive`, { file: this.path });
    }
    const raw = await this.source.readFile(entry.filename, MAX_INDEX_BYTES);
    const index = parseIndex(raw, `${this.path}/${entry.filename}`);
    checkIndexAgainstManifest(index, entry);
    return { index, entry };
  }

  /** Opens an index archive for random access (`drive-scsi0.img`, `root.pxar.didx`, ...). */
  async openIndex(name: string): Promise<OpenedIndex> {
    const entry = this.resolveFile(name);
    if (entry.cryptMode === 'encrypt') this.requireKey(entry.filename);
    const { index } = await this.loadIndex(entry.filename);
    const readAt = new IndexReadAt(index, this.chunkReader, entry.cryptMode === 'encrypt' ? 'encrypt' : 'none', undefined, {
      ...(this.damage !== undefined ? { damage: this.damage } : {}),
      archive: entry.filename,
    });
    return { index, readAt, entry };
  }

  /** Raw bytes of a blob file, checked against the manifest (size and SHA-256). */
  async readRawBlob(name: string): Promise<{ raw: Buffer; entry: ManifestFile }> {
    const entry = this.resolveFile(name);
    if (!entry.filename.endsWith('.blob')) {
      throw new FormatError(`${entry.filename} is an index archive, not a blob`, { file: this.path });
    }
    const file = `${this.path}/${entry.filename}`;
    const raw = await this.source.readFile(entry.filename, MAX_BLOB_SIZE + ENCRYPTED_HEADER_SIZE);
    if (raw.length !== entry.size) {
      throw new IntegrityError(`blob is ${raw.length} bytes but the manifest says ${entry.size}`, { file });
    }
    const sum = createHash('sha256').update(raw).digest('hex');
    if (sum !== entry.csum) {
      throw new IntegrityError(`blob SHA-256 ${sum} does not match the manifest's ${entry.csum}`, { file });
    }
    return { raw, entry };
  }

  /**
   * A blob's decoded contents. As upstream does, the blob's own magic decides whether it is
   * encrypted (rsa-encrypted.key.blob is listed as `encrypt` but holds RSA ciphertext in a
   * plain blob, and must be readable without the key).
   */
  async readBlob(name: string): Promise<Buffer> {
    const { raw, entry } = await this.readRawBlob(name);
    const file = `${this.path}/${entry.filename}`;
    const header = parseBlobHeader(raw, file);
    if (header.encrypted) this.requireKey(entry.filename);
    try {
      return decodeBlob(raw, { name: file, ...(this.crypt ? { crypt: this.crypt } : {}), checkCrc: true });
    } catch (e) {
      if (isPbsfsError(e)) throw e;
      throw new FormatError(`cannot decode blob: ${(e as Error).message}`, { file, cause: e });
    }
  }
}
