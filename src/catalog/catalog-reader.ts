/**
 * Reader for `.pcat1` catalogs (spec 10): the file list a backup client stores next to pxar
 * archives, so a snapshot can be browsed without decoding the archive.
 *
 *   magic(8) | directory blocks, children before parents | root block | root_offset u64 LE
 *   block = vu64 table_len, table = vu64 count, entries; a 'd' entry points back to its
 *   child block by `parent_start - back_offset`.
 *
 * Hostile input: every offset is checked against the file, child blocks must lie strictly
 * before their parent (so walks cannot loop), a listing visits each block at most once and
 * descends at most MAX_CATALOG_DEPTH levels, and every failure is a typed error naming the
 * catalog and the byte offset.
 */
import { FormatError, LimitError, NotFoundError } from '../errors.js';
import { readExact, type ReadAt, BufferReadAt } from '../io/read-at.js';
import { readU64Big, toHex } from '../util/bytes.js';
import { decodeVi64, decodeVu64, toSafeNumber, VU64_MAX_BYTES } from './varint.js';

export const CATALOG_MAGIC = Buffer.from('91fd60f9c46758d5', 'hex');
/** Upstream's reader refuses names of 4096 bytes or more. */
export const MAX_CATALOG_NAME_LEN = 4095;
/** Deeper than any real path (PATH_MAX 4096 allows at most 2048 levels). */
export const MAX_CATALOG_DEPTH = 2048;

export type CatalogEntryType = 'd' | 'f' | 'l' | 'h' | 'b' | 'c' | 'p' | 's';
export type CatalogSpecialType = Exclude<CatalogEntryType, 'd' | 'f'>;

export interface CatalogDirEntry {
  type: 'd';
  name: Buffer;
  /** File offset of this directory's block. */
  start: number;
}
export interface CatalogFileEntry {
  type: 'f';
  name: Buffer;
  size: number;
  /** Modification time, epoch seconds. */
  mtime: number;
}
export interface CatalogSpecialEntry {
  type: CatalogSpecialType;
  name: Buffer;
}
export type CatalogEntry = CatalogDirEntry | CatalogFileEntry | CatalogSpecialEntry;

export interface CatalogListItem {
  /** Path from the catalog root, components joined by '/', raw bytes. */
  path: Buffer;
  entry: CatalogEntry;
}

const TYPE_BYTES: Record<number, CatalogEntryType> = {
  0x64: 'd',
  0x66: 'f',
  0x6c: 'l',
  0x68: 'h',
  0x62: 'b',
  0x63: 'c',
  0x70: 'p',
  0x73: 's',
};

const TRAILER = 8;
const SLASH = 0x2f;

function nameBytes(name: Uint8Array | string): Buffer {
  return typeof name === 'string' ? Buffer.from(name, 'utf8') : Buffer.from(name.buffer, name.byteOffset, name.byteLength);
}

export class CatalogReader {
  private constructor(
    private readonly src: ReadAt,
    /** File offset of the root directory block. */
    readonly rootStart: number,
  ) {}

  /** Checks magic and root offset; reads nothing else yet. */
  static async open(src: ReadAt): Promise<CatalogReader> {
    const name = src.name;
    const minSize = CATALOG_MAGIC.length + 2 + TRAILER;
    if (src.size < minSize) {
      throw new FormatError(`catalog is too small (${src.size} bytes, at least ${minSize} needed)`, { file: name });
    }
    const magic = await readExact(src, 0, CATALOG_MAGIC.length, 'catalog magic');
    if (!magic.equals(CATALOG_MAGIC)) {
      throw new FormatError(`not a catalog (magic ${toHex(magic)}, expected ${toHex(CATALOG_MAGIC)})`, { file: name, offset: 0 });
    }
    const trailerAt = src.size - TRAILER;
    const root = readU64Big(await readExact(src, trailerAt, TRAILER, 'catalog root offset'), 0);
    if (root < BigInt(CATALOG_MAGIC.length) || root >= BigInt(trailerAt)) {
      throw new FormatError(`catalog root offset ${root} lies outside the directory data [8..${trailerAt})`, {
        file: name,
        offset: trailerAt,
      });
    }
    return new CatalogReader(src, Number(root));
  }

  /** A catalog held in memory. */
  static fromBuffer(data: Buffer, name = 'catalog'): Promise<CatalogReader> {
    return CatalogReader.open(new BufferReadAt(name, data));
  }

  get name(): string {
    return this.src.name;
  }

  /** The root directory (`/`), whose entries are one directory per archive. */
  root(): CatalogDirEntry {
    return { type: 'd', name: Buffer.alloc(0), start: this.rootStart };
  }

  /** Parses the whole directory block at `dir` (a directory entry or a block offset). */
  async readDir(dir: CatalogDirEntry | number): Promise<CatalogEntry[]> {
    const start = typeof dir === 'number' ? dir : dir.start;
    const file = this.src.name;
    const dataEnd = this.src.size - TRAILER;
    if (!Number.isSafeInteger(start) || start < CATALOG_MAGIC.length || start >= dataEnd) {
      throw new FormatError(`directory block offset ${start} lies outside the directory data`, { file, offset: start });
    }
    const head = await this.src.readAt(start, Math.min(VU64_MAX_BYTES, dataEnd - start));
    const tl = decodeVu64(head, 0, { file }, start);
    const tableStart = start + tl.length;
    if (tl.value < 1n) throw new FormatError('directory block has an empty table (table_len 0)', { file, offset: start });
    if (tl.value > BigInt(dataEnd - tableStart)) {
      throw new FormatError(`directory table of ${tl.value} bytes runs past the end of the directory data`, {
        file,
        offset: start,
      });
    }
    const table = await readExact(this.src, tableStart, Number(tl.value), 'directory table');
    return parseTable(table, start, tableStart, file);
  }

  /** Finds `name` in `dir` (exact byte comparison); undefined when absent. */
  async lookup(dir: CatalogDirEntry, name: Uint8Array | string): Promise<CatalogEntry | undefined> {
    const want = nameBytes(name);
    for (const e of await this.readDir(dir)) if (e.name.equals(want)) return e;
    return undefined;
  }

  /**
   * Resolves an absolute path such as `/root.pxar.didx/etc/hostname` (the first component is
   * the archive). `/` or an empty path is the root. Empty components (`a//b`, a trailing `/`)
   * are ignored. A missing component is a NotFoundError; walking through a non-directory too.
   */
  async lookupPath(path: Uint8Array | string): Promise<CatalogEntry> {
    const p = nameBytes(path);
    let cur: CatalogEntry = this.root();
    let pos = 0;
    let depth = 0;
    while (pos <= p.length) {
      let end = p.indexOf(SLASH, pos);
      if (end < 0) end = p.length;
      const comp = p.subarray(pos, end);
      pos = end + 1;
      if (comp.length === 0) continue;
      if (++depth > MAX_CATALOG_DEPTH) throw new LimitError(`path has more than ${MAX_CATALOG_DEPTH} components`, { file: this.name });
      if (cur.type !== 'd') {
        throw new NotFoundError(`${JSON.stringify(p.toString('utf8'))} not found: ${JSON.stringify(cur.name.toString('utf8'))} is not a directory`, {
          file: this.name,
        });
      }
      const next = await this.lookup(cur, comp);
      if (next === undefined) {
        throw new NotFoundError(`${JSON.stringify(p.toString('utf8'))} not found in the catalog`, { file: this.name });
      }
      cur = next;
    }
    return cur;
  }

  /**
   * Depth-first walk below `dir` (default: the root), in stored order, each directory before
   * its contents. Iterative: a deep or hostile catalog cannot overflow the stack; each block
   * is visited at most once, so a catalog whose entries share a block cannot blow up.
   */
  async *walk(dir: CatalogDirEntry = this.root(), prefix: Uint8Array = Buffer.alloc(0)): AsyncGenerator<CatalogListItem> {
    const seen = new Set<number>([dir.start]);
    // Each frame: the remaining entries of one directory and its path.
    const stack: { entries: CatalogEntry[]; next: number; path: Buffer }[] = [
      { entries: await this.readDir(dir), next: 0, path: Buffer.from(prefix) },
    ];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const e = top.entries[top.next++];
      if (e === undefined) {
        stack.pop();
        continue;
      }
      const path = top.path.length === 0 ? e.name : Buffer.concat([top.path, Buffer.of(SLASH), e.name]);
      yield { path, entry: e };
      if (e.type === 'd') {
        if (seen.has(e.start)) {
          throw new FormatError(`directory block at ${e.start} is referenced twice`, { file: this.name, offset: e.start });
        }
        seen.add(e.start);
        if (stack.length >= MAX_CATALOG_DEPTH) {
          throw new LimitError(`catalog directories nest deeper than ${MAX_CATALOG_DEPTH} levels`, {
            file: this.name,
            offset: e.start,
          });
        }
        stack.push({ entries: await this.readDir(e), next: 0, path });
      }
    }
  }

  /** Everything below `dir` (default: the whole catalog), as `walk` yields it. */
  async list(dir?: CatalogDirEntry): Promise<CatalogListItem[]> {
    const out: CatalogListItem[] = [];
    for await (const item of this.walk(dir)) out.push(item);
    return out;
  }
}

/** Parses one directory table; it must be consumed exactly. */
function parseTable(table: Buffer, blockStart: number, tableStart: number, file: string): CatalogEntry[] {
  const ctx = { file };
  const count = decodeVu64(table, 0, ctx, tableStart);
  let off = count.length;
  // Each entry takes at least two bytes (type and name length): a larger count cannot fit.
  if (count.value > BigInt(Math.floor((table.length - off) / 2))) {
    throw new FormatError(`directory table claims ${count.value} entries but holds only ${table.length} bytes`, {
      file,
      offset: tableStart,
    });
  }
  const n = Number(count.value);
  const entries: CatalogEntry[] = [];
  for (let i = 0; i < n; i++) {
    const entryAt = tableStart + off;
    const tb = table[off];
    if (tb === undefined) throw new FormatError('directory table ends inside an entry', { file, offset: entryAt });
    const type = TYPE_BYTES[tb];
    if (type === undefined) {
      throw new FormatError(`unknown catalog entry type 0x${tb.toString(16).padStart(2, '0')}`, { file, offset: entryAt });
    }
    off += 1;
    const nl = decodeVu64(table, off, ctx, tableStart);
    off += nl.length;
    if (nl.value > BigInt(MAX_CATALOG_NAME_LEN)) {
      throw new FormatError(`entry name of ${nl.value} bytes is too long (limit ${MAX_CATALOG_NAME_LEN})`, {
        file,
        offset: entryAt,
      });
    }
    const nameLen = Number(nl.value);
    if (off + nameLen > table.length) {
      throw new FormatError('entry name runs past the end of the directory table', { file, offset: entryAt });
    }
    const name = Buffer.from(table.subarray(off, off + nameLen));
    checkName(name, file, entryAt);
    off += nameLen;
    if (type === 'd') {
      const bo = decodeVu64(table, off, ctx, tableStart);
      off += bo.length;
      // The child block is written before its parent's: 0 < back_offset <= start - 8.
      if (bo.value < 1n || bo.value > BigInt(blockStart - CATALOG_MAGIC.length)) {
        throw new FormatError(`directory entry points ${bo.value} bytes back from block ${blockStart}, outside the catalog data`, {
          file,
          offset: entryAt,
        });
      }
      entries.push({ type, name, start: blockStart - Number(bo.value) });
    } else if (type === 'f') {
      const sz = decodeVu64(table, off, ctx, tableStart);
      off += sz.length;
      const mt = decodeVi64(table, off, ctx, tableStart);
      off += mt.length;
      entries.push({
        type,
        name,
        size: toSafeNumber(sz.value, 'file size', { file, offset: entryAt }),
        mtime: toSafeNumber(mt.value, 'file mtime', { file, offset: entryAt }),
      });
    } else {
      entries.push({ type, name });
    }
  }
  if (off !== table.length) {
    throw new FormatError(`directory table has ${table.length - off} trailing bytes after its ${n} entries`, {
      file,
      offset: tableStart + off,
    });
  }
  return entries;
}

/** A name must be a single path component: a hostile one could otherwise escape a restore. */
function checkName(name: Buffer, file: string, offset: number): void {
  if (name.length === 0) throw new FormatError('catalog entry has an empty name', { file, offset });
  if (name.includes(SLASH) || name.includes(0)) {
    throw new FormatError(`catalog entry name ${JSON.stringify(name.toString('utf8'))} contains '/' or NUL`, { file, offset });
  }
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) {
    throw new FormatError(`catalog entry is named ${JSON.stringify(name.toString('utf8'))}`, { file, offset });
  }
}

