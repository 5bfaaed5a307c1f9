/**
 * Random access to a pxar archive (spec §11): open the root from the goodbye tail at the end,
 * look names up through GOODBYE tables, list directories, read file ranges, follow hardlinks.
 *
 * Laziness: a lookup reads, per directory on the path, its 24-byte tail, its table, and the
 * FILENAME+ENTRY(+attrs) of the candidate children only; a listing reads the table and each
 * child's metadata; file contents are read only when asked for. Goodbye tables and decoded entries
 * are kept in bounded LRU caches keyed by archive offset.
 *
 * Safety: every position derived from the archive is checked against the stream size and against
 * its parent's range (a child directory must lie strictly inside its parent, so descent always
 * terminates); table sizes are bounded; names are validated; errors are typed and name the
 * archive and the offset.
 */
import { LRUCache } from 'lru-cache';
import { FormatError, LimitError, NotFoundError, UsageError } from '../errors.js';
import type { HeldBytes, ReadAt } from '../io/read-at.js';
import { ContentReader } from './content.js';
import { GOODBYE_ITEM_SIZE, HEADER_SIZE, PXAR, pxarTypeName } from './format.js';
import { ItemReader, NeedMore, decodeChild, decodeChildSync, decodeEntryBody, entryFromBody, readArchiveStart } from './items.js';
import { pxarHashParts } from './siphash.js';
import type { PxarEntry } from './types.js';

/** How far ahead of the child being decoded a directory listing asks for data (default). */
const READDIR_PREFETCH_BYTES = 8 * 1024 * 1024;

export interface AccessorOptions {
  /** Decoded entries kept in memory (default 8192). */
  cacheEntries?: number;
  /** Bytes of goodbye tables kept in memory (default 64 MiB). */
  cacheTableBytes?: number;
  /** Largest accepted directory (children per GOODBYE table; default 4 Mi). */
  maxTableEntries?: number;
  /** Largest accepted PRELUDE (default 1 MiB). */
  maxPreludeBytes?: number;
  /**
   * How far ahead of the child being decoded a listing asks for data (default 8 MiB). Fetched
   * chunks wait in the chunk cache until the listing gets to them: keep this well inside it.
   */
  readdirPrefetchBytes?: number;
}

/** An opened directory: its goodbye table (records without the tail) and where things are. */
export interface PxarDir {
  entry: PxarEntry;
  /** Where the tail says the directory starts (root: 0, else its ENTRY item). */
  entryStart: number;
  goodbyeStart: number;
  end: number;
  /** n records of 24 bytes: hash u64, offset u64, size u64. */
  table: Buffer;
  count: number;
}

const MAX_PATH_COMPONENTS = 1024;

/** A goodbye record, checked: where its child starts, its size, where the record is. */
interface ChildRecord {
  pos: number;
  /** +Infinity for sizes at or above 2^53. */
  size: number;
  /** Archive offset of the record (for messages). */
  recPos: number;
  /** Offset of the record in the directory's table. */
  tableAt: number;
}

/** A little-endian u64 as a number; +Infinity at or above 2^53. */
function u64AsNumber(b: Buffer, at: number): number {
  const hi = b.readUInt32LE(at + 4);
  return hi >= 0x200000 ? Infinity : hi * 0x1_0000_0000 + b.readUInt32LE(at);
}

export class PxarAccessor {
  readonly content: ContentReader;
  private readonly tables: LRUCache<number, PxarDir>;
  private readonly entries: LRUCache<number, PxarEntry>;
  private readonly maxTableEntries: number;
  private readonly readdirPrefetchBytes: number;

  private constructor(
    readonly archive: ReadAt,
    readonly payload: ReadAt | undefined,
    readonly version: 1 | 2,
    readonly prelude: Buffer | undefined,
    private readonly rootEntry: PxarEntry,
    private readonly rootDir: PxarDir,
    opts: AccessorOptions,
  ) {
    this.content = new ContentReader(archive, payload);
    this.maxTableEntries = opts.maxTableEntries ?? 4 * 1024 * 1024;
    this.readdirPrefetchBytes = Math.max(0, opts.readdirPrefetchBytes ?? READDIR_PREFETCH_BYTES);
    this.tables = new LRUCache<number, PxarDir>({
      maxSize: Math.max(1, opts.cacheTableBytes ?? 64 * 1024 * 1024),
      sizeCalculation: (d) => d.table.length + 64,
    });
    this.entries = new LRUCache<number, PxarEntry>({ max: Math.max(1, opts.cacheEntries ?? 8192) });
  }

  /** Opens an archive: `payload` is the .ppxar stream of a split (format version 2) archive. */
  static async open(archive: ReadAt, payload?: ReadAt, opts: AccessorOptions = {}): Promise<PxarAccessor> {
    const size = archive.size;
    if (size < 24) throw new FormatError(`${size} bytes are too small to contain a pxar archive`, { file: archive.name, offset: 0 });
    const r = new ItemReader(archive, 4096);
    const { version, prelude, rootPos: pos } = await readArchiveStart(r, payload, opts.maxPreludeBytes);
    const placeholder = {} as PxarEntry;
    const acc0 = new PxarAccessor(archive, payload, version, prelude, placeholder, {} as PxarDir, opts);
    // The root's tail points at the archive start (0), not at the root ENTRY (spec §7).
    const dir = await acc0.readGoodbye(size, 0, size);
    const body = await decodeEntryBody(r, pos, dir.goodbyeStart, version);
    if (body.kind !== 'directory') throw r.error(`the root entry is a ${body.kind}, not a directory`, pos);
    const root = entryFromBody(Buffer.alloc(0), -1, pos, body);
    root.end = size;
    dir.entry = root;
    return new PxarAccessor(archive, payload, version, prelude, root, dir, opts);
  }

  get name(): string {
    return this.archive.name;
  }

  root(): PxarEntry {
    return this.rootEntry;
  }

  private error(problem: string, offset: number): FormatError {
    return new FormatError(problem, { file: this.archive.name, offset });
  }

  /**
   * Reads and checks the goodbye table of the directory whose GOODBYE item ends at `end`.
   * `expectedEntryStart` is where the directory's entry is known to start; `parentLimit` bounds
   * the whole directory.
   */
  private async readGoodbye(end: number, expectedEntryStart: number, parentLimit: number): Promise<PxarDir> {
    const size = this.archive.size;
    if (end > parentLimit || end > size || end < HEADER_SIZE + GOODBYE_ITEM_SIZE) {
      throw this.error(`directory end ${end} lies outside its range (${parentLimit})`, end);
    }
    const r = new ItemReader(this.archive, GOODBYE_ITEM_SIZE);
    const tail = await r.bytes(end - GOODBYE_ITEM_SIZE, GOODBYE_ITEM_SIZE, end, 'goodbye tail');
    if (tail.readBigUInt64LE(0) !== PXAR.GOODBYE_TAIL_MARKER) {
      throw this.error('no goodbye tail marker found at the end of the directory', end - GOODBYE_ITEM_SIZE);
    }
    const tailOffset = tail.readBigUInt64LE(8);
    const tailSize = tail.readBigUInt64LE(16);
    if (tailSize > BigInt(end) || tailSize < BigInt(HEADER_SIZE + GOODBYE_ITEM_SIZE)) {
      throw this.error(`goodbye table size ${tailSize} is invalid for a directory ending at ${end}`, end - GOODBYE_ITEM_SIZE);
    }
    const fullSize = Number(tailSize);
    if ((fullSize - HEADER_SIZE) % GOODBYE_ITEM_SIZE !== 0) {
      throw this.error(`goodbye table size ${fullSize} is not 16 + a multiple of 24`, end - GOODBYE_ITEM_SIZE);
    }
    const goodbyeStart = end - fullSize;
    if (tailOffset > BigInt(goodbyeStart)) {
      throw this.error(`goodbye tail offset ${tailOffset} points before the start of the archive`, end - GOODBYE_ITEM_SIZE);
    }
    const entryStart = goodbyeStart - Number(tailOffset);
    if (entryStart !== expectedEntryStart) {
      throw this.error(
        `goodbye tail points at ${entryStart} but the directory entry is at ${expectedEntryStart}`,
        end - GOODBYE_ITEM_SIZE,
      );
    }
    const count = (fullSize - HEADER_SIZE) / GOODBYE_ITEM_SIZE - 1;
    if (count > this.maxTableEntries) {
      throw new LimitError(`directory has ${count} entries, more than the limit of ${this.maxTableEntries}`, {
        file: this.archive.name,
        offset: goodbyeStart,
      });
    }
    const item = await r.bytes(goodbyeStart, fullSize - GOODBYE_ITEM_SIZE, end, 'goodbye table');
    if (item.readBigUInt64LE(0) !== PXAR.GOODBYE || item.readBigUInt64LE(8) !== tailSize) {
      throw this.error(
        `goodbye tail disagrees with the GOODBYE item header (${pxarTypeName(item.readBigUInt64LE(0))}, size ${item.readBigUInt64LE(8)})`,
        goodbyeStart,
      );
    }
    const table = Buffer.from(item.subarray(HEADER_SIZE));
    return { entry: this.rootEntry, entryStart, goodbyeStart, end, table, count };
  }

  /** Opens a directory entry (cached by its end offset). */
  async openDir(entry: PxarEntry): Promise<PxarDir> {
    if (entry.kind !== 'directory') {
      throw new UsageError(`${entry.name.toString()} is a ${entry.kind}, not a directory`, {
        file: this.archive.name,
        offset: entry.entryOffset,
      });
    }
    if (entry.filenameOffset < 0) return this.rootDir;
    const hit = this.tables.get(entry.end);
    if (hit !== undefined) return hit;
    const dir = await this.readGoodbye(entry.end, entry.entryOffset, this.archive.size);
    dir.entry = entry;
    this.tables.set(entry.end, dir);
    return dir;
  }

  /** Where the child of table record `idx` starts, checked against its directory. */
  private childRecord(dir: PxarDir, idx: number): ChildRecord {
    const rec = idx * GOODBYE_ITEM_SIZE;
    const recPos = dir.goodbyeStart + HEADER_SIZE + rec;
    // u64 fields as numbers from their halves (no BigInt per child); anything at or above 2^53
    // is far outside any directory, and becomes +Infinity so that the checks below refuse it.
    const off = u64AsNumber(dir.table, rec + 8);
    const size = u64AsNumber(dir.table, rec + 16);
    // Children lie after the directory's own ENTRY header and before its GOODBYE.
    if (off === 0 || off > dir.goodbyeStart - dir.entryStart - HEADER_SIZE) {
      throw this.error(`goodbye record offset ${dir.table.readBigUInt64LE(rec + 8)} points outside its directory`, recPos);
    }
    return { pos: dir.goodbyeStart - off, size, recPos, tableAt: rec };
  }

  /** Checks a decoded child against its record (a subdirectory's size is exact) and caches it. */
  private placeChild(dir: PxarDir, entry: PxarEntry, rec: ChildRecord, remember: boolean): PxarEntry {
    if (entry.kind === 'directory') {
      // A subdirectory's recorded size is exact: it ends at its own GOODBYE's end.
      const { pos, size } = rec;
      if (size > dir.goodbyeStart - pos || size < entry.end - pos) {
        const shown = dir.table.readBigUInt64LE(rec.tableAt + 16);
        throw this.error(`goodbye record size ${shown} of directory ${entry.name.toString()} does not fit its parent`, rec.recPos);
      }
      entry.end = pos + size;
    }
    if (remember) this.entries.set(rec.pos, entry);
    return entry;
  }

  /**
   * The child of table record `idx`: at once when its bytes are in memory (the reader's window,
   * or what the source holds, e.g. harvested metadata), else a promise. `remember`: keep the
   * entry in the entry cache (lookups); listings hand theirs to the caller.
   */
  private child(dir: PxarDir, idx: number, reader: ItemReader, remember: boolean): PxarEntry | Promise<PxarEntry> {
    const rec = this.childRecord(dir, idx);
    const cached = this.entries.get(rec.pos);
    if (cached !== undefined) return cached;
    this.archive.itemStartHint?.(rec.pos);
    // Load the window from memory first: a parse that runs out of bytes costs a throw.
    if (reader.peek(rec.pos, HEADER_SIZE) === undefined) reader.fillFromMemory(rec.pos, HEADER_SIZE, dir.goodbyeStart);
    try {
      return this.placeChild(dir, decodeChildSync(reader, rec.pos, dir.goodbyeStart, this.version), rec, remember);
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
    }
    return decodeChild(reader, rec.pos, dir.goodbyeStart, this.version).then((entry) => this.placeChild(dir, entry, rec, remember));
  }

  /** The child of table record `idx` (see child()). */
  private async childAt(dir: PxarDir, idx: number, r?: ItemReader, remember = true): Promise<PxarEntry> {
    return this.child(dir, idx, r ?? new ItemReader(this.archive, 512), remember);
  }

  /**
   * The entry whose FILENAME item starts at `pos`, found before through a listing or lookup (a
   * mount rebuilds nodes it has dropped from its cache this way). Directories need their `end`
   * (from their parent's goodbye record); other kinds end with their own terminal item.
   */
  async entryAt(pos: number, end?: number): Promise<PxarEntry> {
    const cached = this.entries.get(pos);
    if (cached !== undefined) return cached;
    const limit = end ?? this.archive.size;
    if (!Number.isSafeInteger(pos) || pos < 0 || limit > this.archive.size || pos >= limit) {
      throw this.error(`no entry can start at ${pos}`, Math.max(0, Math.min(pos, this.archive.size)));
    }
    const entry = await decodeChild(new ItemReader(this.archive, 512), pos, limit, this.version);
    if (entry.kind === 'directory') {
      if (end === undefined) throw this.error('a directory entry was asked for without its end', pos);
      entry.end = end;
    }
    this.entries.set(pos, entry);
    return entry;
  }

  /** Table indices whose hash equals `name`'s, in table order (BST descent, both sides on ties). */
  private candidates(dir: PxarDir, name: Buffer): number[] {
    const { lo, hi } = pxarHashParts(name);
    const out: number[] = [];
    const stack = [0];
    const t = dir.table;
    while (stack.length > 0) {
      let i = stack.pop()!;
      while (i < dir.count) {
        const rhi = t.readUInt32LE(i * GOODBYE_ITEM_SIZE + 4);
        const rlo = t.readUInt32LE(i * GOODBYE_ITEM_SIZE);
        if (hi < rhi || (hi === rhi && lo < rlo)) i = 2 * i + 1;
        else if (hi > rhi || lo > rlo) i = 2 * i + 2;
        else {
          out.push(i);
          stack.push(2 * i + 2);
          i = 2 * i + 1;
        }
      }
    }
    return out.sort((a, b) => a - b);
  }

  /** One child of `dirEntry` by name (raw bytes), or undefined. */
  async lookup(dirEntry: PxarEntry, name: Buffer): Promise<PxarEntry | undefined> {
    const dir = await this.openDir(dirEntry);
    for (const idx of this.candidates(dir, name)) {
      const e = await this.childAt(dir, idx);
      if (e.name.equals(name)) return e;
    }
    return undefined;
  }

  /** All children of `dirEntry`, in archive order (sorted by name for PBS-made archives). */
  async readdir(dirEntry: PxarEntry): Promise<PxarEntry[]> {
    const dir = await this.openDir(dirEntry);
    const order: { idx: number; pos: number }[] = [];
    for (let i = 0; i < dir.count; i++) {
      order.push({ idx: i, pos: dir.goodbyeStart - u64AsNumber(dir.table, i * GOODBYE_ITEM_SIZE + 8) });
    }
    order.sort((a, b) => a.pos - b.pos);
    const r = new ItemReader(this.archive, 16 * 1024);
    const out: PxarEntry[] = [];
    // A large directory's children are spread over many chunks (in a unified archive, between
    // the contents of its files): ask for the next few MiB ahead of the one being decoded, so
    // that fetching and decrypting them overlaps with decoding (and each other).
    let hinted = 0;
    let lastHint = -Infinity;
    for (const { idx, pos } of order) {
      if (this.archive.prefetch !== undefined) {
        while (hinted < order.length && order[hinted]!.pos <= pos + this.readdirPrefetchBytes) {
          const at = order[hinted]!.pos;
          // Children packed closely share chunks: one hint per 256 KiB is enough.
          if (at >= lastHint + 256 * 1024) {
            this.archive.prefetch(at, HEADER_SIZE);
            lastHint = at;
          }
          hinted++;
        }
      }
      const got = this.child(dir, idx, r, false);
      const e = got instanceof Promise ? await got : got;
      // A record must carry its child's name hash, or lookups could never find that child.
      const { lo, hi } = pxarHashParts(e.name);
      const rec = idx * GOODBYE_ITEM_SIZE;
      if (dir.table.readUInt32LE(rec) !== lo || dir.table.readUInt32LE(rec + 4) !== hi) {
        throw this.error(
          `goodbye record hash does not match the name ${JSON.stringify(e.name.toString('utf8'))}`,
          dir.goodbyeStart + HEADER_SIZE + rec,
        );
      }
      out.push(e);
    }
    return out;
  }

  /**
   * Looks up a path relative to the root ("/a/b", "a/b", "." all work; ".." is refused).
   * Hardlinks are returned as such; use resolve() for the target.
   */
  async lookupPath(path: string | Buffer): Promise<PxarEntry | undefined> {
    const raw = typeof path === 'string' ? Buffer.from(path, 'utf8') : path;
    const parts: Buffer[] = [];
    let start = 0;
    for (let i = 0; i <= raw.length; i++) {
      if (i === raw.length || raw[i] === 0x2f) {
        const c = raw.subarray(start, i);
        start = i + 1;
        if (c.length === 0 || (c.length === 1 && c[0] === 0x2e)) continue;
        if (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e) {
          throw new UsageError(`cannot enter the parent directory ("..") inside archive ${this.archive.name}`);
        }
        parts.push(c);
      }
    }
    if (parts.length > MAX_PATH_COMPONENTS) {
      throw new LimitError(`path has more than ${MAX_PATH_COMPONENTS} components`, { file: this.archive.name });
    }
    let cur = this.rootEntry;
    for (const p of parts) {
      if (cur.kind !== 'directory') return undefined;
      const next = await this.lookup(cur, p);
      if (next === undefined) return undefined;
      cur = next;
    }
    return cur;
  }

  /** The target of a hardlink (a regular file), or the entry itself. */
  async resolve(entry: PxarEntry): Promise<PxarEntry> {
    const link = entry.hardlink;
    if (link === undefined) return entry;
    const pos = link.targetFilenameOffset;
    const cached = this.entries.get(pos);
    if (cached !== undefined && cached.kind === 'file') return cached;
    const r = new ItemReader(this.archive, 512);
    const target = await decodeChild(r, pos, this.archive.size, this.version);
    if (target.kind !== 'file') {
      throw this.error(`hardlink target is a ${target.kind}, not a regular file`, entry.filenameOffset);
    }
    this.entries.set(pos, target);
    return target;
  }

  /** Up to `length` bytes of a regular file (or hardlink) at `offset`. */
  async read(entry: PxarEntry, offset: number, length: number): Promise<Buffer> {
    return this.content.read(await this.resolve(entry), offset, length);
  }

  /** As read(), lent until release() where the archive's source can lend (ReadAt.readHeld). */
  async readHeld(entry: PxarEntry, offset: number, length: number): Promise<HeldBytes> {
    return this.content.readHeld(await this.resolve(entry), offset, length);
  }

  /** ReadAt.forget for bytes of a regular file (or hardlink); a hint, never fails. */
  async forget(entry: PxarEntry, offset: number, length: number): Promise<void> {
    // A hardlink that does not resolve has nothing cached to drop; its reads report the error.
    const target = await this.resolve(entry).catch(() => undefined);
    if (target !== undefined) await this.content.forget(target, offset, length);
  }

  /** Streams a whole regular file (or hardlink) in bounded blocks. */
  stream(entry: PxarEntry): AsyncGenerator<Buffer> {
    const self = this;
    return (async function* () {
      yield* self.content.stream(await self.resolve(entry));
    })();
  }

  /** Throws NotFoundError for a missing path (CLI convenience). */
  async requirePath(path: string | Buffer): Promise<PxarEntry> {
    const e = await this.lookupPath(path);
    if (e === undefined) {
      throw new NotFoundError(`no such file or directory in the archive: ${path.toString()}`, { file: this.archive.name, errorCode: 'path-not-found' });
    }
    return e;
  }
}
