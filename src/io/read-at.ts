/**
 * Random access to a byte stream: the seam between the layers. A local file, a buffer, and the
 * decoded stream behind a fixed or dynamic index all implement it; the pxar accessor and the VFS
 * read through it without knowing which.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { FormatError, fromSystemError } from '../errors.js';

/**
 * Bytes lent by a source until release(): views of memory the source reuses afterwards (decoded
 * chunks in a cache's arena), so a caller must not touch them after release. Callers release
 * exactly once, also on failure.
 */
export interface HeldBytes {
  /** The bytes in order: one buffer, or several when they lie in different chunks. */
  readonly parts: readonly Buffer[];
  /** Total length of the parts. */
  readonly length: number;
  release(): void;
}

/** Bytes that stay valid: nothing to give back. */
export function heldForever(data: Buffer): HeldBytes {
  return { parts: [data], length: data.length, release: noop };
}

/** The held bytes as one buffer (a copy when there are several parts). */
export function heldData(h: HeldBytes): Buffer {
  return h.parts.length === 1 ? h.parts[0]! : Buffer.concat(h.parts as Buffer[], h.length);
}

function noop(): void {}

export interface ReadAt {
  /** Name used in error messages (archive or file name). */
  readonly name: string;
  /** Total length of the stream in bytes. */
  readonly size: number;
  /**
   * Returns the bytes [offset, offset + length) clipped to `size` (shorter only at the end of
   * the stream). Implementations verify what they return; they never return unverified bytes.
   * The result may share memory with a cache: callers must treat it as read-only.
   */
  readAt(offset: number, length: number): Promise<Buffer>;
  /**
   * Optional: readAt's bytes without a copy, lent until release() (see HeldBytes). For a caller
   * that is done with them at once, such as a FUSE reply written to the kernel.
   */
  readHeld?(offset: number, length: number): Promise<HeldBytes>;
  /**
   * Only with `--allow-damaged`: true when bytes of [offset, offset + length) already read came
   * back as zeros because their chunk is unreadable (a decoder may then accept zeros in place of
   * a header). Absent on sources that never zero-fill.
   */
  zeroFilled?(offset: number, length: number): boolean;
  /**
   * A hint that [offset, offset + length) will be read soon: sources with slow fetches start
   * them in the background. Never throws; failures surface when the range is read.
   */
  prefetch?(offset: number, length: number): void;
  /**
   * A hint that [offset, offset + length) will not be read again soon (a streaming reader has
   * passed it): sources may drop what they cache for that range alone. Never throws.
   */
  forget?(offset: number, length: number): void;
  /**
   * Optional, synchronous: at least `min` and at most `max` bytes starting at `offset` if the
   * source holds them in memory right now (verified, like readAt), else undefined. Lets a
   * windowed parser take a shorter window than it asked for instead of a read.
   */
  readSome?(offset: number, min: number, max: number): Buffer | undefined;
  /**
   * Optional hint from a format parser: a structural item of the stream starts at `offset`
   * (e.g. a pxar entry found through a goodbye table). Never throws; may be wrong (hostile
   * input) without harm: sources use it only to decide what to keep in memory.
   */
  itemStartHint?(offset: number): void;
}

/** Called with each verified chunk a chunked source obtains: its number, offset and plaintext. */
export type ChunkObserver = (index: number, start: number, data: Buffer) => void;

/**
 * A stream stored as a sequence of chunks (the decoded stream behind a PBS index), seen from a
 * parser that keeps parts of chunks as they pass (the pxar metadata harvest) without depending
 * on the index layer.
 */
export interface ChunkedReadAt extends ReadAt {
  /** The number of the chunk holding byte `offset`. */
  chunkAt(offset: number): number;
  /** Chunk i's byte range in the stream. */
  chunkRange(i: number): { start: number; end: number };
  /**
   * Calls `observer` with every verified chunk this source obtains from now on (from its store or
   * its cache; never zeros standing in for a damaged chunk). Observers run synchronously, must
   * not modify the bytes, and must copy what they keep.
   */
  observeChunks(observer: ChunkObserver): void;
  /** Chunk i's verified plaintext if it is in memory right now, else undefined (no fetch). */
  peekChunk(i: number): Buffer | undefined;
  readHeld(offset: number, length: number): Promise<HeldBytes>;
  prefetch(offset: number, length: number): void;
  forget(offset: number, length: number): void;
  zeroFilled(offset: number, length: number): boolean;
}

/** Reads exactly `length` bytes or throws a FormatError naming the stream (truncated input). */
export async function readExact(src: ReadAt, offset: number, length: number, what = 'data'): Promise<Buffer> {
  if (offset < 0 || length < 0 || offset + length > src.size) {
    throw new FormatError(`${what} [${offset}..${offset + length}) lies outside the stream (size ${src.size})`, {
      file: src.name,
      offset,
    });
  }
  const b = await src.readAt(offset, length);
  if (b.length !== length) {
    throw new FormatError(`short read of ${what}: wanted ${length} bytes, got ${b.length}`, { file: src.name, offset });
  }
  return b;
}

export class BufferReadAt implements ReadAt {
  readonly size: number;
  constructor(
    readonly name: string,
    private readonly buf: Buffer,
  ) {
    this.size = buf.length;
  }
  async readAt(offset: number, length: number): Promise<Buffer> {
    const start = Math.max(0, Math.min(offset, this.size));
    return this.buf.subarray(start, Math.min(this.size, start + Math.max(0, length)));
  }
}

/** A local file opened read-only. */
export class FileReadAt implements ReadAt {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly fh: FileHandle,
  ) {}

  static async open(path: string, name = path): Promise<FileReadAt> {
    try {
      const fh = await open(path, 'r');
      const st = await fh.stat();
      return new FileReadAt(name, st.size, fh);
    } catch (e) {
      throw fromSystemError(e, name, 'cannot open');
    }
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    const start = Math.max(0, Math.min(offset, this.size));
    const n = Math.min(this.size - start, Math.max(0, length));
    const buf = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await this.fh.read(buf, got, n - got, start + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Fills `buf` from offset 0 of an open file, looping over short reads; shorter only at EOF. */
export async function readFully(fh: FileHandle, buf: Buffer): Promise<Buffer> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === buf.length ? buf : buf.subarray(0, got);
}
