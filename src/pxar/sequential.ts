/**
 * Sequential pxar decoder (spec §9) for whole-tree work: restore, verify, listing.
 *
 * It walks the item stream front to back through a large read window and yields every entry in
 * archive order (depth-first, the order the upstream decoder reports) with its full path bytes.
 * File contents are not buffered: v1 PAYLOAD data is skipped by position and read on demand,
 * v2 contents are read from the payload stream through PAYLOAD_REF offsets (so decreasing
 * offsets, which some old clients wrote, are handled too). Memory stays bounded by the window,
 * the directory stack (depth-capped) and one entry's attributes.
 */
import { FormatError, LimitError, UsageError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import { ContentReader, checkPayloadStream } from './content.js';
import { FORMAT_VERSION_SIZE, PXAR, pxarTypeName } from './format.js';
import { ItemReader, decodeEntryBody, entryFromBody, readFilename, readHardlink } from './items.js';
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
    let pos = 0;
    let version: 1 | 2 = 1;
    let prelude: Buffer | undefined;
    let h = await r.header(0, size);
    if (h.htype === PXAR.FORMAT_VERSION) {
      if (h.contentSize !== FORMAT_VERSION_SIZE) throw r.error(`FORMAT_VERSION content is ${h.contentSize} bytes, expected 8`, 0);
      const v = (await r.content(h, size)).readBigUInt64LE(0);
      if (v !== 1n && v !== 2n) throw r.error(`unknown pxar format version ${v}`, 0);
      version = v === 2n ? 2 : 1;
      pos = h.fullSize;
      h = await r.header(pos, size);
      if (h.htype === PXAR.PRELUDE) {
        const max = opts.maxPreludeBytes ?? 1024 * 1024;
        if (h.contentSize > max) {
          throw new LimitError(`PRELUDE of ${h.contentSize} bytes exceeds the limit of ${max}`, { file: archive.name, offset: pos });
        }
        prelude = Buffer.from(await r.content(h, size));
        pos += h.fullSize;
        h = await r.header(pos, size);
      }
    }
    if (h.htype !== PXAR.ENTRY && h.htype !== PXAR.ENTRY_V1) {
      throw r.error(`expected the root ENTRY item, found ${pxarTypeName(h.htype)}`, pos);
    }
    if (payload !== undefined) {
      if (version !== 2) throw new UsageError(`a payload stream was given for the unified archive ${archive.name}`);
      await checkPayloadStream(payload);
    }
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
    let pos = startBody.next;
    while (stack.length > 0) {
      const parent = stack[stack.length - 1]!;
      const h = await r.header(pos, size);
      if (h.htype === PXAR.GOODBYE) {
        pos += h.fullSize;
        parent.end = pos;
        stack.pop();
        continue;
      }
      if (h.htype !== PXAR.FILENAME) {
        throw r.error(`expected a FILENAME or GOODBYE item, found ${pxarTypeName(h.htype)}`, pos);
      }
      const fnPos = pos;
      const { name, next } = await readFilename(r, pos, size);
      const path = parent.path.length > 0 && parent.path[parent.path.length - 1] === 0x2f ? Buffer.concat([parent.path, name]) : Buffer.concat([parent.path, SLASH, name]);
      const depth = parent.depth + 1;
      const eh = await r.header(next, size);
      if (eh.htype === PXAR.HARDLINK) {
        const link = await readHardlink(r, eh, size, fnPos);
        pos = next + eh.fullSize;
        yield {
          kind: 'hardlink',
          name,
          filenameOffset: fnPos,
          entryOffset: next,
          end: pos,
          metadata: undefined,
          size: 0,
          contentOffset: undefined,
          payloadOffset: undefined,
          symlinkTarget: undefined,
          device: undefined,
          hardlink: link,
          path,
          depth,
        };
        continue;
      }
      const body = await decodeEntryBody(r, next, size, this.version);
      const entry: SequentialEntry = { ...entryFromBody(name, fnPos, next, body), path, depth };
      pos = body.next;
      if (body.kind === 'directory') {
        if (depth > maxDepth) {
          throw new LimitError(`directories nested deeper than ${maxDepth} levels`, { file: this.archive.name, offset: fnPos });
        }
        stack.push(entry);
      }
      yield entry;
    }
  }

  /** Streams a regular file's contents in bounded blocks. */
  stream(entry: PxarEntry): AsyncGenerator<Buffer> {
    return this.content.stream(entry);
  }

  read(entry: PxarEntry, offset: number, length: number): Promise<Buffer> {
    return this.content.read(entry, offset, length);
  }
}

const SLASH = Buffer.from('/');
