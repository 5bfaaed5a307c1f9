/**
 * Item-level decoding shared by the accessor and the sequential decoder: a windowed reader over
 * a ReadAt, header validation, name checks, and the decoding of one entry's ENTRY + attributes +
 * terminal item. Every failure is a typed error naming the archive and the byte offset.
 */
import { FormatError, LimitError, UsageError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import {
  ACL_DEFAULT_SIZE,
  ACL_GROUP_OBJ_SIZE,
  ACL_GROUP_SIZE,
  ACL_USER_SIZE,
  DEVICE_SIZE,
  ENTRY_SIZE,
  ENTRY_V1_SIZE,
  HEADER_SIZE,
  MAX_CONTENT_SIZE,
  MODE,
  PAYLOAD_REF_SIZE,
  FORMAT_VERSION_SIZE,
  PXAR,
  QUOTA_PROJID_SIZE,
  pxarTypeName,
} from './format.js';
import { emptyAcl, type PxarAcl, type PxarAclEntry, type PxarXattr, type PxarEntry, type PxarHardlink, type PxarKind, type PxarMetadata, type PxarStat } from './types.js';

/** Bound on one entry's attribute bytes (xattrs, ACLs, fcaps) kept in memory. */
export const MAX_METADATA_BYTES = 16 * 1024 * 1024;

export interface ItemHeader {
  htype: bigint;
  /** Position of the header. */
  pos: number;
  fullSize: number;
  contentSize: number;
}

const EMPTY = Buffer.alloc(0);

/** Known item types by their low 32 bits (all distinct), with their high half and size limit. */
const TYPE_BY_LO = new Map<number, { type: bigint; hi: number; max: number | undefined }>(
  Object.values(PXAR).map((t) => [Number(t & 0xffffffffn), { type: t, hi: Number(t >> 32n), max: MAX_CONTENT_SIZE.get(t) }]),
);
if (TYPE_BY_LO.size !== Object.values(PXAR).length) throw new Error('pxar type constants collide in their low 32 bits');

/**
 * Thrown (internally, never escaping the decoders) by the synchronous parsers when the bytes they
 * need are not in the reader's window yet; `end` is how far the window must reach.
 */
export class NeedMore {
  constructor(readonly end: number) {}
}

/**
 * Reads items through a window: one readAt fetches `readAhead` bytes (clipped to the caller's
 * limit), so the small items of an entry cost one read, while large contents are never touched
 * unless asked for. Parsing is synchronous over the window (NeedMore when it runs out; see
 * `withWindow`), so decoding an entry costs no promise per item.
 */
export class ItemReader {
  private buf: Buffer = EMPTY;
  private bufStart = 0;
  /** Reused by headerScratch(): the decoders read ~6 headers per entry and keep none. */
  private readonly scratch: ItemHeader = { htype: 0n, pos: 0, fullSize: 0, contentSize: 0 };

  constructor(
    readonly src: ReadAt,
    readonly readAhead: number,
  ) {}

  get name(): string {
    return this.src.name;
  }

  error(problem: string, offset: number): FormatError {
    return new FormatError(problem, { file: this.src.name, offset });
  }

  /** Exactly `len` bytes at `pos` from the window; FormatError beyond `limit`, NeedMore if not loaded. */
  view(pos: number, len: number, limit: number, what: string): Buffer {
    if (pos < 0 || len < 0 || pos + len > limit || limit > this.src.size) {
      throw this.error(`${what} (${len} bytes) extends past the end of its range (${limit})`, pos);
    }
    const off = pos - this.bufStart;
    if (off >= 0 && off + len <= this.buf.length) return this.buf.subarray(off, off + len);
    throw new NeedMore(pos + len);
  }

  /** The bytes [pos, pos + len) if the window holds them (no read), else undefined. */
  peek(pos: number, len: number): Buffer | undefined {
    const off = pos - this.bufStart;
    return off >= 0 && off + len <= this.buf.length ? this.buf.subarray(off, off + len) : undefined;
  }

  /**
   * Loads what the source holds in memory at `pos` (e.g. harvested metadata: at least `len`,
   * at most max(len, readAhead) bytes, clipped to `limit`) into the window, without reading.
   * False when it holds less than `len` there.
   */
  fillFromMemory(pos: number, len: number, limit: number): boolean {
    const want = Math.min(Math.max(len, this.readAhead), limit - pos);
    const held = len <= want ? this.src.readSome?.(pos, len, want) : undefined;
    if (held === undefined || held.length < len) return false;
    this.buf = held;
    this.bufStart = pos;
    return true;
  }

  /** Loads [pos, pos + max(len, readAhead)) clipped to `limit` into the window. */
  async fill(pos: number, len: number, limit: number): Promise<void> {
    // What the source already holds in memory may end before the read-ahead: that is enough.
    if (this.fillFromMemory(pos, len, limit)) return;
    const want = Math.min(Math.max(len, this.readAhead), limit - pos);
    const b = await this.src.readAt(pos, want);
    if (b.length < Math.min(len, want)) {
      throw this.error(`short read: wanted ${want} bytes, got ${b.length} (truncated archive?)`, pos);
    }
    this.buf = b;
    this.bufStart = pos;
  }

  /** Exactly `len` bytes at `pos`, refusing anything that reaches beyond `limit`. */
  async bytes(pos: number, len: number, limit: number, what: string): Promise<Buffer> {
    return withWindow(this, pos, limit, () => this.view(pos, len, limit, what));
  }

  /** The item header at `pos`; the whole item must end at or before `limit`. */
  headerSync(pos: number, limit: number): ItemHeader {
    return this.headerInto(pos, limit, { htype: 0n, pos: 0, fullSize: 0, contentSize: 0 });
  }

  /**
   * headerSync() into this reader's one reused header: valid only until the next call. For the
   * synchronous decoders below, which never hold a header across another header read.
   */
  headerScratch(pos: number, limit: number): ItemHeader {
    return this.headerInto(pos, limit, this.scratch);
  }

  private headerInto(pos: number, limit: number, out: ItemHeader): ItemHeader {
    if (pos < 0 || pos + HEADER_SIZE > limit || limit > this.src.size) {
      throw this.error(`item header (16 bytes) extends past the end of its range (${limit})`, pos);
    }
    const off = pos - this.bufStart;
    const b = this.buf;
    if (off < 0 || off + HEADER_SIZE > b.length) throw new NeedMore(pos + HEADER_SIZE);
    // Read as 32-bit halves: known types map back to their constant without a BigInt per item.
    const tlo = b.readUInt32LE(off);
    const thi = b.readUInt32LE(off + 4);
    const known = TYPE_BY_LO.get(tlo);
    const htype = known !== undefined && known.hi === thi ? known.type : b.readBigUInt64LE(off);
    const lo = b.readUInt32LE(off + 8);
    const hi = b.readUInt32LE(off + 12);
    // full_size as a number; anything at or above 2^53 is far beyond any limit anyway.
    const full = hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x1_0000_0000 + lo;
    if (full < HEADER_SIZE) {
      throw this.error(`${pxarTypeName(htype)} item has an invalid size ${full} (below 16)`, pos);
    }
    if (full > limit - pos) {
      throw this.error(
        `${pxarTypeName(htype)} item of ${hi >= 0x200000 ? b.readBigUInt64LE(off + 8) : full} bytes extends past the end of its range (${limit})`,
        pos,
      );
    }
    const contentSize = full - HEADER_SIZE;
    const max = known !== undefined ? known.max : undefined;
    if (max !== undefined && contentSize > max) {
      throw this.error(`${pxarTypeName(htype)} item content of ${contentSize} bytes exceeds its limit ${max}`, pos);
    }
    out.htype = htype;
    out.pos = pos;
    out.fullSize = full;
    out.contentSize = contentSize;
    return out;
  }

  async header(pos: number, limit: number): Promise<ItemHeader> {
    return withWindow(this, pos, limit, () => this.headerSync(pos, limit));
  }

  /** The content of an item whose header was just read. */
  contentSync(h: ItemHeader, limit: number): Buffer {
    const pos = h.pos + HEADER_SIZE;
    const len = h.contentSize;
    const off = pos - this.bufStart;
    if (off >= 0 && off + len <= this.buf.length && pos + len <= limit) return this.buf.subarray(off, off + len);
    return this.view(pos, len, limit, `${pxarTypeName(h.htype)} content`);
  }

  /**
   * Where the content of an item whose header was just read starts in `window` (contentSync()
   * without a view: for fixed-size contents parsed in place).
   */
  contentStart(h: ItemHeader, limit: number): number {
    const pos = h.pos + HEADER_SIZE;
    const off = pos - this.bufStart;
    if (off >= 0 && off + h.contentSize <= this.buf.length && pos + h.contentSize <= limit) return off;
    this.view(pos, h.contentSize, limit, `${pxarTypeName(h.htype)} content`); // throws
    return off;
  }

  /** The bytes the last header and content offsets refer to (valid until the next fill). */
  get window(): Buffer {
    return this.buf;
  }

  async content(h: ItemHeader, limit: number): Promise<Buffer> {
    return withWindow(this, h.pos, limit, () => this.contentSync(h, limit));
  }
}

/**
 * Runs a synchronous parse that starts at `start`, loading more of the stream into the window
 * whenever it needs it and retrying (parsers are pure). The window grows geometrically, so an
 * entry with many attributes costs O(log) reads, and never past `limit`.
 */
export async function withWindow<T>(r: ItemReader, start: number, limit: number, parse: () => T): Promise<T> {
  let want = 0;
  for (;;) {
    try {
      return parse();
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
      if (e.end <= start || e.end > limit) throw r.error('internal error: read window out of range', start);
      want = Math.max(e.end - start, want * 2);
      await r.fill(start, want, limit);
    }
  }
}

/** Validates a single path component (spec §14): not empty, `.`, `..`, no `/`, no NUL. */
export function checkName(name: Buffer, r: ItemReader, pos: number): void {
  if (name.length === 0) throw r.error('file name is empty', pos);
  if (name.length === 1 && name[0] === 0x2e) throw r.error('file name is "."', pos);
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) throw r.error('file name is ".."', pos);
  if (name.includes(0x2f)) throw r.error(`file name ${JSON.stringify(name.toString('latin1'))} contains "/"`, pos);
  if (name.includes(0)) throw r.error('file name contains a NUL byte', pos);
}

/** Strips the mandatory trailing NUL of FILENAME/SYMLINK/HARDLINK strings. */
export function stripNul(content: Buffer, what: string, r: ItemReader, pos: number): Buffer {
  return content.subarray(0, terminatedLength(content, 0, content.length, what, r, pos));
}

/** The length without its mandatory trailing NUL of the `size` bytes at `at` in `b`. */
function terminatedLength(b: Buffer, at: number, size: number, what: string, r: ItemReader, pos: number): number {
  if (size === 0 || b[at + size - 1] !== 0) throw r.error(`${what} is missing its terminating zero`, pos);
  return size - 1;
}

/** Reads a FILENAME item at `pos` and returns the validated name (a copy) and the next position. */
export function readFilenameSync(r: ItemReader, pos: number, limit: number): { name: Buffer; next: number } {
  const h = r.headerScratch(pos, limit);
  if (h.htype !== PXAR.FILENAME) {
    throw r.error(`expected a FILENAME item, found ${pxarTypeName(h.htype)}`, pos);
  }
  const at = r.contentStart(h, limit);
  const w = r.window;
  const len = terminatedLength(w, at, h.contentSize, 'file name', r, pos);
  // A copy straight from the window (the name outlives it), without intermediate views.
  const name = Buffer.allocUnsafe(len);
  w.copy(name, 0, at, at + len);
  checkName(name, r, pos);
  return { name, next: pos + h.fullSize };
}

/** A u64 that must fit a JS number (positions, sizes, device numbers). */
export function safeU64(b: Buffer, off: number, what: string, r: ItemReader, pos: number): number {
  // From its 32-bit halves: no BigInt per value (two per file in a split archive).
  const hi = b.readUInt32LE(off + 4);
  if (hi > 0x1fffff) throw r.error(`${what} ${b.readBigUInt64LE(off)} is too large`, pos);
  return hi * 0x1_0000_0000 + b.readUInt32LE(off);
}

/** A u64 ACL id or permission value as a number (NO_MASK becomes 2^64 as a double). */
function u64num(b: Buffer, off: number): number {
  return Number(b.readBigUInt64LE(off));
}

function clampSafe(v: bigint): number {
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  return Number(v > max ? max : v < -max ? -max : v);
}

/** The ENTRY / ENTRY_V1 content at `o` in `c` (the reader's window: no view per entry). */
export function parseStat(h: ItemHeader, c: Buffer, o: number, r: ItemReader): PxarStat {
  if (h.htype === PXAR.ENTRY) {
    if (h.contentSize !== ENTRY_SIZE) throw r.error(`ENTRY content is ${h.contentSize} bytes, expected ${ENTRY_SIZE}`, h.pos);
    const nanos = c.readUInt32LE(o + 32);
    if (nanos > 999_999_999) throw r.error(`ENTRY mtime nanoseconds ${nanos} out of range`, h.pos);
    // i64 seconds from its halves: exact below 2^53, clamped beyond (no real time is that far).
    const shi = c.readInt32LE(o + 28);
    const secs = shi >= 0x200000 || shi < -0x200000 ? clampSafe(c.readBigInt64LE(o + 24)) : shi * 0x1_0000_0000 + c.readUInt32LE(o + 24);
    return {
      mode: c.readUInt32LE(o + 4) !== 0 ? throwMode(r, h.pos) : c.readUInt32LE(o + 0),
      flags: c.readUInt32LE(o + 12) * 0x1_0000_0000 + c.readUInt32LE(o + 8),
      uid: c.readUInt32LE(o + 16),
      gid: c.readUInt32LE(o + 20),
      mtimeSecs: secs,
      mtimeNanos: nanos,
    };
  }
  if (h.contentSize !== ENTRY_V1_SIZE) throw r.error(`ENTRY_V1 content is ${h.contentSize} bytes, expected ${ENTRY_V1_SIZE}`, h.pos);
  const ns = c.readBigUInt64LE(o + 24);
  return {
    mode: c.readUInt32LE(o + 4) !== 0 ? throwMode(r, h.pos) : c.readUInt32LE(o + 0),
    flags: Number(c.readBigUInt64LE(o + 8)),
    uid: c.readUInt32LE(o + 16),
    gid: c.readUInt32LE(o + 20),
    mtimeSecs: Number(ns / 1_000_000_000n),
    mtimeNanos: Number(ns % 1_000_000_000n),
  };
}

function throwMode(r: ItemReader, pos: number): never {
  throw r.error('ENTRY mode does not fit in 32 bits', pos);
}

function aclEntry(c: Buffer): PxarAclEntry {
  return { id: u64num(c, 0), permissions: u64num(c, 8) };
}

const NO_XATTRS: PxarXattr[] = Object.freeze([]) as unknown as PxarXattr[];
const NO_ACL: PxarAcl = Object.freeze({
  users: Object.freeze([]) as unknown as PxarAclEntry[],
  groups: Object.freeze([]) as unknown as PxarAclEntry[],
  groupObj: undefined,
  default: undefined,
  defaultUsers: Object.freeze([]) as unknown as PxarAclEntry[],
  defaultGroups: Object.freeze([]) as unknown as PxarAclEntry[],
});

/** What decodeEntryBody learned about one entry. */
export interface EntryBody {
  kind: PxarKind;
  metadata: PxarMetadata;
  size: number;
  contentOffset: number | undefined;
  payloadOffset: number | undefined;
  symlinkTarget: Buffer | undefined;
  device: { major: number; minor: number } | undefined;
  /** Position right after the entry's last item (directories: the first child or GOODBYE). */
  next: number;
}

function fixedSize(r: ItemReader, h: ItemHeader, size: number): void {
  if (h.contentSize !== size) {
    throw r.error(`${pxarTypeName(h.htype)} content is ${h.contentSize} bytes, expected ${size}`, h.pos);
  }
}

function notTwice(r: ItemReader, present: boolean, h: ItemHeader): void {
  if (present) throw r.error(`multiple ${pxarTypeName(h.htype)} items in one entry`, h.pos);
}

function requireType(r: ItemReader, h: ItemHeader, mode: number, want: number): void {
  if ((mode & MODE.IFMT) !== want) {
    throw r.error(`${pxarTypeName(h.htype)} item in an entry with mode 0${mode.toString(8)}`, h.pos);
  }
}

/**
 * Decodes ENTRY/ENTRY_V1 at `pos` and the attributes after it, up to the terminal item. For
 * directories, FIFOs and sockets the entry ends at the next FILENAME/GOODBYE, or at `limit`
 * when `limit` is the end of the entry's recorded range (random access). Synchronous over the
 * reader's window (throws NeedMore; use decodeEntryBody or withWindow).
 */
export function decodeEntryBodySync(r: ItemReader, pos: number, limit: number, version: 1 | 2): EntryBody {
  const e = blankEntry(EMPTY, -1, pos);
  const next = decodeEntryInto(r, pos, limit, version, e);
  return {
    kind: e.kind,
    metadata: e.metadata!,
    size: e.size,
    contentOffset: e.contentOffset,
    payloadOffset: e.payloadOffset,
    symlinkTarget: e.symlinkTarget,
    device: e.device,
    next,
  };
}

/** A PxarEntry with every field present (one object shape for all entries), to be filled. */
function blankEntry(name: Buffer, filenameOffset: number, entryOffset: number): PxarEntry {
  return {
    kind: 'directory',
    name,
    filenameOffset,
    entryOffset,
    end: 0,
    metadata: undefined,
    size: 0,
    contentOffset: undefined,
    payloadOffset: undefined,
    symlinkTarget: undefined,
    device: undefined,
    hardlink: undefined,
  };
}

/**
 * decodeEntryBodySync() into the entry `e` (kind, metadata, size, offsets, target, device):
 * a listing decodes 100k of these, and one object each is what it keeps. Returns the position
 * right after the entry's last item.
 */
function decodeEntryInto(r: ItemReader, pos: number, limit: number, version: 1 | 2, e: PxarEntry): number {
  const eh = r.headerScratch(pos, limit);
  if (eh.htype !== PXAR.ENTRY && eh.htype !== PXAR.ENTRY_V1) {
    throw r.error(`expected an ENTRY item, found ${pxarTypeName(eh.htype)}`, pos);
  }
  const stat = parseStat(eh, r.window, r.contentStart(eh, limit), r);
  // Most entries carry no xattrs or ACLs: they share one frozen empty list and ACL (a mount of
  // 100k entries holds 100k of these), and get their own on the first attribute item.
  const md: PxarMetadata = { stat, xattrs: NO_XATTRS, acl: NO_ACL, fcaps: undefined, quotaProjectId: undefined };
  e.metadata = md;
  const mode = stat.mode;
  const ifmt = mode & MODE.IFMT;
  let p = pos + eh.fullSize;
  let budget = MAX_METADATA_BYTES;

  while (p !== limit) {
    // The scratch header: nothing below reads another header before this one is done with.
    const h = r.headerScratch(p, limit);
    switch (h.htype) {
      case PXAR.XATTR:
      case PXAR.ACL_USER:
      case PXAR.ACL_GROUP:
      case PXAR.ACL_DEFAULT_USER:
      case PXAR.ACL_DEFAULT_GROUP:
      case PXAR.FCAPS: {
        // Repeatable attributes: bounded in total before their content is even loaded.
        budget -= h.contentSize;
        if (budget < 0) {
          throw new LimitError(`entry attributes exceed ${MAX_METADATA_BYTES} bytes`, { file: r.name, offset: h.pos });
        }
        if (h.htype === PXAR.XATTR) {
          const c = r.contentSync(h, limit);
          const sep = c.indexOf(0);
          if (sep < 0) throw r.error('XATTR has no NUL between name and value', h.pos);
          if (md.xattrs === NO_XATTRS) md.xattrs = [];
          md.xattrs.push({ name: Buffer.from(c.subarray(0, sep)), value: Buffer.from(c.subarray(sep + 1)) });
        } else if (h.htype === PXAR.FCAPS) {
          notTwice(r, md.fcaps !== undefined, h);
          md.fcaps = Buffer.from(r.contentSync(h, limit));
        } else {
          fixedSize(r, h, ACL_USER_SIZE);
          const a = aclEntry(r.contentSync(h, limit));
          if (md.acl === NO_ACL) md.acl = emptyAcl();
          if (h.htype === PXAR.ACL_USER) md.acl.users.push(a);
          else if (h.htype === PXAR.ACL_GROUP) md.acl.groups.push(a);
          else if (h.htype === PXAR.ACL_DEFAULT_USER) md.acl.defaultUsers.push(a);
          else md.acl.defaultGroups.push(a);
        }
        break;
      }
      case PXAR.ACL_GROUP_OBJ:
        fixedSize(r, h, ACL_GROUP_OBJ_SIZE);
        notTwice(r, md.acl.groupObj !== undefined, h);
        if (md.acl === NO_ACL) md.acl = emptyAcl();
        md.acl.groupObj = u64num(r.contentSync(h, limit), 0);
        break;
      case PXAR.ACL_DEFAULT: {
        fixedSize(r, h, ACL_DEFAULT_SIZE);
        notTwice(r, md.acl.default !== undefined, h);
        const c = r.contentSync(h, limit);
        if (md.acl === NO_ACL) md.acl = emptyAcl();
        md.acl.default = { userObj: u64num(c, 0), groupObj: u64num(c, 8), other: u64num(c, 16), mask: u64num(c, 24) };
        break;
      }
      case PXAR.QUOTA_PROJID:
        fixedSize(r, h, QUOTA_PROJID_SIZE);
        notTwice(r, md.quotaProjectId !== undefined, h);
        md.quotaProjectId = r.contentSync(h, limit).readBigUInt64LE(0);
        break;
      case PXAR.SYMLINK: {
        requireType(r, h, mode, MODE.IFLNK);
        const t = stripNul(r.contentSync(h, limit), 'symlink target', r, h.pos);
        e.kind = 'symlink';
        e.symlinkTarget = Buffer.from(t);
        e.size = t.length;
        return h.pos + h.fullSize;
      }
      case PXAR.DEVICE: {
        if (ifmt !== MODE.IFCHR && ifmt !== MODE.IFBLK) requireType(r, h, mode, MODE.IFCHR);
        fixedSize(r, h, DEVICE_SIZE);
        const c = r.contentSync(h, limit);
        e.kind = ifmt === MODE.IFCHR ? 'chardev' : 'blockdev';
        e.device = {
          major: safeU64(c, 0, 'device major', r, h.pos),
          minor: safeU64(c, 8, 'device minor', r, h.pos),
        };
        return h.pos + h.fullSize;
      }
      case PXAR.PAYLOAD:
        requireType(r, h, mode, MODE.IFREG);
        if (version !== 1) throw r.error('inline PAYLOAD in a split (format version 2) archive', h.pos);
        e.kind = 'file';
        e.size = h.contentSize;
        e.contentOffset = h.pos + HEADER_SIZE;
        return h.pos + h.fullSize;
      case PXAR.PAYLOAD_REF: {
        requireType(r, h, mode, MODE.IFREG);
        if (version !== 2) throw r.error('PAYLOAD_REF in a format version 1 archive', h.pos);
        fixedSize(r, h, PAYLOAD_REF_SIZE);
        const at = r.contentStart(h, limit);
        e.kind = 'file';
        e.payloadOffset = safeU64(r.window, at, 'payload offset', r, h.pos);
        e.size = safeU64(r.window, at + 8, 'payload size', r, h.pos);
        return h.pos + h.fullSize;
      }
      case PXAR.FILENAME:
      case PXAR.GOODBYE:
        finishOpen(e, ifmt, r, p);
        return p;
      case PXAR.HARDLINK:
        throw r.error('HARDLINK item inside an entry', h.pos);
      default:
        throw r.error(`unexpected ${pxarTypeName(h.htype)} item in an entry`, h.pos);
    }
    p = h.pos + h.fullSize;
  }
  // End of the recorded range: only legal for kinds without a terminal item.
  finishOpen(e, ifmt, r, p);
  return p;
}

export function decodeEntryBody(r: ItemReader, pos: number, limit: number, version: 1 | 2): Promise<EntryBody> {
  return withWindow(r, pos, limit, () => decodeEntryBodySync(r, pos, limit, version));
}

/** An entry that ended without a terminal item: directory, FIFO or socket by mode. */
function finishOpen(e: PxarEntry, ifmt: number, r: ItemReader, pos: number): void {
  if (ifmt === MODE.IFIFO) e.kind = 'fifo';
  else if (ifmt === MODE.IFSOCK) e.kind = 'socket';
  else if (ifmt === MODE.IFDIR) e.kind = 'directory';
  else throw r.error(`entry with mode 0${e.metadata!.stat.mode.toString(8)} ends without its data item`, pos);
}

/** Builds a PxarEntry from a decoded body. */
export function entryFromBody(name: Buffer, filenameOffset: number, entryOffset: number, b: EntryBody): PxarEntry {
  return {
    kind: b.kind,
    name,
    filenameOffset,
    entryOffset,
    end: b.next,
    metadata: b.metadata,
    size: b.size,
    contentOffset: b.contentOffset,
    payloadOffset: b.payloadOffset,
    symlinkTarget: b.symlinkTarget,
    device: b.device,
    hardlink: undefined,
  };
}

/** Decodes a HARDLINK item's content (the caller has read the header at `h.pos`). */
export function readHardlinkSync(r: ItemReader, h: ItemHeader, limit: number, filenameOffset: number): PxarHardlink {
  if (h.contentSize <= 8) throw r.error(`HARDLINK content of ${h.contentSize} bytes is too short`, h.pos);
  const c = r.contentSync(h, limit);
  const offset = safeU64(c, 0, 'hardlink offset', r, h.pos);
  const target = Buffer.from(stripNul(c.subarray(8), 'hardlink target', r, h.pos));
  if (offset === 0) throw r.error('hardlink points at itself', h.pos);
  if (offset > filenameOffset) throw r.error(`hardlink offset ${offset} points before the start of the archive`, h.pos);
  return { offset, target, targetFilenameOffset: filenameOffset - offset };
}

/**
 * Decodes one directory child starting at its FILENAME item: a hardlink (FILENAME + HARDLINK) or
 * a full entry (FILENAME + ENTRY + attributes + terminal item). Synchronous over the window.
 */
export function decodeChildSync(r: ItemReader, pos: number, limit: number, version: 1 | 2): PxarEntry {
  const { name, next } = readFilenameSync(r, pos, limit);
  const h = r.headerScratch(next, limit);
  if (h.htype === PXAR.HARDLINK) {
    return {
      kind: 'hardlink',
      name,
      filenameOffset: pos,
      entryOffset: next,
      end: next + h.fullSize,
      metadata: undefined,
      size: 0,
      contentOffset: undefined,
      payloadOffset: undefined,
      symlinkTarget: undefined,
      device: undefined,
      hardlink: readHardlinkSync(r, h, limit, pos),
    };
  }
  if (h.htype !== PXAR.ENTRY && h.htype !== PXAR.ENTRY_V1) {
    throw r.error(`expected an ENTRY or HARDLINK item after the file name, found ${pxarTypeName(h.htype)}`, next);
  }
  const e = blankEntry(name, pos, next);
  e.end = decodeEntryInto(r, next, limit, version, e);
  return e;
}

export function decodeChild(r: ItemReader, pos: number, limit: number, version: 1 | 2): Promise<PxarEntry> {
  return withWindow(r, pos, limit, () => decodeChildSync(r, pos, limit, version));
}

/**
 * The start of a pxar stream, shared by both decoders: an optional FORMAT_VERSION (1 or 2) and
 * PRELUDE, then the root ENTRY, whose offset is returned. A payload stream is only valid for v2.
 */
export async function readArchiveStart(
  r: ItemReader,
  payload: ReadAt | undefined,
  maxPreludeBytes: number | undefined,
): Promise<{ version: 1 | 2; prelude: Buffer | undefined; rootPos: number }> {
  const size = r.src.size;
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
      const max = maxPreludeBytes ?? 1024 * 1024;
      if (h.contentSize > max) {
        throw new LimitError(`PRELUDE of ${h.contentSize} bytes exceeds the limit of ${max}`, { file: r.src.name, offset: pos });
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
    if (version !== 2) throw new UsageError(`a payload stream was given for the unified archive ${r.src.name}`);
  }
  return { version, prelude, rootPos: pos };
}
