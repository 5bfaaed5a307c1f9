/**
 * Verification of snapshots, like the server's verify job plus what only a key holder can do:
 * - manifest: right snapshot, key fingerprint, signature (with a key);
 * - every index: csum and size against the manifest;
 * - every referenced chunk: present, crypt mode as the index demands, CRC32; with a key (or for
 *   unencrypted chunks) also GCM tag, digest and exact size;
 * - every blob: size and SHA-256 against the manifest, then decoded when possible.
 * Chunks shared by several indexes or snapshots are checked once (the `seen` map).
 * Nothing is cached or written: chunks are fetched and dropped.
 */
import { decodeBlob, parseBlobHeader, verifyBlobCrc, type BlobCryptMode } from '../blob/data-blob.js';
import { ChunkReader, inlineChunkDecoder, type ChunkDecoder } from '../chunks/chunk-reader.js';
import type { CryptConfig } from '../crypto/crypt-config.js';
import { IntegrityError, isPbsfsError } from '../errors.js';
import type { ChunkIndex } from '../index/chunk-index.js';
import { snapshotRelPath, type Namespace, type SnapshotRef } from '../store/backup-ref.js';
import { chunkRelPath } from '../store/chunk-store.js';
import type { ChunkStore } from '../store/chunk-store.js';
import type { Repository } from '../store/repository.js';
import { Snapshot } from './snapshot.js';

export interface FileVerifyResult {
  filename: string;
  ok: boolean;
  /** Chunks the index references (0 for blobs). */
  chunks: number;
  /** Chunks verified now (the rest were verified earlier in this run). */
  chunksChecked: number;
  /** Chunks that failed. */
  badChunks: number;
  /** Encrypted chunks/blobs checked only by CRC and crypt mode (no key). */
  notDecrypted: number;
  /** Error messages (at most MAX_ERRORS_PER_FILE, each naming the file or chunk). */
  errors: string[];
}

export interface SnapshotVerifyResult {
  /** `[ns/...]TYPE/ID/TIME` datastore path of the snapshot. */
  snapshot: string;
  ok: boolean;
  signatureVerified: boolean;
  /** Manifest-level failure (the files were then not checked). */
  error?: string;
  files: FileVerifyResult[];
}

export interface VerifyOptions {
  crypt?: CryptConfig;
  /** Chunk verdicts shared across calls: key -> error message or null when sound. */
  seen?: Map<string, string | null>;
  /** Called after each chunk (checked or already seen). */
  onChunk?: () => void;
  /** Chunk decoder (e.g. a WorkerPoolDecoder's); default in-process. */
  decoder?: ChunkDecoder;
  /** Chunks verified concurrently (I/O overlap, worker threads). Default 4. */
  concurrency?: number;
}

const MAX_ERRORS_PER_FILE = 10;

function uncachedReader(store: ChunkStore): ChunkReader {
  return new ChunkReader(store, { cacheBytes: 0 });
}

/** Verifies one chunk's raw blob; returns whether it could be decrypted. Throws on any fault. */
async function verifyChunk(
  store: ChunkStore,
  digest: Buffer,
  expectedSize: number,
  mode: BlobCryptMode,
  crypt: CryptConfig | undefined,
  decoder: ChunkDecoder,
): Promise<boolean> {
  const raw = await store.get(digest);
  const name = chunkRelPath(digest);
  const header = parseBlobHeader(raw, name);
  if (header.encrypted && crypt === undefined) {
    if (mode !== 'encrypt') {
      throw new IntegrityError('crypt mode mismatch: expected an unencrypted blob but found an encrypted one', { file: name });
    }
    verifyBlobCrc(raw, name, header);
    return false;
  }
  // Full decode with every check (CRC, mode, tag, size, digest); the plaintext is dropped.
  await decoder(raw, { name, digest, expectedSize, cryptMode: mode, ...(crypt ? { crypt } : {}) });
  return true;
}

async function verifyIndexChunks(
  store: ChunkStore,
  index: ChunkIndex,
  mode: BlobCryptMode,
  result: FileVerifyResult,
  opts: VerifyOptions,
): Promise<void> {
  const seen = opts.seen ?? new Map<string, string | null>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < index.count) {
      const i = next++;
      const digest = index.digest(i);
      const { start, end } = index.chunkRange(i);
      const key = `${mode}:${digest.toString('hex')}:${end - start}`;
      let verdict = seen.get(key);
      if (verdict === undefined) {
        try {
          const decrypted = await verifyChunk(store, digest, end - start, mode, opts.crypt, opts.decoder ?? inlineChunkDecoder);
          if (!decrypted) result.notDecrypted++;
          verdict = null;
        } catch (e) {
          if (!isPbsfsError(e)) throw e;
          verdict = e.message;
        }
        seen.set(key, verdict);
        result.chunksChecked++;
      }
      if (verdict !== null) {
        result.badChunks++;
        if (result.errors.length < MAX_ERRORS_PER_FILE) {
          result.errors.push(`${index.name}: chunk ${i} (digest ${digest.toString('hex')}): ${verdict}`);
        }
      }
      opts.onChunk?.();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
}

/** Verifies one snapshot. Never throws for damaged data: faults are in the result. */
export async function verifySnapshot(
  ds: Repository,
  ns: Namespace,
  ref: SnapshotRef,
  opts: VerifyOptions = {},
): Promise<SnapshotVerifyResult> {
  const path = snapshotRelPath(ns, ref);
  let snap: Snapshot;
  try {
    // Verification reads chunks itself, uncached: it must not evict the shared cache.
    snap = await Snapshot.open(ds, ns, ref, { ...(opts.crypt ? { crypt: opts.crypt } : {}), chunkReader: uncachedReader });
  } catch (e) {
    if (!isPbsfsError(e)) throw e;
    return { snapshot: path, ok: false, signatureVerified: false, error: e.message, files: [] };
  }
  try {
    return await verifyOpenedSnapshot(snap, path, opts);
  } finally {
    await snap.close();
  }
}

async function verifyOpenedSnapshot(snap: Snapshot, path: string, opts: VerifyOptions): Promise<SnapshotVerifyResult> {
  const files: FileVerifyResult[] = [];
  for (const entry of snap.manifest.files) {
    const r: FileVerifyResult = {
      filename: entry.filename,
      ok: true,
      chunks: 0,
      chunksChecked: 0,
      badChunks: 0,
      notDecrypted: 0,
      errors: [],
    };
    files.push(r);
    try {
      if (entry.filename.endsWith('.blob')) {
        const { raw } = await snap.readRawBlob(entry.filename);
        const name = `${path}/${entry.filename}`;
        const header = parseBlobHeader(raw, name);
        if (header.encrypted && opts.crypt === undefined) {
          verifyBlobCrc(raw, name, header);
          r.notDecrypted++;
        } else {
          decodeBlob(raw, { name, ...(opts.crypt ? { crypt: opts.crypt } : {}), checkCrc: true });
        }
      } else {
        const { index } = await snap.loadIndex(entry.filename);
        r.chunks = index.count;
        await verifyIndexChunks(snap.source.chunkStore, index, entry.cryptMode === 'encrypt' ? 'encrypt' : 'none', r, opts);
      }
    } catch (e) {
      if (!isPbsfsError(e)) throw e;
      r.errors.push(e.message);
    }
    r.ok = r.errors.length === 0 && r.badChunks === 0;
  }
  return {
    snapshot: path,
    ok: files.every((f) => f.ok),
    signatureVerified: snap.keyCheck.signatureVerified,
    files,
  };
}

/** Total chunk references of a snapshot's indexes (for a progress bar); 0 when unreadable. */
export async function countSnapshotChunks(ds: Repository, ns: Namespace, ref: SnapshotRef): Promise<number> {
  try {
    const snap = await Snapshot.open(ds, ns, ref, { chunkReader: uncachedReader });
    try {
      let n = 0;
      for (const f of snap.manifest.files) {
        if (f.filename.endsWith('.blob')) continue;
        try {
          n += (await snap.loadIndex(f.filename)).index.count;
        } catch {
          // counted as 0; verifySnapshot reports the fault
        }
      }
      return n;
    } finally {
      await snap.close();
    }
  } catch {
    return 0;
  }
}

