/**
 * One backup run, as a library call: a source directory (pxar, unified or split), images and
 * blobs go into one new snapshot. Used by `pbsfs backup`, `pbsfs demo`, tests and the bench.
 */
import { encodeBlob } from '../blob/data-blob.js';
import { CatalogWriter } from '../catalog/catalog-writer.js';
import { UsageError } from '../errors.js';
import type { Manifest } from '../manifest/manifest.js';
import { ALLOWED_CHUNK_SIZES, DEFAULT_CHUNK_SIZE } from './chunker.js';
import type { ChunkWriteStats } from './chunk-store-writer.js';
import { dirKey, TreeWalker, type WalkStats } from './fs-walk.js';
import { PxarEncoder } from './pxar-encoder.js';
import { IMAGE_CHUNK_SIZE, SnapshotWriter, type SnapshotWriterOptions, type WrittenFile } from './snapshot-writer.js';

export interface NamedSource {
  /** Archive label without extension (`root`, `drive-scsi0`, `qemu-server`). */
  name: string;
  path: string;
}

export interface BackupOptions extends Omit<SnapshotWriterOptions, 'onChunk'> {
  /** Directory to archive as `<archiveName>.pxar.didx` (or the split pair). */
  source?: string;
  archiveName?: string;
  split?: boolean;
  /** Average dynamic chunk size and fixed image chunk size, in bytes (default 4 MiB). */
  chunkSize?: number;
  images?: NamedSource[];
  blobs?: NamedSource[];
  /**
   * RSA ciphertext of the key config for the master key (crypto/master-key.ts
   * encryptKeyForMaster); stored last as an uncompressed `rsa-encrypted.key.blob`, like upstream.
   */
  masterKeyCiphertext?: Uint8Array;
  /** Record xattrs/ACLs/fcaps/flags (default true; needs python3 or getfattr). */
  xattrs?: boolean;
  /** Descend into other mounted filesystems (default false: mount points stay empty). */
  allFileSystems?: boolean;
  /** Write `catalog.pcat1.didx` for a unified archive, as upstream does (default true). */
  catalog?: boolean;
  onWarning?: (msg: string) => void;
  /** Called often during the run (after each file and chunk) with the running totals. */
  onProgress?: (p: BackupProgress) => void;
}

export interface BackupProgress {
  /** Source bytes read so far (file contents and image bytes). */
  bytes: number;
  files: number;
  chunks: ChunkWriteStats;
}

export interface BackupResult {
  /** Datastore-relative snapshot directory. */
  path: string;
  /** `TYPE/ID/RFC3339`. */
  snapshot: string;
  manifest: Manifest;
  files: WrittenFile[];
  chunks: ChunkWriteStats;
  walk: WalkStats | undefined;
  /** Whether xattrs/ACLs were recorded (false when disabled or getfattr is missing). */
  attrsRecorded: boolean;
}

export const RSA_KEY_BLOB = 'rsa-encrypted.key.blob';
export const CATALOG_NAME = 'catalog.pcat1.didx';
export const CATALOG_CHUNK_SIZE = 512 * 1024;

const LABEL_RE = /^[A-Za-z0-9_-]+$/;

function checkLabel(kind: string, name: string): void {
  if (!LABEL_RE.test(name)) throw new UsageError(`invalid ${kind} name ${JSON.stringify(name)} (letters, digits, _ and - only)`);
}

export function checkChunkSize(bytes: number): void {
  if (!(ALLOWED_CHUNK_SIZES as readonly number[]).includes(bytes)) {
    throw new UsageError(`chunk size must be one of ${ALLOWED_CHUNK_SIZES.map((s) => s / 1024).join(', ')} KiB`);
  }
}

export function runBackup(opts: BackupOptions): BackupResult {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  checkChunkSize(chunkSize);
  const images = opts.images ?? [];
  const blobs = opts.blobs ?? [];
  if (opts.source === undefined && images.length === 0 && blobs.length === 0) {
    throw new UsageError('nothing to back up: give a source directory, --image or --blob');
  }
  const archiveName = opts.archiveName ?? 'root';
  checkLabel('archive', archiveName);
  images.forEach((i) => checkLabel('image', i.name));
  for (const b of blobs) {
    // upstream labels look like qemu-server.conf or client.log; the file is LABEL.blob
    if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(b.name)) throw new UsageError(`invalid blob name ${JSON.stringify(b.name)}`);
  }

  const progress: BackupProgress = { bytes: 0, files: 0, chunks: undefined as unknown as ChunkWriteStats };
  const report = (): void => opts.onProgress?.(progress);
  // The walker reads getfattr output before anything is written.
  const wantCatalog = opts.source !== undefined && !opts.split && opts.catalog !== false;
  // The catalog writer emits its magic at once; hold bytes until its archive is open.
  const early: Buffer[] = [];
  let catalogSink: (d: Buffer) => void = (d) => early.push(d);
  const catalog = wantCatalog ? new CatalogWriter({ onData: (d) => catalogSink(d) }) : undefined;
  // A datastore inside the source tree is left out (it changes while we read it); its
  // identity is known once the snapshot writer has created it.
  const skipDirs = new Set<string>();
  const walker =
    opts.source !== undefined
      ? new TreeWalker(opts.source, { ...walkOpts(opts, progress, report), ...(catalog ? { catalog } : {}), skipDirs })
      : undefined;
  const root = walker?.rootMeta();

  const writer = new SnapshotWriter({ ...opts, onChunk: report });
  const repoKey = dirKey(opts.repository);
  if (repoKey !== undefined) skipDirs.add(repoKey);
  progress.chunks = writer.chunks.stats;
  const files: WrittenFile[] = [];
  try {
    for (const b of blobs) {
      files.push(writer.addBlobFile(`${b.name}.blob`, b.path));
      report();
    }
    let walk: WalkStats | undefined;
    if (walker !== undefined && root !== undefined) {
      if (opts.split) {
        const meta = writer.dynamicArchive(`${archiveName}.mpxar.didx`, chunkSize);
        const payload = writer.dynamicArchive(`${archiveName}.ppxar.didx`, chunkSize);
        walk = walker.run(new PxarEncoder(meta, root, { payload }));
        files.push(meta.close(), payload.close());
      } else {
        const pxarName = `${archiveName}.pxar.didx`;
        const out = writer.dynamicArchive(pxarName, chunkSize);
        // The catalog stream is chunked at a 512 KiB average (the client's catalog_chunk_size).
        const cat = catalog ? writer.dynamicArchive(CATALOG_NAME, CATALOG_CHUNK_SIZE) : undefined;
        if (cat) {
          for (const d of early.splice(0)) cat.write(d);
          catalogSink = (d) => cat.write(d);
        }
        catalog?.startDirectory(pxarName);
        walk = walker.run(new PxarEncoder(out, root));
        catalog?.endDirectory();
        catalog?.finish();
        files.push(out.close());
        if (cat) files.push(cat.close());
      }
    }
    for (const img of images) {
      const f = writer.addImage(`${img.name}.img.fidx`, img.path, {
        chunkSize: opts.chunkSize ?? IMAGE_CHUNK_SIZE,
        onBytes: (n) => {
          progress.bytes += n;
          report();
        },
      });
      files.push(f);
    }
    if (opts.masterKeyCiphertext !== undefined) {
      if (writer.cryptMode === 'none') throw new UsageError('a master key copy needs a key (crypt mode encrypt or sign-only)');
      files.push(writer.addEncodedBlob(RSA_KEY_BLOB, encodeBlob(opts.masterKeyCiphertext, { compress: false })));
    }
    const done = writer.finish();
    return {
      path: done.path,
      snapshot: `${opts.backupType}/${opts.backupId}/${done.path.slice(done.path.lastIndexOf('/') + 1)}`,
      manifest: done.manifest,
      files,
      chunks: writer.chunks.stats,
      walk,
      attrsRecorded: walker?.recordsAttrs ?? false,
    };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

function walkOpts(opts: BackupOptions, progress: BackupProgress, report: () => void) {
  return {
    ...(opts.xattrs !== undefined ? { xattrs: opts.xattrs } : {}),
    ...(opts.allFileSystems !== undefined ? { allFileSystems: opts.allFileSystems } : {}),
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    onEntry: (bytes: number) => {
      progress.files++;
      progress.bytes += bytes;
      report();
    },
  };
}
