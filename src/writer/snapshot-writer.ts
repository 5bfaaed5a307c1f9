/**
 * Writes one new snapshot into a local datastore (spec 8, 9): archives (dynamic `.didx` from a
 * byte stream, fixed `.fidx` images, `.blob` files), then the signed manifest.
 *
 * Crash safety: everything goes into a hidden temp directory next to the final one
 * (`<group>/.tmp_<time>_<random>`, which readers ignore because it is not a snapshot name) and
 * the directory is renamed into place after the manifest is written, so a snapshot is either
 * complete or absent. Existing snapshots are never touched: the final name must not exist.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync, readdirSync, renameSync, rmSync, writeFileSync, statSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { encodeBlob, MAX_BLOB_SIZE } from '../blob/data-blob.js';
import type { CryptConfig } from '../crypto/crypt-config.js';
import { fromSystemError, LimitError, UsageError } from '../errors.js';
import {
  MANIFEST_BLOB_NAME,
  serializeManifest,
  signManifest,
  type CryptMode,
  type Manifest,
  type ManifestFile,
} from '../manifest/manifest.js';
import {
  formatBackupTime,
  groupRelPath,
  isValidArchiveFileName,
  isValidBackupId,
  snapshotRelPath,
  type BackupType,
  type Namespace,
} from '../store/backup-ref.js';
import { ChunkStream, DEFAULT_CHUNK_SIZE } from './chunker.js';
import { ChunkStoreWriter, type PrefixDirPolicy } from './chunk-store-writer.js';
import { DynamicIndexWriter, type IndexResult } from './dynamic-index-writer.js';
import { FixedIndexWriter } from './fixed-index-writer.js';
import type { ByteSink } from './pxar-encoder.js';
import { isAllZero } from '../util/bytes.js';

export const DEFAULT_OWNER = 'root@pam';
/** userid@realm, optionally !tokenname (PBS auth ids). */
const AUTH_ID_RE = /^[^\s:/@!]{1,64}@[A-Za-z0-9_][A-Za-z0-9._-]{0,31}(?:![A-Za-z0-9_][A-Za-z0-9._-]{0,63})?$/;
export const IMAGE_CHUNK_SIZE = 4 * 1024 * 1024;

export interface SnapshotWriterOptions {
  /** Datastore root directory (created if missing). */
  repository: string;
  ns?: Namespace;
  backupType: BackupType;
  backupId: string;
  /** Epoch seconds (default: now). */
  backupTime?: number;
  /** encrypt and sign-only need `crypt`; default: encrypt with a key, none without. */
  cryptMode?: CryptMode;
  crypt?: CryptConfig;
  /** Written to the group's `owner` file when the group is new. */
  owner?: string;
  prefixDirs?: PrefixDirPolicy;
  /** Called after every stored chunk (progress display). */
  onChunk?: () => void;
}

export interface WrittenFile {
  filename: string;
  size: number;
  csum: string;
  chunks?: number;
}

/** A `.didx` archive fed as a byte stream: chunked, stored, indexed. */
export class DynamicArchiveWriter implements ByteSink {
  private readonly stream: ChunkStream;
  private readonly index: DynamicIndexWriter;
  private closed = false;

  constructor(
    private readonly owner: SnapshotWriter,
    readonly filename: string,
    path: string,
    chunkSize: number,
  ) {
    this.stream = new ChunkStream(chunkSize);
    this.index = new DynamicIndexWriter(path);
  }

  write(data: Uint8Array): void {
    if (this.closed) throw new UsageError(`${this.filename} is already closed`);
    for (const chunk of this.stream.push(data)) this.store(chunk);
  }

  private store(chunk: Buffer): void {
    const digest = this.owner.storeChunk(chunk);
    this.index.add(chunk.length, digest);
  }

  /** Stores the last chunk, writes the index and records the file for the manifest. */
  close(): WrittenFile {
    if (this.closed) throw new UsageError(`${this.filename} is already closed`);
    const last = this.stream.finish();
    if (last !== undefined) this.store(last);
    this.closed = true;
    const r = this.index.close();
    return this.owner.recordIndex(this.filename, r);
  }

  abort(): void {
    this.closed = true;
    this.index.abort();
  }
}

export class SnapshotWriter {
  readonly chunks: ChunkStoreWriter;
  readonly cryptMode: CryptMode;
  readonly backupTime: number;
  readonly relPath: string;
  private readonly tmpDir: string;
  private readonly finalDir: string;
  private readonly files: ManifestFile[] = [];
  private readonly names = new Set<string>();
  private readonly crypt: CryptConfig | undefined;
  private done = false;

  constructor(private readonly opts: SnapshotWriterOptions) {
    const crypt = opts.crypt;
    const mode: CryptMode = opts.cryptMode ?? (crypt ? 'encrypt' : 'none');
    if (mode !== 'none' && crypt === undefined) throw new UsageError(`crypt mode ${mode} needs a key (--keyfile)`);
    this.cryptMode = mode;
    this.crypt = crypt;
    if (!isValidBackupId(opts.backupId)) throw new UsageError(`invalid backup id ${JSON.stringify(opts.backupId)}`);
    const time = opts.backupTime ?? Math.floor(Date.now() / 1000);
    if (!Number.isSafeInteger(time) || time < 1) throw new UsageError(`invalid backup time ${time}`);
    this.backupTime = time;
    if (opts.owner !== undefined && !AUTH_ID_RE.test(opts.owner)) {
      throw new UsageError(`invalid owner ${JSON.stringify(opts.owner)} (an auth id like root@pam or user@pbs!token)`);
    }
    const ns = opts.ns ?? [];
    const ref = { type: opts.backupType, id: opts.backupId, time };
    this.relPath = snapshotRelPath(ns, ref);
    this.chunks = new ChunkStoreWriter(opts.repository, { prefixDirs: opts.prefixDirs ?? 'all' });
    const groupDir = join(opts.repository, groupRelPath(ns, ref));
    this.finalDir = join(opts.repository, this.relPath);
    if (existsSync(this.finalDir)) throw new UsageError(`snapshot ${this.relPath} already exists (pbsfs never overwrites a snapshot)`);
    try {
      mkdirSync(groupDir, { recursive: true });
      const ownerFile = join(groupDir, 'owner');
      if (!existsSync(ownerFile)) writeAtomic(ownerFile, `${opts.owner ?? DEFAULT_OWNER}\n`);
      removeStaleTempDirs(groupDir);
      // the pid in the name lets a later run remove it if this process dies mid-backup
      this.tmpDir = join(groupDir, `.tmp_${formatBackupTime(time)}_${process.pid}_${randomBytes(4).toString('hex')}`);
      mkdirSync(this.tmpDir);
    } catch (e) {
      throw fromSystemError(e, groupDir, 'cannot create the snapshot directory');
    }
  }

  /** Chunks are encrypted (and digests keyed) only in encrypt mode (spec 8.6). */
  private get chunkCrypt(): CryptConfig | undefined {
    return this.cryptMode === 'encrypt' ? this.crypt : undefined;
  }

  storeChunk(chunk: Uint8Array): Buffer {
    const d = this.chunks.insert(chunk, this.chunkCrypt);
    this.opts.onChunk?.();
    return d;
  }

  private claim(filename: string): string {
    if (this.done) throw new UsageError('snapshot already finished');
    if (!isValidArchiveFileName(filename) || filename === MANIFEST_BLOB_NAME) {
      throw new UsageError(`invalid archive file name ${JSON.stringify(filename)}`);
    }
    if (this.names.has(filename)) throw new UsageError(`archive ${filename} given twice`);
    this.names.add(filename);
    return join(this.tmpDir, filename);
  }

  /** @internal used by the archive writers */
  recordIndex(filename: string, r: IndexResult): WrittenFile {
    this.files.push({ filename, cryptMode: this.cryptMode, size: r.size, csum: r.csum.toString('hex') });
    return { filename, size: r.size, csum: r.csum.toString('hex'), chunks: r.chunks };
  }

  /** A dynamic archive (`NAME.pxar.didx`, `.mpxar.didx`, `.ppxar.didx`, ...), fed as a stream. */
  dynamicArchive(filename: string, chunkSize = DEFAULT_CHUNK_SIZE): DynamicArchiveWriter {
    if (!filename.endsWith('.didx')) throw new UsageError(`dynamic archive names end in .didx: ${filename}`);
    return new DynamicArchiveWriter(this, filename, this.claim(filename), chunkSize);
  }

  /**
   * A fixed-chunk image (`NAME.img.fidx`) read from a file or block device until EOF.
   * `onBytes` reports progress.
   */
  addImage(filename: string, sourcePath: string, opts: { chunkSize?: number; onBytes?: (n: number) => void } = {}): WrittenFile {
    if (!filename.endsWith('.fidx')) throw new UsageError(`image archive names end in .fidx: ${filename}`);
    const chunkSize = opts.chunkSize ?? IMAGE_CHUNK_SIZE;
    const index = new FixedIndexWriter(this.claim(filename), chunkSize);
    let fd: number;
    try {
      fd = openSync(sourcePath, 'r');
      if (fstatSync(fd).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    } catch (e) {
      index.abort();
      throw fromSystemError(e, sourcePath, 'cannot open image');
    }
    const zeroDigests = new Map<number, Buffer>();
    try {
      for (;;) {
        const buf = Buffer.allocUnsafe(chunkSize);
        let got = 0;
        while (got < chunkSize) {
          const n = readSync(fd, buf, got, chunkSize - got, null);
          if (n === 0) break;
          got += n;
        }
        if (got === 0) break;
        const chunk = buf.subarray(0, got);
        // All-zero chunks (sparse disks) are common: skip re-hashing them.
        let digest: Buffer | undefined;
        if (isAllZero(chunk)) {
          digest = zeroDigests.get(got);
          if (digest !== undefined && this.chunks.has(digest)) {
            this.chunks.stats.chunks++;
            this.chunks.stats.bytes += got;
            this.opts.onChunk?.();
          } else {
            digest = this.storeChunk(chunk);
            zeroDigests.set(got, digest);
          }
        } else {
          digest = this.storeChunk(chunk);
        }
        index.add(got, digest);
        opts.onBytes?.(got);
        if (got < chunkSize) break;
      }
    } catch (e) {
      index.abort();
      throw fromSystemError(e, sourcePath, 'cannot read image');
    } finally {
      closeSync(fd);
    }
    return this.recordIndex(filename, index.close());
  }

  /** A blob file (`NAME.blob`): compressed when smaller, encrypted in encrypt mode. */
  addBlob(filename: string, data: Uint8Array): WrittenFile {
    if (!filename.endsWith('.blob')) throw new UsageError(`blob names end in .blob: ${filename}`);
    if (data.length > MAX_BLOB_SIZE) throw new LimitError(`blob ${filename} is larger than 128 MiB`);
    const path = this.claim(filename);
    const blob = encodeBlob(data, this.chunkCrypt !== undefined ? { crypt: this.chunkCrypt, compress: true } : { compress: true });
    writeAtomic(path, blob);
    const csum = createHash('sha256').update(blob).digest('hex');
    this.files.push({ filename, cryptMode: this.cryptMode, size: blob.length, csum });
    return { filename, size: blob.length, csum };
  }

  /**
   * Stores an already encoded blob verbatim (e.g. an `rsa-encrypted.key.blob`, which upstream
   * encodes uncompressed and unencrypted, or a blob copied from another snapshot).
   */
  addEncodedBlob(filename: string, blob: Uint8Array): WrittenFile {
    if (!filename.endsWith('.blob')) throw new UsageError(`blob names end in .blob: ${filename}`);
    const path = this.claim(filename);
    writeAtomic(path, blob);
    const csum = createHash('sha256').update(blob).digest('hex');
    this.files.push({ filename, cryptMode: this.cryptMode, size: blob.length, csum });
    return { filename, size: blob.length, csum };
  }

  /** A blob from a file on disk. */
  addBlobFile(filename: string, sourcePath: string): WrittenFile {
    let st;
    try {
      st = statSync(sourcePath);
    } catch (e) {
      throw fromSystemError(e, sourcePath, 'cannot read blob source');
    }
    if (st.size > MAX_BLOB_SIZE) throw new LimitError(`blob source is larger than 128 MiB`, { file: sourcePath });
    const fd = openSync(sourcePath, 'r');
    try {
      const buf = Buffer.allocUnsafe(st.size);
      let got = 0;
      while (got < st.size) {
        const n = readSync(fd, buf, got, st.size - got, null);
        if (n === 0) break;
        got += n;
      }
      return this.addBlob(filename, buf.subarray(0, got));
    } finally {
      closeSync(fd);
    }
  }

  /** The manifest as it will be written (signed per crypt mode). */
  buildManifest(): Manifest {
    const m: Manifest = {
      backupType: this.opts.backupType,
      backupId: this.opts.backupId,
      backupTime: this.backupTime,
      files: this.files.map((f) => ({ ...f })),
      signature: null,
      unprotected: {},
    };
    return this.cryptMode !== 'none' && this.crypt !== undefined ? signManifest(m, this.crypt) : m;
  }

  /** Writes index.json.blob and renames the snapshot into place. Returns the snapshot path. */
  finish(): { path: string; manifest: Manifest } {
    if (this.done) throw new UsageError('snapshot already finished');
    const manifest = this.buildManifest();
    const blob = encodeBlob(Buffer.from(serializeManifest(manifest), 'utf8'), { compress: true });
    writeAtomic(join(this.tmpDir, MANIFEST_BLOB_NAME), blob);
    if (existsSync(this.finalDir)) {
      this.abort();
      throw new UsageError(`snapshot ${this.relPath} appeared while writing (pbsfs never overwrites a snapshot)`);
    }
    try {
      renameSync(this.tmpDir, this.finalDir);
    } catch (e) {
      this.abort();
      throw fromSystemError(e, this.finalDir, 'cannot move the snapshot into place');
    }
    this.done = true;
    return { path: this.relPath, manifest };
  }

  /** Removes the temp directory (chunks already stored stay: they are shared and harmless). */
  abort(): void {
    this.done = true;
    rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

/** Removes `.tmp_<time>_<pid>_<rand>` directories left by writer processes that no longer run. */
function removeStaleTempDirs(groupDir: string): void {
  let names: string[];
  try {
    names = readdirSync(groupDir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\.tmp_.+Z_(\d+)_[0-9a-f]+$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive) rmSync(join(groupDir, n), { recursive: true, force: true });
  }
}


/** Write to a temp name in the same directory, then rename. */
export function writeAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp_${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, data, { flag: 'wx', mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fromSystemError(e, path, 'cannot write file');
  }
}

