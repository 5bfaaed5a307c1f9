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
import { IMAGE_CHUNK_SIZE, SnapshotWriter, type DynamicArchiveWriter, type SnapshotWriterOptions, type WrittenFile } from './snapshot-writer.js';

export interface NamedSource {
  /** Archive label without extension (`root`, `drive-scsi0`, `qemu-server`). */
  name: string;
  path: string;
}

/** One thing to back up: a directory (pxar), an image or a blob, labelled as upstream does. */
export interface BackupItem extends NamedSource {
  kind: 'pxar' | 'image' | 'blob';
}

export interface BackupOptions extends Omit<SnapshotWriterOptions, 'onChunk'> {
  /**
   * Items in upload (manifest) order, after `blobs` and `source` and before `images`: several
   * directory archives may be given (`root.pxar`, `etc.pxar`, ...), like proxmox-backup-client.
   */
  items?: BackupItem[];
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
  /** Archive entries written so far (files, directories, links, ...). */
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

/** The items of a backup in upload order (legacy options first: blobs, source, images). */
export function backupItems(opts: BackupOptions): BackupItem[] {
  const items: BackupItem[] = [];
  for (const b of opts.blobs ?? []) items.push({ kind: 'blob', ...b });
  if (opts.source !== undefined) items.push({ kind: 'pxar', name: opts.archiveName ?? 'root', path: opts.source });
  items.push(...(opts.items ?? []));
  for (const i of opts.images ?? []) items.push({ kind: 'image', ...i });
  return items;
}

export function runBackup(opts: BackupOptions): BackupResult {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  checkChunkSize(chunkSize);
  const items = backupItems(opts);
  if (items.length === 0) throw new UsageError('nothing to back up: give a source directory, --image or --blob');
  const seen = new Set<string>();
  for (const it of items) {
    if (it.kind === 'blob') {
      // upstream labels look like qemu-server.conf or client.log; the file is LABEL.blob
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(it.name)) throw new UsageError(`invalid blob name ${JSON.stringify(it.name)}`);
    } else checkLabel(it.kind === 'pxar' ? 'archive' : 'image', it.name);
    const key = `${it.kind}:${it.name}`;
    if (seen.has(key)) throw new UsageError(`${it.kind} ${it.name} given twice`);
    seen.add(key);
  }

  const progress: BackupProgress = { bytes: 0, files: 0, chunks: undefined as unknown as ChunkWriteStats };
  const report = (): void => opts.onProgress?.(progress);
  const pxarItems = items.filter((i) => i.kind === 'pxar');
  // One catalog for all unified archives (upstream: one top-level directory per archive).
  const wantCatalog = pxarItems.length > 0 && !opts.split && opts.catalog !== false;
  // The catalog writer emits its magic at once; hold bytes until its archive is open.
  const early: Buffer[] = [];
  let catalogSink: (d: Buffer) => void = (d) => early.push(d);
  const catalog = wantCatalog ? new CatalogWriter({ onData: (d) => catalogSink(d) }) : undefined;
  // A datastore inside a source tree is left out (it changes while we read it); its identity
  // is known once the snapshot writer has created it.
  const skipDirs = new Set<string>();
  const walkers = new Map<BackupItem, TreeWalker>();
  for (const it of pxarItems) {
    // attributes are read (one helper run) before anything is written
    walkers.set(it, new TreeWalker(it.path, { ...walkOpts(opts, progress, report), ...(catalog ? { catalog } : {}), skipDirs }));
  }
  const roots = new Map([...walkers].map(([it, w]) => [it, w.rootMeta()] as const));

  const writer = new SnapshotWriter({ ...opts, onChunk: report });
  const repoKey = dirKey(opts.repository);
  if (repoKey !== undefined) skipDirs.add(repoKey);
  progress.chunks = writer.chunks.stats;
  const files: WrittenFile[] = [];
  let walk: WalkStats | undefined;
  let attrsRecorded = false;
  let cat: DynamicArchiveWriter | undefined;
  try {
    for (const it of items) {
      if (it.kind === 'blob') {
        files.push(writer.addBlobFile(`${it.name}.blob`, it.path));
        report();
      } else if (it.kind === 'image') {
        files.push(
          writer.addImage(`${it.name}.img.fidx`, it.path, {
            chunkSize: opts.chunkSize ?? IMAGE_CHUNK_SIZE,
            onBytes: (n) => {
              progress.bytes += n;
              report();
            },
          }),
        );
      } else {
        const walker = walkers.get(it)!;
        const root = roots.get(it)!;
        attrsRecorded ||= walker.recordsAttrs;
        let stats: WalkStats;
        if (opts.split) {
          const meta = writer.dynamicArchive(`${it.name}.mpxar.didx`, chunkSize);
          const payload = writer.dynamicArchive(`${it.name}.ppxar.didx`, chunkSize);
          stats = walker.run(new PxarEncoder(meta, root, { payload }));
          files.push(meta.close(), payload.close());
        } else {
          const pxarName = `${it.name}.pxar.didx`;
          const out = writer.dynamicArchive(pxarName, chunkSize);
          if (catalog !== undefined && cat === undefined) {
            // chunked at a 512 KiB average (the client's catalog_chunk_size)
            const c = writer.dynamicArchive(CATALOG_NAME, CATALOG_CHUNK_SIZE);
            for (const d of early.splice(0)) c.write(d);
            catalogSink = (d) => c.write(d);
            cat = c;
          }
          catalog?.startDirectory(pxarName);
          stats = walker.run(new PxarEncoder(out, root));
          catalog?.endDirectory();
          files.push(out.close());
        }
        walk = walk === undefined ? stats : addStats(walk, stats);
      }
    }
    if (catalog !== undefined && cat !== undefined) {
      catalog.finish();
      files.push(cat.close());
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
      attrsRecorded,
    };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

function addStats(a: WalkStats, b: WalkStats): WalkStats {
  return {
    entries: a.entries + b.entries,
    files: a.files + b.files,
    directories: a.directories + b.directories,
    hardlinks: a.hardlinks + b.hardlinks,
    bytes: a.bytes + b.bytes,
    skipped: a.skipped + b.skipped,
  };
}

function walkOpts(opts: BackupOptions, progress: BackupProgress, report: () => void) {
  return {
    ...(opts.xattrs !== undefined ? { xattrs: opts.xattrs } : {}),
    ...(opts.allFileSystems !== undefined ? { allFileSystems: opts.allFileSystems } : {}),
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    onEntry: () => {
      progress.files++;
      report();
    },
    onRead: (bytes: number) => {
      progress.bytes += bytes;
      report();
    },
  };
}
