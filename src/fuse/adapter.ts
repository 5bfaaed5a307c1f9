/**
 * FUSE adapter: kernel requests in, VfsCore calls, replies out. Nothing here knows about
 * archives; it decodes request bodies, calls the core and maps errors to errno.
 *
 * Policy for a read-only backup:
 * - every write-type request answers EROFS (the mount is also `ro`, so most never arrive);
 * - entries and attributes are valid for a day (backup data never changes), negative lookups
 *   are cached too, and opened files and directories keep the kernel page/dir cache
 *   (FOPEN_KEEP_CACHE, FOPEN_CACHE_DIR), so a second `find` or `cat` never reaches us;
 * - except large regular files (over `pageCacheMaxFileBytes`, default 32 MiB), opened with
 *   FOPEN_DIRECT_IO: reads go straight into the reader's buffer. Filling fresh page-cache pages
 *   was the largest single cost of a sequential read (docs/performance.md). Their small
 *   reads are kept in a PageCache of our own, so random re-reads stay fast;
 * - READDIRPLUS returns attributes with the names (no LOOKUP storm on `ls -l` / `find`);
 * - names are raw bytes both ways, so non-UTF-8 names appear exactly as archived; no escaping.
 */
import { NotFoundError, PbsfsError } from '../errors.js';
import { OnceLog } from '../util/once-log.js';
import { VfsCore, VfsError, errnoOf, type DirListEntry } from '../vfs/core.js';
import { decodeRequest, expectsNoReply, MalformedRequest, type DecodedRequest, type InitRequest, type ReadRequest } from './requests.js';
import type { VfsStat } from '../vfs/types.js';
import {
  direntSize,
  encodeAttrOut,
  encodeDirent,
  encodeEntryOut,
  encodeOpenOut,
  encodeStatfs,
  encodeXattrSize,
  ENTRY_OUT_SIZE,
  Errno,
  errnoNumber,
  FOPEN_CACHE_DIR,
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  FUSE_KERNEL_MINOR,
  FUSE_KERNEL_VERSION,
  InitFlag,
  InitFlag2,
  Op,
  WRITE_OPS,
  type InHeader,
  type KernelAttr,
} from './protocol.js';
import { PageCache, SMALL_READ_MAX } from './page-cache.js';
import { MAX_WRITE, type FuseReply } from './session.js';

/** Validity of entries and attributes handed to the kernel, in seconds. */
export const CACHE_TTL_SECONDS = 86400;
/** Largest READ we ask the kernel for: 256 pages = 1 MiB. */
export const MAX_PAGES = 256;

export interface AdapterOptions {
  /** Called with an error line when an unexpected exception escapes the core. */
  log?: (line: string) => void;
  /** Called once INIT has been answered (the mount answers requests from then on). */
  onInit?: () => void;
  /** Called on DESTROY. */
  onDestroy?: () => void;
  /**
   * Regular files larger than this bypass the kernel page cache (FOPEN_DIRECT_IO); default
   * 32 MiB. Infinity keeps every file in the page cache.
   */
  pageCacheMaxFileBytes?: number;
  /** Bytes of small reads of such files kept by the mount itself (default 16 MiB). */
  smallReadCacheBytes?: number;
  /**
   * Answer OPENDIR with ENOSYS where the kernel supports zero-message opendir (default true):
   * directories are then opened by the kernel alone. False keeps OPENDIR/RELEASEDIR (as on
   * kernels before 5.1).
   */
  zeroMessageOpendir?: boolean;
}

/** Default of AdapterOptions.pageCacheMaxFileBytes. */
export const DEFAULT_PAGE_CACHE_MAX_FILE_BYTES = 32 * 1024 * 1024;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

function toKernel(st: VfsStat): KernelAttr {
  return st;
}

const O_ACCMODE = 3;
const O_TRUNC = 0o1000;

export class FuseAdapter {
  /** Protocol minor agreed with the kernel (0 before INIT). */
  minor = 0;
  private plusAllowed = false;
  /** Set at INIT: OPENDIR answers ENOSYS and READDIR comes without a handle (see AdapterOptions). */
  private zeroMessageOpendir = false;
  /**
   * Open handles of files read with FOPEN_DIRECT_IO: their node and size. Their pages are cached
   * by node id, which is safe because the core never gives one id to two files in one mount
   * (table ids only grow; archive ids are slot * 2^44 + st_ino, and slots are never reused).
   */
  private readonly directFiles = new Map<number, { nodeid: number; size: number }>();
  private readonly pageCache: PageCache;
  private readonly pageCacheMax: number;

  constructor(
    private readonly core: VfsCore,
    private readonly opts: AdapterOptions = {},
  ) {
    this.pageCacheMax = opts.pageCacheMaxFileBytes ?? DEFAULT_PAGE_CACHE_MAX_FILE_BYTES;
    this.pageCache = new PageCache(opts.smallReadCacheBytes ?? 16 * 1024 * 1024);
  }

  /** Counters of the small-read cache of direct-I/O files. */
  get pageCacheStats(): { hits: number; misses: number } {
    return { hits: this.pageCache.hits, misses: this.pageCache.misses };
  }

  /** The session's dispatcher. */
  readonly dispatch = async (h: InHeader, body: Buffer): Promise<FuseReply> => {
    try {
      return await this.handle(h, body);
    } catch (e) {
      // Names that do not exist are answered by lookups finding nothing, never by an exception:
      // a thrown NotFoundError means data the tree needs is missing (a chunk, an index, a payload
      // stream), which is an I/O error. As ENOENT it made a damaged directory look empty or
      // absent, and a read say its open file vanished. VfsErrors carry their errno on purpose.
      const name = e instanceof NotFoundError && !(e instanceof VfsError) ? 'EIO' : errnoOf(e);
      if (!(e instanceof PbsfsError) && (e as NodeJS.ErrnoException | undefined)?.code === undefined) {
        this.messages.log(`pbsfs: internal error in request ${h.opcode}: ${e instanceof Error ? e.message : String(e)}`);
      } else if (name === 'EIO' && h.opcode !== Op.READ) {
        // Read errors are reported by the core; this covers e.g. an archive that cannot be
        // opened (no key, damaged index), which the user otherwise sees only as EIO.
        this.messages.log(`pbsfs: ${e instanceof Error ? e.message : String(e)}`);
      }
      // A read fails only on its data (damaged, undecryptable): EIO whatever the error's kind.
      if (h.opcode === Op.READ && !(e instanceof VfsError)) return -errnoNumber('EIO');
      return -errnoNumber(name);
    }
  };

  /** Messages the core does not report itself, once each (opts.log is read when one is written). */
  private readonly messages = new OnceLog((line) => (this.opts.log ?? ((l: string) => process.stderr.write(l + '\n')))(line));

  private async handle(h: InHeader, body: Buffer): Promise<FuseReply> {
    const core = this.core;
    if (WRITE_OPS.has(h.opcode)) return -Errno.EROFS;
    let req: DecodedRequest | undefined;
    try {
      req = decodeRequest(h.opcode, body);
    } catch (e) {
      if (!(e instanceof MalformedRequest)) throw e;
      this.messages.log(`pbsfs: malformed request ${h.opcode} from the kernel: ${e.message}`);
      return expectsNoReply(h.opcode) ? null : -Errno.EINVAL;
    }
    // ACCESS (default_permissions does the checks), locks, ioctl, poll, lseek, bmap...
    if (req === undefined) return -Errno.ENOSYS;
    switch (req.op) {
      case Op.INIT:
        return this.init(req.body);
      case Op.LOOKUP: {
        const r = await core.lookup(h.nodeid, req.body.name);
        const out = Buffer.alloc(ENTRY_OUT_SIZE);
        if (r === undefined) {
          // A negative entry the kernel may cache: the name will not appear later.
          encodeEntryOut(out, 0, 0, CACHE_TTL_SECONDS, undefined);
          return out;
        }
        encodeEntryOut(out, 0, r.nodeid, CACHE_TTL_SECONDS, toKernel(r.attr));
        return out;
      }
      case Op.FORGET:
        core.forget(h.nodeid, req.body.nlookup);
        return null;
      case Op.BATCH_FORGET:
        for (const f of req.body.items) core.forget(f.nodeid, f.nlookup);
        return null;
      case Op.GETATTR:
        return encodeAttrOut(CACHE_TTL_SECONDS, toKernel(await core.getattr(h.nodeid)));
      case Op.READLINK:
        return core.readlink(h.nodeid);
      case Op.OPEN: {
        const flags = req.body.flags;
        if ((flags & O_ACCMODE) !== 0 || (flags & O_TRUNC) !== 0) return -Errno.EROFS;
        const fh = await core.open(h.nodeid);
        const st = await core.getattr(h.nodeid);
        if ((st.mode & S_IFMT) === S_IFREG && st.size > this.pageCacheMax) {
          this.directFiles.set(fh, { nodeid: h.nodeid, size: st.size });
          return encodeOpenOut(fh, FOPEN_DIRECT_IO);
        }
        return encodeOpenOut(fh, FOPEN_KEEP_CACHE);
      }
      case Op.READ: {
        const { fh, offset, size } = req.body;
        const direct = size <= SMALL_READ_MAX ? this.directFiles.get(fh) : undefined;
        if (direct !== undefined) return this.pageCache.read(direct.nodeid, direct.size, offset, size, (o, l) => core.read(fh, o, l));
        return core.readHeld(fh, offset, size);
      }
      case Op.RELEASE: {
        this.directFiles.delete(req.body.fh);
        await core.release(req.body.fh);
        return Buffer.alloc(0);
      }
      case Op.OPENDIR: {
        // Zero-message opendir: the kernel then opens directories itself (with FOPEN_KEEP_CACHE
        // and FOPEN_CACHE_DIR, as below) and never sends OPENDIR or RELEASEDIR again, which
        // saves a walk one round trip per directory; READDIR then carries no handle.
        if (this.zeroMessageOpendir) return -Errno.ENOSYS;
        const dh = await core.opendir(h.nodeid);
        return encodeOpenOut(dh, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR);
      }
      case Op.READDIR:
      case Op.READDIRPLUS:
        return this.readdir(h.nodeid, req.body, req.op === Op.READDIRPLUS);
      case Op.RELEASEDIR:
        core.releasedir(req.body.fh);
        return Buffer.alloc(0);
      case Op.GETXATTR: {
        const { size, name } = req.body;
        const value = await core.getxattr(h.nodeid, name);
        if (value === undefined) return -Errno.ENODATA;
        if (size === 0) return encodeXattrSize(value.length);
        if (value.length > size) return -Errno.ERANGE;
        return value;
      }
      case Op.LISTXATTR: {
        const size = req.body.size;
        const names = await core.listxattr(h.nodeid);
        const list = Buffer.concat(names.flatMap((n) => [n, Buffer.from([0])]));
        if (size === 0) return encodeXattrSize(list.length);
        if (list.length > size) return -Errno.ERANGE;
        return list;
      }
      case Op.STATFS:
        return encodeStatfs({ blocks: 0, files: this.core.counters.inodes, bsize: 4096, namelen: 255 });
      case Op.FLUSH:
      case Op.FSYNC:
      case Op.FSYNCDIR:
        return Buffer.alloc(0);
      case Op.INTERRUPT:
        // Requests finish quickly on their own; the kernel copes with a late reply.
        return null;
      case Op.DESTROY:
        this.opts.onDestroy?.();
        return Buffer.alloc(0);
    }
  }

  private init(req: InitRequest): Buffer | number {
    const { major, minor, maxReadahead, flags: kernelFlags, flags2: kernelFlags2 } = req;
    if (major !== FUSE_KERNEL_VERSION) return -Errno.EPROTO;
    this.minor = Math.min(minor, FUSE_KERNEL_MINOR);
    const wanted =
      InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS | InitFlag.INIT_EXT;
    // Large files are opened FOPEN_DIRECT_IO; where the kernel can, it still maps them shared.
    const flags2 = kernelFlags2 & InitFlag2.DIRECT_IO_ALLOW_MMAP;
    const flags = (kernelFlags & wanted & ~InitFlag.INIT_EXT) | (flags2 !== 0 ? InitFlag.INIT_EXT : 0);
    this.plusAllowed = (flags & InitFlag.DO_READDIRPLUS) !== 0;
    // Older kernels fail the open on that ENOSYS: only where the kernel says it understands it.
    this.zeroMessageOpendir = this.opts.zeroMessageOpendir !== false && (kernelFlags & InitFlag.NO_OPENDIR_SUPPORT) !== 0;
    const out = Buffer.alloc(64);
    out.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
    out.writeUInt32LE(this.minor, 4);
    out.writeUInt32LE(maxReadahead, 8);
    out.writeUInt32LE(flags, 12);
    out.writeUInt16LE(16, 16); // max_background: async requests (reads, read-ahead) the kernel keeps in flight
    out.writeUInt16LE(12, 18); // congestion_threshold
    out.writeUInt32LE(MAX_WRITE, 20);
    out.writeUInt32LE(1, 24); // time_gran: timestamps are exact to the nanosecond
    out.writeUInt16LE(MAX_PAGES, 28);
    out.writeUInt32LE(flags2, 32);
    queueMicrotask(() => this.opts.onInit?.());
    return out;
  }

  private async readdir(nodeid: number, req: ReadRequest, plus: boolean): Promise<Buffer> {
    const { fh: dh, offset, size } = req;
    const withAttrs = plus && this.plusAllowed;
    let used = 0;
    const fits = (name: Buffer): boolean => {
      const need = direntSize(name.length, withAttrs);
      if (used + need > size) return false;
      used += need;
      return true;
    };
    // Handle 0: a directory the kernel opened without asking (zero-message opendir).
    const entries: DirListEntry[] =
      dh === 0 && this.zeroMessageOpendir
        ? await this.core.readdirUnopened(nodeid, offset, withAttrs, fits)
        : await this.core.readdir(dh, offset, withAttrs, fits);
    const out = Buffer.alloc(used);
    let off = 0;
    let pos = offset;
    for (const e of entries) {
      pos++;
      if (withAttrs) {
        encodeEntryOut(out, off, e.nodeid, CACHE_TTL_SECONDS, e.nodeid === 0 ? undefined : toKernel(e.attr));
        off += ENTRY_OUT_SIZE;
      }
      off = encodeDirent(out, off, e.attr.ino, pos, e.attr.mode, e.name);
    }
    return out;
  }
}
