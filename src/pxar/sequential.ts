/**
 * Sequential pxar decoder (spec §9) for whole-tree work: restore, verify, listing.
 *
 * It walks the item stream front to back through a large read window and yields every entry in
 * archive order (depth-first, the order the upstream decoder reports) with its full path bytes.
 * File contents are not buffered: v1 PAYLOAD data is skipped by position and read on demand,
 * v2 contents are read from the payload stream through PAYLOAD_REF offsets (so decreasing
 * offsets, which some old clients wrote, are handled too). Memory stays bounded by the window,
 * the directory stack (depth-capped) and one entry's attributes. Each GOODBYE is checked against
 * the directory it closes (record count, tail marker, offset and size), which the reference
 * decoder skips.
 */
import { FormatError, LimitError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import { CONTENT_BLOCK, ContentReader } from './content.js';
import { GOODBYE_ITEM_SIZE, HEADER_SIZE, PXAR, pxarTypeName } from './format.js';
import { ItemReader, NeedMore, decodeChildSync, decodeEntryBody, entryFromBody, readArchiveStart, withWindow } from './items.js';
import type { PxarEntry } from './types.js';

export interface SequentialEntry extends PxarEntry {
  /** Full path from the root: "/" for the root, "/dir/name" below it (raw bytes). */
  path: Buffer;
  /** 0 for the root, 1 for its children, ... */
  depth: number;
}

export interface SequentialOptions {
  /** Read window in bytes (default 1 MiB). */
  blockSize?: number;
  /** Deepest accepted nesting (default 1024). */
  maxDepth?: number;
  /** Largest accepted PRELUDE (default 1 MiB). */
  maxPreludeBytes?: number;
}

export class PxarSequentialDecoder {
  readonly content: ContentReader;
  /** The read window of the walk in progress (v1 contents of small files are often in it). */
  private window: ItemReader | undefined;

  private constructor(
    readonly archive: ReadAt,
    readonly payload: ReadAt | undefined,
    readonly version: 1 | 2,
    readonly prelude: Buffer | undefined,
    private readonly rootPos: number,
    private readonly opts: SequentialOptions,
  ) {
    this.content = new ContentReader(archive, payload);
  }

  static async open(archive: ReadAt, payload?: ReadAt, opts: SequentialOptions = {}): Promise<PxarSequentialDecoder> {
    const size = archive.size;
    if (size < 16) throw new FormatError(`${size} bytes are too small to contain a pxar archive`, { file: archive.name, offset: 0 });
    const r = new ItemReader(archive, 4096);
    const { version, prelude, rootPos: pos } = await readArchiveStart(r, payload, opts.maxPreludeBytes);
    return new PxarSequentialDecoder(archive, payload, version, prelude, pos, opts);
  }

  /**
   * Every entry in archive order. A directory's `end` is filled in when its GOODBYE is reached
   * (after its children have been yielded). With `from` (a directory found by the accessor and
   * its path), only that subtree is walked: `from` itself comes first, at depth 0.
   */
  async *entries(from?: { entry: PxarEntry; path: Buffer }): AsyncGenerator<SequentialEntry> {
    const size = this.archive.size;
    const maxDepth = this.opts.maxDepth ?? 1024;
    const r = new ItemReader(this.archive, Math.max(4096, this.opts.blockSize ?? 1024 * 1024));
    this.window = r;
    const startPos = from === undefined ? this.rootPos : from.entry.entryOffset;
    const startBody = await decodeEntryBody(r, startPos, size, this.version);
    if (startBody.kind !== 'directory') throw r.error(`the walk must start at a directory, found a ${startBody.kind}`, startPos);
    const root: SequentialEntry = {
      ...entryFromBody(from?.entry.name ?? Buffer.alloc(0), from?.entry.filenameOffset ?? -1, startPos, startBody),
      path: from?.path ?? Buffer.from('/'),
      depth: 0,
    };
    yield root;
    const stack: SequentialEntry[] = [root];
    const version = this.version;
    // One step: the parent's GOODBYE (returns undefined) or the next child, parsed synchronously
    // from the window; only a window miss costs a read (and a promise).
    // Children seen per open directory, to check each GOODBYE against what it closes.
    const counts: number[] = [0];
    // Where each open directory's goodbye tail must point (the archive root's points at 0).
    const tailTargets: number[] = [from === undefined ? 0 : startPos];
    // One step: the parent's GOODBYE (returns the position after it) or the next child, parsed
    // synchronously from the window; only a window miss costs a read (and a promise).
    const step = (pos: number, children: number, entryStart: number): PxarEntry | number => {
      const h = r.headerSync(pos, size);
      if (h.htype === PXAR.GOODBYE) {
        if (h.fullSize !== HEADER_SIZE + GOODBYE_ITEM_SIZE * (children + 1)) {
          throw r.error(`GOODBYE item of ${h.fullSize} bytes does not fit a directory of ${children} entries`, pos);
        }
        const end = pos + h.fullSize;
        const tail = r.view(end - GOODBYE_ITEM_SIZE, GOODBYE_ITEM_SIZE, size, 'goodbye tail');
        if (
          tail.readBigUInt64LE(0) !== PXAR.GOODBYE_TAIL_MARKER ||
          tail.readBigUInt64LE(8) !== BigInt(pos - entryStart) ||
          tail.readBigUInt64LE(16) !== BigInt(h.fullSize)
        ) {
          throw r.error('goodbye tail does not match its directory', end - GOODBYE_ITEM_SIZE);
        }
        return end;
      }
      if (h.htype !== PXAR.FILENAME) {
        throw r.error(`expected a FILENAME or GOODBYE item, found ${pxarTypeName(h.htype)}`, pos);
      }
      return decodeChildSync(r, pos, size, version);
    };
    let pos = startBody.next;
    while (stack.length > 0) {
      const parent = stack[stack.length - 1]!;
      const children = counts[counts.length - 1]!;
      const entryStart = tailTargets[tailTargets.length - 1]!;
      let got: PxarEntry | number;
      try {
        got = step(pos, children, entryStart);
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        const at = pos;
        got = await withWindow(r, at, size, () => step(at, children, entryStart));
      }
      if (typeof got === 'number') {
        pos = got;
        parent.end = pos;
        stack.pop();
        counts.pop();
        tailTargets.pop();
        continue;
      }
      counts[counts.length - 1] = children + 1;
      const depth = parent.depth + 1;
      const pp = parent.path;
      const path = pp[pp.length - 1] === 0x2f ? Buffer.concat([pp, got.name]) : Buffer.concat([pp, SLASH, got.name]);
      const entry = got as SequentialEntry;
      entry.path = path;
      entry.depth = depth;
      pos = got.end;
      if (got.kind === 'directory') {
        if (depth > maxDepth) {
          throw new LimitError(`directories nested deeper than ${maxDepth} levels`, { file: this.archive.name, offset: got.filenameOffset });
        }
        stack.push(entry);
        counts.push(0);
        tailTargets.push(got.entryOffset);
      }
      yield entry;
    }
  }

  /**
   * Streams a regular file's contents in bounded blocks. Inline (v1) contents that the walk's
   * read window already holds are served from it (copied) without another read.
   */
  stream(entry: PxarEntry): AsyncGenerator<Buffer> {
    const off = entry.contentOffset;
    const inWindow = off !== undefined && entry.size <= CONTENT_BLOCK ? this.window?.peek(off, entry.size) : undefined;
    if (inWindow !== undefined && entry.kind === 'file') {
      const copy = Buffer.from(inWindow);
      return (async function* () {
        if (copy.length > 0) yield copy;
      })();
    }
    return this.content.stream(entry);
  }

  read(entry: PxarEntry, offset: number, length: number): Promise<Buffer> {
    return this.content.read(entry, offset, length);
  }
}

const SLASH = Buffer.from('/');
