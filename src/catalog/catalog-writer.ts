/**
 * Writer for `.pcat1` catalogs, byte-identical to upstream's CatalogWriter (spec 10.3).
 *
 * Fed during the same tree walk that writes a pxar archive: startDirectory(archive name), then
 * one call per entry in archive order (startDirectory/endDirectory around each directory),
 * endDirectory(), finish(). A directory's block is written when the directory ends, so
 * children precede parents and the root block comes last, followed by its offset.
 *
 * Only the entries of the directories currently open are held in memory; finished blocks go to
 * the sink straight away.
 */
import { UsageError } from '../errors.js';
import { writeU64 } from '../util/bytes.js';
import { CATALOG_MAGIC, MAX_CATALOG_NAME_LEN, type CatalogEntryType } from './catalog-reader.js';
import { encodeVi64, encodeVu64 } from './varint.js';

type PendingEntry =
  | { type: 'd'; name: Buffer; start: number }
  | { type: 'f'; name: Buffer; size: bigint; mtime: bigint }
  | { type: Exclude<CatalogEntryType, 'd' | 'f'>; name: Buffer };

interface OpenDir {
  name: Buffer;
  entries: PendingEntry[];
}

export interface CatalogWriterOptions {
  /**
   * Receives the catalog bytes in order as they are produced. Without it the writer collects
   * them and finish() returns the whole catalog.
   */
  onData?: (data: Buffer) => void;
}

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

export class CatalogWriter {
  private readonly stack: OpenDir[] = [{ name: Buffer.from('/'), entries: [] }];
  private readonly collected: Buffer[] = [];
  private readonly sink: ((data: Buffer) => void) | undefined;
  private pos = 0;
  private finished = false;

  constructor(opts: CatalogWriterOptions = {}) {
    this.sink = opts.onData;
    this.emit(CATALOG_MAGIC);
  }

  /** Bytes written so far. */
  get size(): number {
    return this.pos;
  }

  /** Directory nesting below the catalog root (0 = at the root). */
  get depth(): number {
    return this.stack.length - 1;
  }

  startDirectory(name: Uint8Array | string): void {
    this.stack.push({ name: this.checkedName(name), entries: [] });
  }

  endDirectory(): void {
    this.checkOpen();
    if (this.stack.length < 2) throw new UsageError('catalog: endDirectory() without a matching startDirectory()');
    const dir = this.stack.pop()!;
    const start = this.pos;
    this.emit(encodeBlock(dir.entries, start));
    this.current().entries.push({ type: 'd', name: dir.name, start });
  }

  /** A regular file: size in bytes, mtime in epoch seconds. */
  addFile(name: Uint8Array | string, size: number | bigint, mtime: number | bigint): void {
    const s = BigInt(size);
    const m = BigInt(mtime);
    if (s < 0n || s > U64_MAX) throw new UsageError(`catalog: file size ${s} out of range`);
    if (m < I64_MIN || m > I64_MAX) throw new UsageError(`catalog: mtime ${m} out of range`);
    this.current().entries.push({ type: 'f', name: this.checkedName(name), size: s, mtime: m });
  }

  addSymlink(name: Uint8Array | string): void {
    this.addSpecial('l', name);
  }
  /** A later name of a hardlinked file (the first name is added as a file). */
  addHardlink(name: Uint8Array | string): void {
    this.addSpecial('h', name);
  }
  addBlockDevice(name: Uint8Array | string): void {
    this.addSpecial('b', name);
  }
  addCharDevice(name: Uint8Array | string): void {
    this.addSpecial('c', name);
  }
  addFifo(name: Uint8Array | string): void {
    this.addSpecial('p', name);
  }
  addSocket(name: Uint8Array | string): void {
    this.addSpecial('s', name);
  }

  /**
   * Writes the root block and the trailing root offset. Returns the whole catalog when the
   * writer collected it (no onData), otherwise an empty buffer.
   */
  finish(): Buffer {
    this.checkOpen();
    if (this.stack.length !== 1) {
      throw new UsageError(`catalog: finish() with ${this.stack.length - 1} directories still open`);
    }
    const root = this.stack.pop()!;
    const start = this.pos;
    this.emit(encodeBlock(root.entries, start));
    const trailer = Buffer.alloc(8);
    writeU64(trailer, 0, start);
    this.emit(trailer);
    this.finished = true;
    return this.sink === undefined ? Buffer.concat(this.collected) : Buffer.alloc(0);
  }

  private addSpecial(type: Exclude<CatalogEntryType, 'd' | 'f'>, name: Uint8Array | string): void {
    this.current().entries.push({ type, name: this.checkedName(name) });
  }

  private current(): OpenDir {
    this.checkOpen();
    return this.stack[this.stack.length - 1]!;
  }

  private checkOpen(): void {
    if (this.finished) throw new UsageError('catalog: the writer is already finished');
  }

  private checkedName(name: Uint8Array | string): Buffer {
    this.checkOpen();
    const b = typeof name === 'string' ? Buffer.from(name, 'utf8') : Buffer.from(name);
    if (b.length === 0 || b.length > MAX_CATALOG_NAME_LEN || b.includes(0) || b.includes(0x2f)) {
      throw new UsageError(
        `catalog: invalid entry name ${JSON.stringify(b.toString('utf8').slice(0, 80))} (must be 1..${MAX_CATALOG_NAME_LEN} bytes without '/' or NUL)`,
      );
    }
    return b;
  }

  private emit(data: Buffer): void {
    this.pos += data.length;
    if (this.sink !== undefined) this.sink(data);
    else this.collected.push(data);
  }
}

/** One directory block written at file offset `start`: vu64 table_len, then the table. */
function encodeBlock(entries: PendingEntry[], start: number): Buffer {
  const parts: Buffer[] = [encodeVu64(entries.length)];
  for (const e of entries) {
    parts.push(Buffer.of(e.type.charCodeAt(0)), encodeVu64(e.name.length), e.name);
    if (e.type === 'd') parts.push(encodeVu64(start - e.start));
    else if (e.type === 'f') parts.push(encodeVu64(e.size), encodeVi64(e.mtime));
  }
  const table = Buffer.concat(parts);
  return Buffer.concat([encodeVu64(table.length), table]);
}
