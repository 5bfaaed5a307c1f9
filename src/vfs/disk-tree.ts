/**
 * The volumes of a disk image as VfsNodes: `NAME.img.d/` beside every image `NAME.img`, holding
 * one entry per volume, named as proxmox-file-restore names them:
 *
 *   raw/          a filesystem on the whole disk
 *   part/N/       partition N (Linux numbering: GPT entry, MBR slot, logical from 5)
 *   lvm/VG/LV/    a logical volume
 *
 * each the root of its filesystem, with the filesystem's own attributes, xattrs and link
 * targets. A volume that no reader can open (LUKS, swap, NTFS, a truncated partition, ...) is a
 * read-only file `part/N.img` (`lvm/VG/LV.img`) of its raw bytes instead, loop-mountable; an
 * extended partition container and an LV whose bytes cannot be assembled are left out (`pbsfs
 * volumes` says why). The layout is read when the directory is first entered, a filesystem when
 * its root is; every read goes through the image's ReadAt, so only the chunks it touches are
 * fetched. Each filesystem is its own inode domain: its inode numbers are the filesystem's.
 */
import { NotFoundError, PbsfsError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import { FILESYSTEM_DRIVERS, findDriver } from '../disk/drivers.js';
import type { Filesystem, FilesystemDriver, FilesystemOpenOptions, FsStat } from '../disk/filesystem.js';
import { scanDisk } from '../disk/volumes/layout.js';
import type { DiskLayout, VolumeEntry } from '../disk/volumes/types.js';
import { registerInodeDomain, type InodeSource } from './core.js';
import type { VfsDirEntry, VfsFileHandle, VfsKind, VfsNode, VfsStat } from './types.js';
import { LazyDir, ReadAtFile, S_IFDIR, compareNames, type NodeTimes } from './virtual-nodes.js';

export interface DiskTreeOptions {
  /** Filesystem readers (default: every one pbsfs has). */
  drivers?: readonly FilesystemDriver[];
  /** Passed to each filesystem's open (e.g. the ext3/4 journal view). */
  fs?: FilesystemOpenOptions;
}

const KIND_OF_TYPE: Record<number, VfsKind> = {
  0o040000: 'directory',
  0o100000: 'file',
  0o120000: 'symlink',
  0o020000: 'chardev',
  0o060000: 'blockdev',
  0o010000: 'fifo',
  0o140000: 'socket',
};

export function kindOfMode(mode: number, where: string, ino: number): VfsKind {
  const k = KIND_OF_TYPE[mode & 0o170000];
  if (k === undefined) throw new PbsfsError('format', `inode ${ino} has no valid file type (mode 0${mode.toString(8)})`, { file: where });
  return k;
}

/** A filesystem's attributes in the VFS's units: every time it keeps, not only mtime. */
export function vfsStatOf(st: FsStat): VfsStat {
  const out: VfsStat = {
    ino: st.ino,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    blocks: st.blocks,
    mtimeSec: st.mtime.sec,
    mtimeNsec: st.mtime.nsec,
    rdev: st.rdev,
    atimeSec: st.atime.sec,
    atimeNsec: st.atime.nsec,
    ctimeSec: st.ctime.sec,
    ctimeNsec: st.ctime.nsec,
  };
  if (st.crtime !== undefined) {
    out.crtimeSec = st.crtime.sec;
    out.crtimeNsec = st.crtime.nsec;
  }
  return out;
}

/** One inode of a filesystem. */
export class FsNode implements VfsNode {
  readonly kind: VfsKind;
  readonly readdir?: () => Promise<VfsDirEntry[]>;
  readonly lookup?: (name: Buffer) => Promise<VfsNode | undefined>;
  readonly readlink?: () => Promise<Buffer>;
  readonly open?: () => Promise<VfsFileHandle>;

  constructor(
    readonly fs: Filesystem,
    private readonly st: FsStat,
  ) {
    this.kind = kindOfMode(st.mode, fs.name, st.ino);
    if (this.kind === 'directory') {
      this.readdir = () => this.list();
      this.lookup = (name) => this.child(name);
    } else if (this.kind === 'symlink') {
      this.readlink = () => fs.readlink(st.ino);
    } else if (this.kind === 'file') {
      this.open = async () => this.handle();
    }
  }

  /** A node of `fs` by inode number. */
  static async of(fs: Filesystem, ino: number): Promise<FsNode> {
    return new FsNode(fs, await fs.stat(ino));
  }

  get ino(): number {
    return this.st.ino;
  }

  async stat(): Promise<VfsStat> {
    return vfsStatOf(this.st);
  }

  statSync(): VfsStat {
    return vfsStatOf(this.st);
  }

  private async list(): Promise<VfsDirEntry[]> {
    const entries = await this.fs.readdir(this.st.ino);
    const nodes = await Promise.all(entries.map((e) => FsNode.of(this.fs, e.ino)));
    return entries.map((e, i) => ({ name: e.name, node: nodes[i]! as VfsNode })).sort((a, b) => compareNames(a.name, b.name));
  }

  private async child(name: Buffer): Promise<VfsNode | undefined> {
    const ino = await this.fs.lookup(this.st.ino, name);
    return ino === undefined ? undefined : FsNode.of(this.fs, ino);
  }

  private handle(): VfsFileHandle {
    const { fs, st } = this;
    return {
      read: (offset, length) => fs.read(st.ino, offset, length),
      release: async () => undefined,
    };
  }

  listxattr(): Promise<Buffer[]> {
    return this.fs.listxattr(this.st.ino);
  }

  getxattr(name: Buffer): Promise<Buffer | undefined> {
    return this.fs.getxattr(this.st.ino, name);
  }
}

/**
 * The root of a volume's filesystem, opened on first use. Until it is open (and if opening
 * fails) it shows as an empty-looking directory owned by root; opening errors surface on
 * listing or lookup, so one bad volume never hides the others.
 */
export class FilesystemRoot implements VfsNode {
  readonly kind = 'directory' as const;
  private opened: Promise<FsNode> | undefined;

  constructor(
    private readonly openFs: () => Promise<Filesystem>,
    private readonly times: NodeTimes,
  ) {
    const source: InodeSource = { nodeByIno: async (ino) => FsNode.of((await this.root()).fs, ino) };
    registerInodeDomain(this, source);
  }

  root(): Promise<FsNode> {
    if (this.opened === undefined) {
      const p = this.openFs().then((fs) => FsNode.of(fs, fs.rootIno));
      p.catch(() => {
        if (this.opened === p) this.opened = undefined; // retried next time
      });
      this.opened = p;
    }
    return this.opened;
  }

  async stat(): Promise<VfsStat> {
    try {
      return await (await this.root()).stat();
    } catch {
      return { ino: 1, mode: S_IFDIR | 0o555, nlink: 2, uid: 0, gid: 0, size: 0, blocks: 0, mtimeSec: this.times.mtimeSec, mtimeNsec: this.times.mtimeNsec ?? 0, rdev: 0 };
    }
  }

  async readdir(): Promise<VfsDirEntry[]> {
    return (await this.root()).readdir!();
  }

  async lookup(name: Buffer): Promise<VfsNode | undefined> {
    return (await this.root()).lookup!(name);
  }

  async listxattr(): Promise<Buffer[]> {
    return (await this.root()).listxattr();
  }

  async getxattr(name: Buffer): Promise<Buffer | undefined> {
    return (await this.root()).getxattr(name);
  }
}

/** Opens the filesystem of a readable volume with the driver whose superblock it has. */
export async function openVolumeFilesystem(v: VolumeEntry, opts: DiskTreeOptions = {}): Promise<Filesystem> {
  const src = v.source;
  const driver = src !== undefined ? await findDriver(src, opts.drivers ?? FILESYSTEM_DRIVERS) : undefined;
  if (src === undefined || driver === undefined) throw new NotFoundError(`no filesystem reader for volume ${v.path}`, { file: src?.name ?? v.path });
  return driver.open(src, opts.fs);
}

interface DirTree {
  children: Map<string, DirTree | VfsNode>;
}

/** The nodes of a layout: readable volumes as filesystem roots, the others as raw files. */
export function layoutEntries(layout: DiskLayout, times: NodeTimes, opts: DiskTreeOptions = {}): VfsDirEntry[] {
  const top: DirTree = { children: new Map() };
  for (const v of layout.volumes) {
    if (v.source === undefined) continue;
    if (!v.readable && v.path === 'raw') continue; // the image file itself is that
    const parts = v.path.split('/');
    let dir = top;
    for (const p of parts.slice(0, -1)) {
      let next = dir.children.get(p);
      if (next === undefined || !('children' in next)) dir.children.set(p, (next = { children: new Map() }));
      dir = next as DirTree;
    }
    const leaf = parts[parts.length - 1]!;
    const src = v.source;
    if (v.readable) dir.children.set(leaf, new FilesystemRoot(() => openVolumeFilesystem(v, opts), times));
    else dir.children.set(`${leaf}.img`, new ReadAtFile(() => src, src.size, times, 0o444));
  }
  const toEntries = (d: DirTree): VfsDirEntry[] =>
    [...d.children].map(([name, n]) => ({
      name: Buffer.from(name),
      node: 'children' in n ? new LazyDir(async () => toEntries(n as DirTree), times) : (n as VfsNode),
    }));
  return toEntries(top);
}

/** `NAME.img.d/` for the image `open()` gives (opened and scanned on first use). */
export function imageVolumesDir(open: () => Promise<ReadAt>, times: NodeTimes, opts: DiskTreeOptions = {}): VfsNode {
  return new LazyDir(async () => {
    const src = await open();
    const layout = await scanDisk(src, opts.drivers !== undefined ? { drivers: opts.drivers } : {});
    return layoutEntries(layout, times, opts);
  }, times);
}
