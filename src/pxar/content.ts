/**
 * Regular-file contents: v1 inline PAYLOAD data in the archive, v2 data in the payload stream
 * behind a PAYLOAD_REF (whose PAYLOAD header is checked before the first byte is returned).
 * The payload stream is never scanned: only PAYLOAD_REF offsets are used (spec §12.3).
 */
import { FormatError, NotFoundError } from '../errors.js';
import { heldForever, type HeldBytes, type ReadAt } from '../io/read-at.js';
import { HEADER_SIZE, PXAR, pxarTypeName } from './format.js';
import type { PxarEntry } from './types.js';

/** Default block size for streaming contents. */
export const CONTENT_BLOCK = 1024 * 1024;

export interface ContentRange {
  src: ReadAt;
  /** Position of the first content byte in `src`. */
  start: number;
  size: number;
}

/** Checks the payload stream's start and tail markers (spec §12.1). */
export async function checkPayloadStream(payload: ReadAt): Promise<void> {
  if (payload.size < 2 * HEADER_SIZE) {
    throw new FormatError(`payload stream of ${payload.size} bytes is too small`, { file: payload.name, offset: 0 });
  }
  const head = await payload.readAt(0, HEADER_SIZE);
  const tail = await payload.readAt(payload.size - HEADER_SIZE, HEADER_SIZE);
  if (head.length !== HEADER_SIZE || tail.length !== HEADER_SIZE) {
    throw new FormatError('short read of the payload stream markers', { file: payload.name, offset: 0 });
  }
  // A marker read as zeros (--allow-damaged, its chunk unreadable) cannot be checked; let it pass.
  const lost = (at: number): boolean => payload.zeroFilled?.(at, HEADER_SIZE) === true;
  if ((head.readBigUInt64LE(0) !== PXAR.PAYLOAD_START_MARKER || head.readBigUInt64LE(8) !== 16n) && !lost(0)) {
    throw new FormatError(`payload stream does not start with PAYLOAD_START_MARKER (found ${pxarTypeName(head.readBigUInt64LE(0))})`, {
      file: payload.name,
      offset: 0,
    });
  }
  if ((tail.readBigUInt64LE(0) !== PXAR.PAYLOAD_TAIL_MARKER || tail.readBigUInt64LE(8) !== 16n) && !lost(payload.size - HEADER_SIZE)) {
    throw new FormatError('payload stream does not end with PAYLOAD_TAIL_MARKER', {
      file: payload.name,
      offset: payload.size - HEADER_SIZE,
    });
  }
}

export class ContentReader {
  /** Validated v2 ranges, by PAYLOAD header offset and size. */
  private readonly checked = new Map<number, number>();
  /** The payload stream's markers, checked on first use (browsing never touches the stream). */
  private markers: Promise<void> | undefined;

  constructor(
    readonly archive: ReadAt,
    readonly payload: ReadAt | undefined,
  ) {}

  /** Where the entry's bytes are; for v2 validates the PAYLOAD header once per offset. */
  async locate(entry: PxarEntry): Promise<ContentRange> {
    if (entry.kind !== 'file') {
      throw new FormatError(`${entry.kind} has no file contents`, { file: this.archive.name, offset: entry.entryOffset });
    }
    if (entry.contentOffset !== undefined) {
      if (entry.contentOffset + entry.size > this.archive.size) {
        throw new FormatError(`file data [${entry.contentOffset}..+${entry.size}) lies outside the archive`, {
          file: this.archive.name,
          offset: entry.contentOffset,
        });
      }
      return { src: this.archive, start: entry.contentOffset, size: entry.size };
    }
    const off = entry.payloadOffset;
    if (off === undefined) {
      throw new FormatError('file entry without data reference', { file: this.archive.name, offset: entry.entryOffset });
    }
    const payload = this.payload;
    if (payload === undefined) {
      throw new NotFoundError('split archive needs its payload stream (.ppxar) to read file contents', {
        file: this.archive.name,
        offset: entry.entryOffset,
      });
    }
    await (this.markers ??= checkPayloadStream(payload));
    // Errors about the referenced bytes name the payload stream and say which reference led there.
    const ref = `PAYLOAD_REF of ${this.archive.name} at offset ${entry.entryOffset}`;
    const start = off + HEADER_SIZE;
    if (start + entry.size > payload.size) {
      throw new FormatError(`${ref}: [${off}..+${HEADER_SIZE + entry.size}) lies outside the payload stream (size ${payload.size})`, {
        file: payload.name,
        offset: off,
      });
    }
    if (this.checked.get(off) !== entry.size) {
      const h = await payload.readAt(off, HEADER_SIZE);
      if (h.length !== HEADER_SIZE) throw new FormatError(`${ref}: short read of its PAYLOAD header`, { file: payload.name, offset: off });
      const htype = h.readBigUInt64LE(0);
      // A header read as zeros (--allow-damaged, its chunk unreadable) cannot be checked: the
      // reference alone places the contents (already bounded by the stream size above).
      const lost = payload.zeroFilled?.(off, HEADER_SIZE) === true;
      if (htype !== PXAR.PAYLOAD && !lost) {
        throw new FormatError(`${ref} points at ${pxarTypeName(htype)} instead of a PAYLOAD header`, {
          file: payload.name,
          offset: off,
        });
      }
      if (h.readBigUInt64LE(8) !== BigInt(entry.size + HEADER_SIZE) && !lost) {
        throw new FormatError(`PAYLOAD header size ${h.readBigUInt64LE(8) - 16n} does not match the size ${entry.size} of ${ref}`, {
          file: payload.name,
          offset: off,
        });
      }
      if (this.checked.size > 4096) this.checked.clear();
      this.checked.set(off, entry.size);
    }
    return { src: payload, start, size: entry.size };
  }

  /** Up to `length` bytes at `offset` inside the file (fewer at EOF, none past it). */
  async read(entry: PxarEntry, offset: number, length: number): Promise<Buffer> {
    const r = await this.locate(entry);
    if (offset < 0 || length <= 0 || offset >= r.size) return Buffer.alloc(0);
    const n = Math.min(length, r.size - offset);
    const b = await r.src.readAt(r.start + offset, n);
    checkLength(b.length, n, r, offset);
    return b;
  }

  /** As read(), lent until release() where the source can lend (ReadAt.readHeld). */
  async readHeld(entry: PxarEntry, offset: number, length: number): Promise<HeldBytes> {
    const r = await this.locate(entry);
    if (offset < 0 || length <= 0 || offset >= r.size) return heldForever(Buffer.alloc(0));
    const n = Math.min(length, r.size - offset);
    const h = r.src.readHeld !== undefined ? await r.src.readHeld(r.start + offset, n) : heldForever(await r.src.readAt(r.start + offset, n));
    if (h.length !== n) h.release();
    checkLength(h.length, n, r, offset);
    return h;
  }

  /** ReadAt.forget for bytes [offset, offset + length) of the file (a hint: never throws). */
  async forget(entry: PxarEntry, offset: number, length: number): Promise<void> {
    try {
      const r = await this.locate(entry);
      const from = Math.max(0, offset);
      const to = Math.min(r.size, offset + length);
      if (to > from) r.src.forget?.(r.start + from, to - from);
    } catch {
      // A file that cannot be located has nothing cached to drop; its reads report the error.
    }
  }

  /** The whole contents as blocks of at most `block` bytes (bounded memory). */
  async *stream(entry: PxarEntry, block = CONTENT_BLOCK): AsyncGenerator<Buffer> {
    const r = await this.locate(entry);
    for (let off = 0; off < r.size; off += block) {
      const n = Math.min(block, r.size - off);
      const b = await r.src.readAt(r.start + off, n);
      checkLength(b.length, n, r, off);
      yield b;
    }
  }
}

/** Throws a FormatError unless a read at `offset` of the file in `r` got the `n` bytes it asked for. */
function checkLength(got: number, n: number, r: ContentRange, offset: number): void {
  if (got !== n) throw new FormatError(`short read of file data: wanted ${n} bytes, got ${got}`, { file: r.src.name, offset: r.start + offset });
}
