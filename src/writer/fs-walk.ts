/**
 * Walks a source directory into a PxarEncoder the way the PBS client does
 * (pbs-client pxar/create.rs, as described in the vectors' README and the pxar spec):
 * - lstat, never following symlinks; names are raw bytes, sorted bytewise;
 * - full st_mode, uid/gid, mtime with nanoseconds;
 * - xattrs / ACLs / fcaps on files and directories only (symlinks, devices, fifos and sockets
 *   get none, the client opens them with O_PATH);
 * - a regular file seen again under another name (same st_dev/st_ino) becomes a HARDLINK to the
 *   first name, recorded by its path relative to the archive root.
 * Flags and project ids need ioctls Node lacks: they are read by the python3 helper in
 * fs-attrs.ts (absent without python3). FAT attribute flags are not read.
 */
import { closeSync, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { fromSystemError, UsageError } from '../errors.js';
import { MODE } from '../pxar/format.js';
import { readTreeAttrs, type AttrsTool, type FileAttrs } from './fs-attrs.js';
import type { CatalogWriter } from '../catalog/catalog-writer.js';
import type { PxarEncoder, PxarMeta } from './pxar-encoder.js';

export interface WalkOptions {
  /** Read xattrs, ACLs, fcaps and flags (default true; off when no helper tool exists). */
  xattrs?: boolean;
  /** Which helper reads them (default: python3 if present, else getfattr). */
  attrsTool?: AttrsTool;
  /** Called for non-fatal problems (unreadable entries are skipped, as upstream does). */
  onWarning?: (msg: string) => void;
  /** Progress: called after each entry with the file bytes it added. */
  onEntry?: (bytes: number) => void;
  /** Progress within files: called after each read with the bytes it added. */
  onRead?: (bytes: number) => void;
  /** Read size for file contents (default 4 MiB). */
  readSize?: number;
  /**
   * Descend into other mounted filesystems (default false: like proxmox-backup-client without
   * --all-file-systems, a mount point is archived as an empty directory, so backing up `/`
   * does not wander into /proc or /sys).
   */
  allFileSystems?: boolean;
  /** Directories (dev:ino keys, see `dirKey`) left out entirely, e.g. the datastore itself. */
  skipDirs?: Set<string>;
  /**
   * Catalog fed during the walk, as the PBS client does: the caller opens the archive's
   * directory (`root.pxar.didx`) before `run` and closes it afterwards.
   */
  catalog?: CatalogWriter;
}

export interface WalkStats {
  entries: number;
  files: number;
  directories: number;
  hardlinks: number;
  bytes: number;
  skipped: number;
}

/** Identity of a directory for `skipDirs`. */
export function dirKey(path: string): string | undefined {
  try {
    const st = lstatSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

const SLASH = Buffer.from('/');
const NS_PER_S = 1_000_000_000n;

/** Metadata of an lstat result (mtime floored to seconds + nanoseconds, also before 1970). */
export function metaFromStat(st: BigIntStats): PxarMeta {
  const ns = st.mtimeNs;
  let secs = ns / NS_PER_S;
  let nanos = ns - secs * NS_PER_S;
  if (nanos < 0n) {
    secs -= 1n;
    nanos += NS_PER_S;
  }
  return { mode: Number(st.mode), flags: 0, uid: Number(st.uid), gid: Number(st.gid), mtimeSecs: secs, mtimeNanos: Number(nanos) };
}

/** Linux major/minor of a dev_t (glibc gnu_dev_major/minor). */
export function splitDev(rdev: bigint): { major: bigint; minor: bigint } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn & 0xffffffffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn & 0xffffffffn);
  return { major, minor };
}

function withAttrs(meta: PxarMeta, a: FileAttrs | undefined): PxarMeta {
  if (a === undefined) return meta;
  meta.flags = a.flags;
  if (a.projectId !== undefined) meta.quotaProjectId = a.projectId;
  if (a.xattrs.length) meta.xattrs = a.xattrs;
  if (a.acl !== undefined) meta.acl = a.acl;
  if (a.fcaps !== undefined) meta.fcaps = a.fcaps;
  return meta;
}

/** Root directory metadata (needed to construct the encoder). */
export function rootMeta(root: string): PxarMeta {
  let st: BigIntStats;
  try {
    st = lstatSync(root, { bigint: true });
  } catch (e) {
    throw fromSystemError(e, root, 'cannot read the backup source');
  }
  if (!st.isDirectory()) throw new UsageError(`backup source ${root} is not a directory`);
  return metaFromStat(st);
}

/**
 * Encodes the tree under `root` into `enc` (which the caller created with `rootMeta(root)` plus
 * attributes from `rootAttrs`), then finishes the encoder.
 */
export class TreeWalker {
  readonly stats: WalkStats = { entries: 0, files: 0, directories: 0, hardlinks: 0, bytes: 0, skipped: 0 };
  private readonly attrs: Map<string, FileAttrs> | undefined;
  private readonly links = new Map<string, { path: Buffer; offset: number }>();
  private readonly readSize: number;
  private rootDev = 0n;

  constructor(
    readonly root: string,
    private readonly opts: WalkOptions = {},
  ) {
    this.attrs = opts.xattrs === false ? undefined : readTreeAttrs(root, opts.onWarning, opts.attrsTool ?? 'auto');
    this.readSize = opts.readSize ?? 4 * 1024 * 1024;
  }

  /** True when xattrs/ACLs are being recorded. */
  get recordsAttrs(): boolean {
    return this.attrs !== undefined;
  }

  /** Root metadata including its attributes. */
  rootMeta(): PxarMeta {
    return withAttrs(rootMeta(this.root), this.attrs?.get(''));
  }

  /** Adds every entry below the root, then closes the archive. */
  run(enc: PxarEncoder): WalkStats {
    this.rootDev = lstatSync(this.root, { bigint: true }).dev;
    this.walkDir(enc, Buffer.from(this.root), Buffer.alloc(0));
    enc.finish();
    return this.stats;
  }

  private warn(msg: string): void {
    this.stats.skipped++;
    this.opts.onWarning?.(msg);
  }

  private walkDir(enc: PxarEncoder, abs: Buffer, rel: Buffer): void {
    let names: Buffer[];
    try {
      names = readdirSync(abs, { encoding: 'buffer' });
    } catch (e) {
      this.warn(`cannot list ${abs.toString()}: ${(e as Error).message}`);
      return;
    }
    names.sort(Buffer.compare);
    for (const name of names) {
      const childAbs = Buffer.concat([abs, SLASH, name]);
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, SLASH, name]);
      this.addEntry(enc, name, childAbs, childRel);
    }
  }

  private addEntry(enc: PxarEncoder, name: Buffer, abs: Buffer, rel: Buffer): void {
    let st: BigIntStats;
    try {
      st = lstatSync(abs, { bigint: true });
    } catch (e) {
      this.warn(`cannot stat ${abs.toString()}: ${(e as Error).message}`);
      return;
    }
    const meta = metaFromStat(st);
    const type = meta.mode & MODE.IFMT;
    const attrs = (): FileAttrs | undefined => this.attrs?.get(rel.toString('latin1'));
    const cat = this.opts.catalog;
    this.stats.entries++;
    let bytes = 0;
    switch (type) {
      case MODE.IFDIR:
        if (this.opts.skipDirs?.has(`${st.dev}:${st.ino}`)) {
          this.stats.entries--;
          this.opts.onWarning?.(`skipping ${abs.toString()}: it is the datastore being written`);
          return;
        }
        enc.beginDirectory(name, withAttrs(meta, attrs()));
        this.stats.directories++;
        cat?.startDirectory(name);
        if (this.opts.allFileSystems || st.dev === this.rootDev) this.walkDir(enc, abs, rel);
        cat?.endDirectory();
        enc.endDirectory();
        break;
      case MODE.IFREG: {
        const key = `${st.dev}:${st.ino}`;
        if (st.nlink > 1n) {
          const first = this.links.get(key);
          if (first !== undefined) {
            enc.addHardlink(name, first.path, first.offset);
            cat?.addHardlink(name);
            this.stats.hardlinks++;
            break;
          }
        }
        const r = this.addFile(enc, name, abs, withAttrs(meta, attrs()), st.size);
        if (r === undefined) return;
        bytes = r.bytes;
        if (st.nlink > 1n) this.links.set(key, { path: Buffer.from(rel), offset: r.offset });
        cat?.addFile(name, r.bytes, meta.mtimeSecs);
        this.stats.files++;
        break;
      }
      case MODE.IFLNK: {
        let target: Buffer;
        try {
          target = readlinkSync(abs, { encoding: 'buffer' });
        } catch (e) {
          this.warn(`cannot read symlink ${abs.toString()}: ${(e as Error).message}`);
          return;
        }
        enc.addSymlink(name, meta, target);
        cat?.addSymlink(name);
        break;
      }
      case MODE.IFCHR:
      case MODE.IFBLK: {
        const { major, minor } = splitDev(st.rdev);
        enc.addDevice(name, meta, major, minor);
        if (type === MODE.IFBLK) cat?.addBlockDevice(name);
        else cat?.addCharDevice(name);
        break;
      }
      case MODE.IFIFO:
      case MODE.IFSOCK:
        enc.addSpecial(name, meta);
        if (type === MODE.IFIFO) cat?.addFifo(name);
        else cat?.addSocket(name);
        break;
      default:
        this.warn(`skipping ${abs.toString()}: unknown file type`);
        return;
    }
    this.stats.bytes += bytes;
    this.opts.onEntry?.(bytes);
  }

  /**
   * Streams one regular file. The size is taken from lstat; a file that grows is cut there,
   * one that shrinks is padded with zeros (both with a warning), so the archive stays valid.
   */
  private addFile(enc: PxarEncoder, name: Buffer, abs: Buffer, meta: PxarMeta, size: bigint): { offset: number; bytes: number } | undefined {
    let fd: number;
    try {
      fd = openSync(abs, 'r');
    } catch (e) {
      this.warn(`cannot open ${abs.toString()}: ${(e as Error).message}`);
      return undefined;
    }
    try {
      const total = Number(size);
      const offset = enc.beginFile(name, meta, total);
      let done = 0;
      while (done < total) {
        const want = Math.min(this.readSize, total - done);
        const buf = Buffer.allocUnsafe(want);
        let got = 0;
        while (got < want) {
          const n = readSync(fd, buf, got, want - got, null);
          if (n === 0) break;
          got += n;
        }
        if (got < want) {
          buf.fill(0, got);
          this.opts.onWarning?.(`${abs.toString()} shrank while being read; padded with zeros`);
          enc.writeFileData(buf);
          done += want;
          while (done < total) {
            const n = Math.min(this.readSize, total - done);
            enc.writeFileData(Buffer.alloc(n));
            done += n;
          }
          break;
        }
        enc.writeFileData(buf);
        done += got;
        this.opts.onRead?.(got);
      }
      if (fstatSync(fd, { bigint: true }).size > size) this.opts.onWarning?.(`${abs.toString()} grew while being read; archived the first ${total} bytes`);
      enc.endFile();
      return { offset, bytes: total };
    } finally {
      closeSync(fd);
    }
  }
}
