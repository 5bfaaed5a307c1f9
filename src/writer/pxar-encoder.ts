/**
 * pxar encoder (spec pxar-format.md §5–§8, §12): format v1 (one unified stream) or format v2
 * (metadata stream + payload stream), written to sinks as it goes; only the goodbye records of
 * the open directories are kept in memory.
 *
 * The caller adds entries depth-first and, to match upstream archives, in the order of the raw
 * name bytes (the encoder does not sort; the filesystem walk does). Byte layout follows the
 * upstream encoder exactly: attribute order, goodbye BST permutation, root tail offset measured
 * from the stream start, and the split-archive goodbye size that counts the file bytes (§12.4).
 */
import { FormatError, UsageError } from '../errors.js';
import { PXAR, HEADER_SIZE, GOODBYE_ITEM_SIZE, MAX_FILENAME_LEN, MAX_PATH_LEN, MODE } from '../pxar/format.js';
import { pxarHashParts } from '../pxar/siphash.js';

/** Receives the encoded bytes in order. It may keep the buffer: the encoder never reuses it. */
export interface ByteSink {
  write(data: Uint8Array): void;
}

export interface PxarAclUser {
  uid: number;
  permissions: number | bigint;
}
export interface PxarAclGroup {
  gid: number;
  permissions: number | bigint;
}
export interface PxarAclDefault {
  userObj: number | bigint;
  groupObj: number | bigint;
  other: number | bigint;
  mask: number | bigint;
}
export interface PxarAcl {
  users?: PxarAclUser[];
  groups?: PxarAclGroup[];
  groupObj?: number | bigint;
  default?: PxarAclDefault;
  defaultUsers?: PxarAclUser[];
  defaultGroups?: PxarAclGroup[];
}

export interface PxarXattr {
  name: Uint8Array;
  value: Uint8Array;
}

/** Everything an ENTRY and its attribute items carry. */
export interface PxarMeta {
  /** Full st_mode, type bits included. */
  mode: number;
  /** Per-file attribute flags (§13.2). */
  flags?: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch (floor for negative times). */
  mtimeSecs: number | bigint;
  /** 0..999,999,999. */
  mtimeNanos: number;
  /** Written in the given order (upstream keeps the listxattr order). */
  xattrs?: PxarXattr[];
  acl?: PxarAcl;
  fcaps?: Uint8Array;
  quotaProjectId?: number | bigint;
}

export interface PxarEncoderOptions {
  /** Payload stream: present = format v2 split archive (metadata goes to `out`). */
  payload?: ByteSink;
  /** PRELUDE content (v2 only). */
  prelude?: Uint8Array;
  /** Size of the staging buffer for small items (default 1 MiB). */
  bufferSize?: number;
}

interface GoodbyeRecord {
  hashLo: number;
  hashHi: number;
  filenameStart: number;
  end: number;
}

interface OpenDir {
  entryStart: number;
  records: GoodbyeRecord[];
  /** Record of this directory in its parent (undefined for the root). */
  self: GoodbyeRecord | undefined;
}

interface OpenFile {
  size: number;
  written: number;
  record: GoodbyeRecord;
}

/** Buffered positional writer: small items are staged, large data goes straight through. */
class Emitter {
  pos = 0;
  private buf: Buffer;
  private used = 0;
  constructor(
    private readonly sink: ByteSink,
    private readonly size: number,
  ) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Reserves `n` bytes in the staging buffer and returns (buffer, offset) to fill them. */
  reserve(n: number): [Buffer, number] {
    if (this.used + n > this.buf.length) {
      this.flush();
      if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
    }
    const off = this.used;
    this.used += n;
    this.pos += n;
    return [this.buf, off];
  }

  header(htype: bigint, fullSize: number): void {
    const [b, o] = this.reserve(HEADER_SIZE);
    b.writeBigUInt64LE(htype, o);
    b.writeBigUInt64LE(BigInt(fullSize), o + 8);
  }

  bytes(data: Uint8Array): void {
    if (data.length >= 64 * 1024) {
      this.flush();
      this.sink.write(data);
      this.pos += data.length;
      return;
    }
    const [b, o] = this.reserve(data.length);
    b.set(data, o);
  }

  u64(v: number | bigint): void {
    const [b, o] = this.reserve(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), o);
  }

  flush(): void {
    if (this.used === 0) return;
    const out = this.buf.subarray(0, this.used);
    // Hand the filled part over and start a fresh buffer: the sink may keep `out`.
    this.buf = Buffer.allocUnsafe(this.buf.length);
    this.used = 0;
    this.sink.write(out);
  }
}

/**
 * The casync/pxar BST layout (§8.3): returns `perm` with `perm[dest] = src`, where `src` indexes
 * the hash-sorted records.
 */
export function goodbyeBstPermutation(n: number): number[] {
  const perm = new Array<number>(n).fill(0);
  if (n === 0) return perm;
  const inner = (count: number, o: number, e: number, i: number): void => {
    const p = 2 ** e;
    const t = p + Math.floor(p / 2) - 1;
    const m = count > t ? p - 1 : p - 1 - (t - count);
    perm[i] = o + m;
    if (m > 0) inner(m, o, e - 1, 2 * i + 1);
    if (m + 1 < count) inner(count - m - 1, o + m + 1, e - 1, 2 * i + 2);
  };
  inner(n, 0, Math.floor(Math.log2(n)), 0);
  return perm;
}

function checkName(name: Uint8Array): void {
  const bad =
    name.length === 0 ||
    name.length > MAX_FILENAME_LEN ||
    name.includes(0x2f) ||
    name.includes(0) ||
    (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
  if (bad) {
    throw new FormatError(`invalid file name for a pxar archive: ${JSON.stringify(Buffer.from(name).toString('latin1').slice(0, 100))}`);
  }
}

export class PxarEncoder {
  private readonly out: Emitter;
  private readonly payload: Emitter | undefined;
  private readonly stack: OpenDir[] = [];
  private file: OpenFile | undefined;
  private finished = false;

  /** Writes the stream start (v2: FORMAT_VERSION and PRELUDE) and the root ENTRY. */
  constructor(out: ByteSink, rootMeta: PxarMeta, opts: PxarEncoderOptions = {}) {
    const bufSize = opts.bufferSize ?? 1024 * 1024;
    this.out = new Emitter(out, bufSize);
    if (opts.payload !== undefined) {
      this.payload = new Emitter(opts.payload, bufSize);
      this.payload.header(PXAR.PAYLOAD_START_MARKER, HEADER_SIZE);
      this.out.header(PXAR.FORMAT_VERSION, HEADER_SIZE + 8);
      this.out.u64(2);
      if (opts.prelude !== undefined) {
        this.out.header(PXAR.PRELUDE, HEADER_SIZE + opts.prelude.length);
        this.out.bytes(opts.prelude);
      }
    } else if (opts.prelude !== undefined) {
      throw new UsageError('a pxar prelude needs a split (format v2) archive');
    }
    if ((rootMeta.mode & MODE.IFMT) !== MODE.IFDIR) throw new UsageError('the pxar root must be a directory');
    // The root's goodbye tail is measured from the stream start, even in v2 (§7).
    this.stack.push({ entryStart: 0, records: [], self: undefined });
    this.writeMeta(rootMeta);
  }

  /** Bytes written to the metadata (or unified) stream so far. */
  get position(): number {
    return this.out.pos;
  }

  /** Bytes written to the payload stream so far (0 in v1). */
  get payloadPosition(): number {
    return this.payload?.pos ?? 0;
  }

  get isSplit(): boolean {
    return this.payload !== undefined;
  }

  /** Opens a subdirectory; entries added next go inside it until `endDirectory`. */
  beginDirectory(name: Uint8Array, meta: PxarMeta): void {
    if ((meta.mode & MODE.IFMT) !== MODE.IFDIR) throw new UsageError('beginDirectory needs a directory mode');
    const rec = this.startEntry(name);
    const entryStart = this.out.pos;
    this.writeMeta(meta);
    this.stack.push({ entryStart, records: [], self: rec });
  }

  /** Closes the innermost directory with its goodbye table. */
  endDirectory(): void {
    this.checkIdle();
    if (this.stack.length <= 1) throw new UsageError('endDirectory without an open subdirectory');
    const dir = this.stack.pop()!;
    this.writeGoodbye(dir);
    dir.self!.end = this.out.pos;
  }

  /**
   * Starts a regular file of exactly `size` bytes; feed them with `writeFileData`, then call
   * `endFile`. Returns the file's link offset (its FILENAME position) for later hardlinks.
   */
  beginFile(name: Uint8Array, meta: PxarMeta, size: number): number {
    if ((meta.mode & MODE.IFMT) !== MODE.IFREG) throw new UsageError('beginFile needs a regular-file mode');
    if (!Number.isSafeInteger(size) || size < 0) throw new UsageError(`invalid file size ${size}`);
    const rec = this.startEntry(name);
    this.writeMeta(meta);
    if (this.payload !== undefined) {
      this.out.header(PXAR.PAYLOAD_REF, HEADER_SIZE + 16);
      this.out.u64(this.payload.pos);
      this.out.u64(size);
      this.payload.header(PXAR.PAYLOAD, HEADER_SIZE + size);
    } else {
      this.out.header(PXAR.PAYLOAD, HEADER_SIZE + size);
    }
    this.file = { size, written: 0, record: rec };
    return rec.filenameStart;
  }

  writeFileData(data: Uint8Array): void {
    const f = this.file;
    if (f === undefined) throw new UsageError('writeFileData outside of a file');
    if (f.written + data.length > f.size) {
      throw new FormatError(`file data exceeds the announced size of ${f.size} bytes`);
    }
    f.written += data.length;
    (this.payload ?? this.out).bytes(data);
  }

  endFile(): void {
    const f = this.file;
    if (f === undefined) throw new UsageError('endFile outside of a file');
    if (f.written !== f.size) throw new FormatError(`file data is ${f.written} bytes, announced ${f.size}`);
    this.file = undefined;
    // Split archives record the file bytes in the goodbye size although they live elsewhere (§12.4).
    f.record.end = this.out.pos + (this.payload !== undefined ? f.size : 0);
  }

  /** A whole regular file from memory. */
  addFile(name: Uint8Array, meta: PxarMeta, content: Uint8Array): number {
    const off = this.beginFile(name, meta, content.length);
    if (content.length > 0) this.writeFileData(content);
    this.endFile();
    return off;
  }

  addSymlink(name: Uint8Array, meta: PxarMeta, target: Uint8Array): void {
    if ((meta.mode & MODE.IFMT) !== MODE.IFLNK) throw new UsageError('addSymlink needs a symlink mode');
    if (target.length > MAX_PATH_LEN) throw new FormatError(`symlink target longer than ${MAX_PATH_LEN} bytes`);
    const rec = this.startEntry(name);
    this.writeMeta(meta);
    this.out.header(PXAR.SYMLINK, HEADER_SIZE + target.length + 1);
    this.out.bytes(target);
    this.out.bytes(NUL);
    rec.end = this.out.pos;
  }

  addDevice(name: Uint8Array, meta: PxarMeta, major: number | bigint, minor: number | bigint): void {
    const t = meta.mode & MODE.IFMT;
    if (t !== MODE.IFCHR && t !== MODE.IFBLK) throw new UsageError('addDevice needs a device mode');
    const rec = this.startEntry(name);
    this.writeMeta(meta);
    this.out.header(PXAR.DEVICE, HEADER_SIZE + 16);
    this.out.u64(major);
    this.out.u64(minor);
    rec.end = this.out.pos;
  }

  /** FIFOs and sockets: just the entry and its attributes. */
  addSpecial(name: Uint8Array, meta: PxarMeta): void {
    const t = meta.mode & MODE.IFMT;
    if (t !== MODE.IFIFO && t !== MODE.IFSOCK) throw new UsageError('addSpecial needs a fifo or socket mode');
    const rec = this.startEntry(name);
    this.writeMeta(meta);
    rec.end = this.out.pos;
  }

  /**
   * A later name of an already archived file: FILENAME + HARDLINK(distance back to the target's
   * FILENAME, target path relative to the archive root).
   */
  addHardlink(name: Uint8Array, targetPath: Uint8Array, targetOffset: number): void {
    if (targetPath.length > MAX_PATH_LEN) throw new FormatError(`hardlink target longer than ${MAX_PATH_LEN} bytes`);
    const rec = this.startEntry(name);
    if (!(targetOffset < rec.filenameStart)) throw new UsageError('a hardlink target must come earlier in the archive');
    this.out.header(PXAR.HARDLINK, HEADER_SIZE + 8 + targetPath.length + 1);
    this.out.u64(rec.filenameStart - targetOffset);
    this.out.bytes(targetPath);
    this.out.bytes(NUL);
    rec.end = this.out.pos;
  }

  /** Closes the root (and the payload stream) and flushes everything to the sinks. */
  finish(): { size: number; payloadSize: number } {
    this.checkIdle();
    if (this.finished) throw new UsageError('pxar encoder already finished');
    if (this.stack.length !== 1) throw new UsageError(`${this.stack.length - 1} directories are still open`);
    this.writeGoodbye(this.stack.pop()!);
    this.finished = true;
    this.out.flush();
    if (this.payload !== undefined) {
      this.payload.header(PXAR.PAYLOAD_TAIL_MARKER, HEADER_SIZE);
      this.payload.flush();
    }
    return { size: this.out.pos, payloadSize: this.payload?.pos ?? 0 };
  }

  private checkIdle(): void {
    if (this.file !== undefined) throw new UsageError('a file is still open in the pxar encoder');
    if (this.finished) throw new UsageError('pxar encoder already finished');
  }

  /** FILENAME item + goodbye record in the current directory. */
  private startEntry(name: Uint8Array): GoodbyeRecord {
    this.checkIdle();
    checkName(name);
    const dir = this.stack[this.stack.length - 1]!;
    const h = pxarHashParts(name);
    const rec: GoodbyeRecord = { hashLo: h.lo, hashHi: h.hi, filenameStart: this.out.pos, end: 0 };
    dir.records.push(rec);
    this.out.header(PXAR.FILENAME, HEADER_SIZE + name.length + 1);
    this.out.bytes(name);
    this.out.bytes(NUL);
    return rec;
  }

  /** ENTRY + attributes in the upstream order (§5). */
  private writeMeta(m: PxarMeta): void {
    const o = this.out;
    o.header(PXAR.ENTRY, HEADER_SIZE + 40);
    const [b, p] = o.reserve(40);
    b.writeBigUInt64LE(BigInt(m.mode >>> 0), p);
    b.writeBigUInt64LE(BigInt(m.flags ?? 0), p + 8);
    b.writeUInt32LE(m.uid >>> 0, p + 16);
    b.writeUInt32LE(m.gid >>> 0, p + 20);
    b.writeBigInt64LE(BigInt(m.mtimeSecs), p + 24);
    b.writeUInt32LE(m.mtimeNanos >>> 0, p + 32);
    b.writeUInt32LE(0, p + 36);
    for (const x of m.xattrs ?? []) {
      o.header(PXAR.XATTR, HEADER_SIZE + x.name.length + 1 + x.value.length);
      o.bytes(x.name);
      o.bytes(NUL);
      o.bytes(x.value);
    }
    const acl = m.acl;
    if (acl !== undefined) {
      for (const u of acl.users ?? []) this.pair(PXAR.ACL_USER, u.uid, u.permissions);
      for (const g of acl.groups ?? []) this.pair(PXAR.ACL_GROUP, g.gid, g.permissions);
      if (acl.groupObj !== undefined) {
        o.header(PXAR.ACL_GROUP_OBJ, HEADER_SIZE + 8);
        o.u64(acl.groupObj);
      }
      if (acl.default !== undefined) {
        o.header(PXAR.ACL_DEFAULT, HEADER_SIZE + 32);
        o.u64(acl.default.userObj);
        o.u64(acl.default.groupObj);
        o.u64(acl.default.other);
        o.u64(acl.default.mask);
      }
      for (const u of acl.defaultUsers ?? []) this.pair(PXAR.ACL_DEFAULT_USER, u.uid, u.permissions);
      for (const g of acl.defaultGroups ?? []) this.pair(PXAR.ACL_DEFAULT_GROUP, g.gid, g.permissions);
    }
    if (m.fcaps !== undefined) {
      o.header(PXAR.FCAPS, HEADER_SIZE + m.fcaps.length);
      o.bytes(m.fcaps);
    }
    if (m.quotaProjectId !== undefined) {
      o.header(PXAR.QUOTA_PROJID, HEADER_SIZE + 8);
      o.u64(m.quotaProjectId);
    }
  }

  private pair(htype: bigint, id: number, perm: number | bigint): void {
    this.out.header(htype, HEADER_SIZE + 16);
    this.out.u64(id);
    this.out.u64(perm);
  }

  private writeGoodbye(dir: OpenDir): void {
    const o = this.out;
    const goodbyeStart = o.pos;
    const recs = dir.records.slice().sort((a, b) => a.hashHi - b.hashHi || a.hashLo - b.hashLo);
    const n = recs.length;
    const fullSize = HEADER_SIZE + GOODBYE_ITEM_SIZE * (n + 1);
    o.header(PXAR.GOODBYE, fullSize);
    const perm = goodbyeBstPermutation(n);
    const [b, p0] = o.reserve(GOODBYE_ITEM_SIZE * (n + 1));
    let p = p0;
    for (let i = 0; i < n; i++) {
      const r = recs[perm[i]!]!;
      b.writeUInt32LE(r.hashLo, p);
      b.writeUInt32LE(r.hashHi, p + 4);
      b.writeBigUInt64LE(BigInt(goodbyeStart - r.filenameStart), p + 8);
      b.writeBigUInt64LE(BigInt(r.end - r.filenameStart), p + 16);
      p += GOODBYE_ITEM_SIZE;
    }
    b.writeBigUInt64LE(PXAR.GOODBYE_TAIL_MARKER, p);
    b.writeBigUInt64LE(BigInt(goodbyeStart - dir.entryStart), p + 8);
    b.writeBigUInt64LE(BigInt(fullSize), p + 16);
  }
}

const NUL = new Uint8Array([0]);
