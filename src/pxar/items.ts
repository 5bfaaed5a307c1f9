/**
 * Item-level decoding shared by the accessor and the sequential decoder: a windowed reader over
 * a ReadAt, header validation, name checks, and the decoding of one entry's ENTRY + attributes +
 * terminal item. Every failure is a typed error naming the archive and the byte offset.
 */
import { FormatError, LimitError } from '../errors.js';
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
  PXAR,
  QUOTA_PROJID_SIZE,
  pxarTypeName,
} from './format.js';
import { emptyAcl, type PxarAclEntry, type PxarEntry, type PxarKind, type PxarMetadata, type PxarStat } from './types.js';

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

/**
 * Reads items through a small window: one readAt fetches `readAhead` bytes (clipped to the
 * caller's limit), so the few small items of an entry cost one read, while large contents are
 * never touched unless asked for.
 */
export class ItemReader {
  private buf: Buffer = EMPTY;
  private bufStart = 0;

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

  /** Exactly `len` bytes at `pos`, refusing anything that reaches beyond `limit`. */
  async bytes(pos: number, len: number, limit: number, what: string): Promise<Buffer> {
    if (pos < 0 || len < 0 || pos + len > limit || limit > this.src.size) {
      throw this.error(`${what} (${len} bytes) extends past the end of its range (${limit})`, pos);
    }
    const bufEnd = this.bufStart + this.buf.length;
    if (pos >= this.bufStart && pos + len <= bufEnd) {
      return this.buf.subarray(pos - this.bufStart, pos - this.bufStart + len);
    }
    const want = Math.min(Math.max(len, this.readAhead), limit - pos);
    const b = await this.src.readAt(pos, want);
    if (b.length < len) throw this.error(`short read of ${what}: wanted ${len} bytes, got ${b.length}`, pos);
    this.buf = b;
    this.bufStart = pos;
    return b.subarray(0, len);
  }

  /** The item header at `pos`; the whole item must end at or before `limit`. */
  async header(pos: number, limit: number): Promise<ItemHeader> {
    const h = await this.bytes(pos, HEADER_SIZE, limit, 'item header');
    const htype = h.readBigUInt64LE(0);
    const full = h.readBigUInt64LE(8);
    if (full < BigInt(HEADER_SIZE)) {
      throw this.error(`${pxarTypeName(htype)} item has an invalid size ${full} (below 16)`, pos);
    }
    if (full > BigInt(limit - pos)) {
      throw this.error(`${pxarTypeName(htype)} item of ${full} bytes extends past the end of its range (${limit})`, pos);
    }
    const fullSize = Number(full);
    const contentSize = fullSize - HEADER_SIZE;
    const max = MAX_CONTENT_SIZE.get(htype);
    if (max !== undefined && contentSize > max) {
      throw this.error(`${pxarTypeName(htype)} item content of ${contentSize} bytes exceeds its limit ${max}`, pos);
    }
    return { htype, pos, fullSize, contentSize };
  }

  /** The content of an item whose header was just read. */
  async content(h: ItemHeader, limit: number): Promise<Buffer> {
    return this.bytes(h.pos + HEADER_SIZE, h.contentSize, limit, `${pxarTypeName(h.htype)} content`);
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
  if (content.length === 0 || content[content.length - 1] !== 0) {
    throw r.error(`${what} is missing its terminating zero`, pos);
  }
  return content.subarray(0, content.length - 1);
}

/** Reads a FILENAME item at `pos` and returns the validated name (a copy) and the next position. */
export async function readFilename(r: ItemReader, pos: number, limit: number): Promise<{ name: Buffer; next: number }> {
  const h = await r.header(pos, limit);
  if (h.htype !== PXAR.FILENAME) {
    throw r.error(`expected a FILENAME item, found ${pxarTypeName(h.htype)}`, pos);
  }
  const name = Buffer.from(stripNul(await r.content(h, limit), 'file name', r, pos));
  checkName(name, r, pos);
  return { name, next: pos + h.fullSize };
}

/** A u64 that must fit a JS number (positions, sizes, device numbers). */
export function safeU64(b: Buffer, off: number, what: string, r: ItemReader, pos: number): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw r.error(`${what} ${v} is too large`, pos);
  return Number(v);
}

/** A u64 ACL id or permission value as a number (NO_MASK becomes 2^64 as a double). */
function u64num(b: Buffer, off: number): number {
  return Number(b.readBigUInt64LE(off));
}

function clampSafe(v: bigint): number {
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  return Number(v > max ? max : v < -max ? -max : v);
}

export function parseStat(h: ItemHeader, c: Buffer, r: ItemReader): PxarStat {
  if (h.htype === PXAR.ENTRY) {
    if (c.length !== ENTRY_SIZE) throw r.error(`ENTRY content is ${c.length} bytes, expected ${ENTRY_SIZE}`, h.pos);
    const nanos = c.readUInt32LE(32);
    if (nanos > 999_999_999) throw r.error(`ENTRY mtime nanoseconds ${nanos} out of range`, h.pos);
    return {
      mode: c.readUInt32LE(4) !== 0 ? throwMode(r, h.pos) : c.readUInt32LE(0),
      flags: Number(c.readBigUInt64LE(8)),
      uid: c.readUInt32LE(16),
      gid: c.readUInt32LE(20),
      mtimeSecs: clampSafe(c.readBigInt64LE(24)),
      mtimeNanos: nanos,
    };
  }
  if (c.length !== ENTRY_V1_SIZE) throw r.error(`ENTRY_V1 content is ${c.length} bytes, expected ${ENTRY_V1_SIZE}`, h.pos);
  const ns = c.readBigUInt64LE(24);
  return {
    mode: c.readUInt32LE(4) !== 0 ? throwMode(r, h.pos) : c.readUInt32LE(0),
    flags: Number(c.readBigUInt64LE(8)),
    uid: c.readUInt32LE(16),
    gid: c.readUInt32LE(20),
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

/**
 * Decodes ENTRY/ENTRY_V1 at `pos` and the attributes after it, up to the terminal item. For
 * directories, FIFOs and sockets the entry ends at the next FILENAME/GOODBYE, or at `limit`
 * when `limit` is the end of the entry's recorded range (random access).
 */
export async function decodeEntryBody(
  r: ItemReader,
  pos: number,
  limit: number,
  version: 1 | 2,
): Promise<EntryBody> {
  const eh = await r.header(pos, limit);
  if (eh.htype !== PXAR.ENTRY && eh.htype !== PXAR.ENTRY_V1) {
    throw r.error(`expected an ENTRY item, found ${pxarTypeName(eh.htype)}`, pos);
  }
  const stat = parseStat(eh, await r.content(eh, limit), r);
  const md: PxarMetadata = { stat, xattrs: [], acl: emptyAcl(), fcaps: undefined, quotaProjectId: undefined };
  const body: EntryBody = {
    kind: 'directory',
    metadata: md,
    size: 0,
    contentOffset: undefined,
    payloadOffset: undefined,
    symlinkTarget: undefined,
    device: undefined,
    next: pos + eh.fullSize,
  };
  const ifmt = stat.mode & MODE.IFMT;
  let p = body.next;
  let budget = MAX_METADATA_BYTES;
  const take = (h: ItemHeader): void => {
    budget -= h.contentSize;
    if (budget < 0) {
      throw new LimitError(`entry attributes exceed ${MAX_METADATA_BYTES} bytes`, { file: r.name, offset: h.pos });
    }
  };
  const fixed = (h: ItemHeader, size: number): void => {
    if (h.contentSize !== size) {
      throw r.error(`${pxarTypeName(h.htype)} content is ${h.contentSize} bytes, expected ${size}`, h.pos);
    }
  };
  const once = (present: boolean, h: ItemHeader): void => {
    if (present) throw r.error(`multiple ${pxarTypeName(h.htype)} items in one entry`, h.pos);
  };
  const expectKind = (h: ItemHeader, want: number): void => {
    if (ifmt !== want) {
      throw r.error(`${pxarTypeName(h.htype)} item in an entry with mode 0${stat.mode.toString(8)}`, h.pos);
    }
  };

  for (;;) {
    if (p === limit) {
      // End of the recorded range: only legal for kinds without a terminal item.
      break;
    }
    const h = await r.header(p, limit);
    switch (h.htype) {
      case PXAR.XATTR: {
        take(h);
        const c = await r.content(h, limit);
        const sep = c.indexOf(0);
        if (sep < 0) throw r.error('XATTR has no NUL between name and value', h.pos);
        md.xattrs.push({ name: Buffer.from(c.subarray(0, sep)), value: Buffer.from(c.subarray(sep + 1)) });
        break;
      }
      case PXAR.ACL_USER:
        fixed(h, ACL_USER_SIZE);
        take(h);
        md.acl.users.push(aclEntry(await r.content(h, limit)));
        break;
      case PXAR.ACL_GROUP:
        fixed(h, ACL_GROUP_SIZE);
        take(h);
        md.acl.groups.push(aclEntry(await r.content(h, limit)));
        break;
      case PXAR.ACL_GROUP_OBJ:
        fixed(h, ACL_GROUP_OBJ_SIZE);
        once(md.acl.groupObj !== undefined, h);
        md.acl.groupObj = u64num(await r.content(h, limit), 0);
        break;
      case PXAR.ACL_DEFAULT: {
        fixed(h, ACL_DEFAULT_SIZE);
        once(md.acl.default !== undefined, h);
        const c = await r.content(h, limit);
        md.acl.default = { userObj: u64num(c, 0), groupObj: u64num(c, 8), other: u64num(c, 16), mask: u64num(c, 24) };
        break;
      }
      case PXAR.ACL_DEFAULT_USER:
        fixed(h, ACL_USER_SIZE);
        take(h);
        md.acl.defaultUsers.push(aclEntry(await r.content(h, limit)));
        break;
      case PXAR.ACL_DEFAULT_GROUP:
        fixed(h, ACL_GROUP_SIZE);
        take(h);
        md.acl.defaultGroups.push(aclEntry(await r.content(h, limit)));
        break;
      case PXAR.FCAPS:
        once(md.fcaps !== undefined, h);
        take(h);
        md.fcaps = Buffer.from(await r.content(h, limit));
        break;
      case PXAR.QUOTA_PROJID:
        fixed(h, QUOTA_PROJID_SIZE);
        once(md.quotaProjectId !== undefined, h);
        md.quotaProjectId = (await r.content(h, limit)).readBigUInt64LE(0);
        break;
      case PXAR.SYMLINK: {
        expectKind(h, MODE.IFLNK);
        const t = stripNul(await r.content(h, limit), 'symlink target', r, h.pos);
        body.kind = 'symlink';
        body.symlinkTarget = Buffer.from(t);
        body.size = t.length;
        body.next = h.pos + h.fullSize;
        return body;
      }
      case PXAR.DEVICE: {
        if (ifmt !== MODE.IFCHR && ifmt !== MODE.IFBLK) expectKind(h, MODE.IFCHR);
        fixed(h, DEVICE_SIZE);
        const c = await r.content(h, limit);
        body.kind = ifmt === MODE.IFCHR ? 'chardev' : 'blockdev';
        body.device = {
          major: safeU64(c, 0, 'device major', r, h.pos),
          minor: safeU64(c, 8, 'device minor', r, h.pos),
        };
        body.next = h.pos + h.fullSize;
        return body;
      }
      case PXAR.PAYLOAD:
        expectKind(h, MODE.IFREG);
        if (version !== 1) throw r.error('inline PAYLOAD in a split (format version 2) archive', h.pos);
        body.kind = 'file';
        body.size = h.contentSize;
        body.contentOffset = h.pos + HEADER_SIZE;
        body.next = h.pos + h.fullSize;
        return body;
      case PXAR.PAYLOAD_REF: {
        expectKind(h, MODE.IFREG);
        if (version !== 2) throw r.error('PAYLOAD_REF in a format version 1 archive', h.pos);
        fixed(h, PAYLOAD_REF_SIZE);
        const c = await r.content(h, limit);
        body.kind = 'file';
        body.payloadOffset = safeU64(c, 0, 'payload offset', r, h.pos);
        body.size = safeU64(c, 8, 'payload size', r, h.pos);
        body.next = h.pos + h.fullSize;
        return body;
      }
      case PXAR.FILENAME:
      case PXAR.GOODBYE:
        body.next = p;
        return finishOpen(body, ifmt, r, p);
      case PXAR.HARDLINK:
        throw r.error('HARDLINK item inside an entry', h.pos);
      default:
        throw r.error(`unexpected ${pxarTypeName(h.htype)} item in an entry`, h.pos);
    }
    p = h.pos + h.fullSize;
  }
  body.next = p;
  return finishOpen(body, ifmt, r, p);
}

/** An entry that ended without a terminal item: directory, FIFO or socket by mode. */
function finishOpen(body: EntryBody, ifmt: number, r: ItemReader, pos: number): EntryBody {
  if (ifmt === MODE.IFIFO) body.kind = 'fifo';
  else if (ifmt === MODE.IFSOCK) body.kind = 'socket';
  else if (ifmt === MODE.IFDIR) body.kind = 'directory';
  else throw r.error(`entry with mode 0${body.metadata.stat.mode.toString(8)} ends without its data item`, pos);
  return body;
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
export async function readHardlink(
  r: ItemReader,
  h: ItemHeader,
  limit: number,
  filenameOffset: number,
): Promise<{ offset: number; target: Buffer; targetFilenameOffset: number }> {
  if (h.contentSize <= 8) throw r.error(`HARDLINK content of ${h.contentSize} bytes is too short`, h.pos);
  const c = await r.content(h, limit);
  const offset = safeU64(c, 0, 'hardlink offset', r, h.pos);
  const target = Buffer.from(stripNul(c.subarray(8), 'hardlink target', r, h.pos));
  if (offset === 0) throw r.error('hardlink points at itself', h.pos);
  if (offset > filenameOffset) throw r.error(`hardlink offset ${offset} points before the start of the archive`, h.pos);
  return { offset, target, targetFilenameOffset: filenameOffset - offset };
}
