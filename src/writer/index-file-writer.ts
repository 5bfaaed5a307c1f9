/**
 * Shared part of the index writers (spec 7): entries are streamed to `<name>.tmp_?idx` behind a
 * zeroed 4096-byte header while their SHA-256 (index_csum) is computed; closing writes the header
 * and renames the file to its final name. Memory use is one small buffer, whatever the size.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { fromSystemError, UsageError } from '../errors.js';

export const INDEX_HEADER_SIZE = 4096;

/** A random (version 4) UUID as 16 raw bytes, as libuuid's uuid_generate gives. */
export function randomUuid(): Buffer {
  const u = randomBytes(16);
  u[6] = (u[6]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}

export class IndexFileWriter {
  private fd: number | undefined;
  private readonly tmpPath: string;
  private readonly hash: Hash = createHash('sha256');
  private pending: Buffer;
  private used = 0;
  private filePos = INDEX_HEADER_SIZE;

  constructor(
    readonly path: string,
    tmpSuffix: string,
  ) {
    this.tmpPath = `${path}.${tmpSuffix}`;
    try {
      this.fd = openSync(this.tmpPath, 'wx', 0o644);
      writeSync(this.fd, Buffer.alloc(INDEX_HEADER_SIZE), 0, INDEX_HEADER_SIZE, 0);
    } catch (e) {
      throw fromSystemError(e, this.tmpPath, 'cannot create index file');
    }
    this.pending = Buffer.allocUnsafe(64 * 1024);
  }

  /** Appends entry bytes (hashed into index_csum). */
  append(entry: Uint8Array): void {
    if (this.fd === undefined) throw new UsageError('index writer already closed');
    this.hash.update(entry);
    if (this.used + entry.length > this.pending.length) this.flush();
    this.pending.set(entry, this.used);
    this.used += entry.length;
  }

  private flush(): void {
    if (this.used === 0 || this.fd === undefined) return;
    try {
      let off = 0;
      while (off < this.used) {
        const n = writeSync(this.fd, this.pending, off, this.used - off, this.filePos);
        off += n;
        this.filePos += n;
      }
    } catch (e) {
      throw fromSystemError(e, this.tmpPath, 'cannot write index file');
    }
    this.used = 0;
  }

  /** Writes the header (built by `makeHeader(csum)`), closes and renames. Returns index_csum. */
  close(makeHeader: (csum: Buffer) => Buffer): Buffer {
    if (this.fd === undefined) throw new UsageError('index writer already closed');
    this.flush();
    const csum = this.hash.digest();
    const header = makeHeader(csum);
    try {
      writeSync(this.fd, header, 0, header.length, 0);
      closeSync(this.fd);
      this.fd = undefined;
      renameSync(this.tmpPath, this.path);
    } catch (e) {
      throw fromSystemError(e, this.path, 'cannot finish index file');
    }
    return csum;
  }

  /** Drops the temp file (error paths). */
  abort(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // ignore
      }
      this.fd = undefined;
    }
    try {
      unlinkSync(this.tmpPath);
    } catch {
      // ignore
    }
  }
}

/** magic | uuid | ctime | csum, the common first 64 bytes of both headers. */
export function baseHeader(magic: Buffer, csum: Buffer, ctime: number): Buffer {
  const h = Buffer.alloc(INDEX_HEADER_SIZE);
  magic.copy(h, 0);
  randomUuid().copy(h, 8);
  h.writeBigInt64LE(BigInt(ctime), 24);
  csum.copy(h, 32);
  return h;
}
