/**
 * VfsNodes over a pxar archive (unified, or split .mpxar + .ppxar), backed by the random-access
 * accessor: nothing is read until a node is asked for it, and a lookup reads only the directories
 * on its path.
 *
 * - Inode numbers are stable and derived from archive offsets: the root is 1, every other entry
 *   is its FILENAME offset + 2. A hardlink reports its target's inode number (same identity).
 * - nlink of regular files needs to know how many hardlinks point at a file, which only a scan of
 *   the whole archive can tell. The scan is lazy (first stat of a file or hardlink), single-flight,
 *   cached, and reads item headers only (for split archives the .mpxar, never the payload). It is
 *   on by default for split archives whose metadata stream is up to 256 MiB (about 1.9 million
 *   entries; the header scan reads about a million entries a second or more)
 *   and for unified archives up to 64 MiB (a unified archive interleaves contents, so its scan
 *   touches every chunk); `nlinkScanMaxBytes` overrides both bounds. Without the scan, files
 *   report nlink 1 and hardlink names 2. Directories report nlink 1 ("unknown", which
 *   find(1) and friends accept) so that stat never has to list a directory.
 * - st_blocks = ceil(size / 512); devices carry rdev in the glibc makedev encoding.
 * - Extended attributes are the stored xattrs plus the ACLs rendered as system.posix_acl_* and
 *   fcaps as security.capability.
 * - Names are raw bytes (non-UTF-8 names stay as they are).
 */
import { LimitError, UsageError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import { IndexReadAt } from '../index/index-read-at.js';
import { PxarAccessor, type AccessorOptions } from '../pxar/accessor.js';
import { HarvestingReadAt, type HarvestBudget } from '../pxar/metadata-harvest.js';
import { allXattrs } from '../pxar/acl.js';
import { makedev } from '../pxar/format.js';
import { scanHardlinkCounts } from '../pxar/hardlink-scan.js';
import type { PxarEntry, PxarKind } from '../pxar/types.js';
import { registerInodeDomain, type InodeSource } from './core.js';
import type { VfsDirEntry, VfsFileHandle, VfsKind, VfsNode, VfsStat } from './types.js';

export interface PxarTreeOptions extends AccessorOptions {
  /** 'auto' (default): scan for hardlink counts when cheap (see above); 'scan': always; 'off': never. */
  nlink?: 'auto' | 'scan' | 'off';
  /** Largest stream 'auto' scans (default: 256 MiB for a split archive's metadata, 64 MiB unified). */
  nlinkScanMaxBytes?: number;
  /**
   * Start that scan as soon as the archive is opened (a mount: the first `ls -l` or `find` then
   * finds it done or under way) instead of at the first stat of a file (one-shot commands).
   */
  nlinkScanEagerly?: boolean;
  /**
   * With nlinkScanEagerly: start the scan only once this settles. A mount passes "mounted, and
   * its decode threads are up": scanning a split archive's metadata before that decoded its
   * chunks on the thread that must answer the kernel's INIT, and mount(8) waited for it.
   */
  nlinkScanAfter?: Promise<void>;
  /** Deepest directory level served (default 1024). */
  maxDepth?: number;
  /**
   * Keep the metadata of unified archives read through an index as chunks pass by (see
   * pxar/metadata-harvest.ts), within this budget shared by every archive given it. A mount
   * sets it; one-shot commands read too little for it to pay.
   */
  harvest?: HarvestBudget;
}

const KIND: Record<Exclude<PxarKind, 'hardlink'>, VfsKind> = {
  directory: 'directory',
  file: 'file',
  symlink: 'symlink',
  chardev: 'chardev',
  blockdev: 'blockdev',
  fifo: 'fifo',
  socket: 'socket',
};

/** Shared state of one opened archive. */
export class PxarTree implements InodeSource {
  private linkCounts: Promise<Map<number, number> | undefined> | undefined;
  /** What linkCounts settled to (null while the scan runs or has not started). */
  private settledLinkCounts: Map<number, number> | undefined | null = null;
  /**
   * What rebuilding a node from its inode number needs beyond the archive itself: a directory's
   * end (from its parent's goodbye record) and depth, and which files were reached through a
   * hardlink. A few bytes per directory seen, none per file.
   */
  private readonly dirEnds = new Map<number, number>();
  private readonly dirDepths = new Map<number, number>();
  private readonly hardlinked = new Set<number>();
  private rootNode: PxarNode | undefined;
  readonly scanNlink: boolean;
  readonly maxDepth: number;

  constructor(
    readonly accessor: PxarAccessor,
    opts: PxarTreeOptions,
  ) {
    const mode = opts.nlink ?? 'auto';
    this.scanNlink =
      mode === 'scan' ||
      (mode === 'auto' && accessor.archive.size <= (opts.nlinkScanMaxBytes ?? (accessor.version === 2 ? 256 : 64) * 1024 * 1024));
    this.maxDepth = opts.maxDepth ?? 1024;
    if (this.scanNlink && opts.nlinkScanEagerly) {
      void (opts.nlinkScanAfter ?? Promise.resolve()).then(() => setImmediate(() => void this.hardlinkCounts()));
    }
  }

  /**
   * Hardlink names per target FILENAME offset (from one metadata scan, done once), or undefined
   * when the scan failed (a damaged archive): stat then falls back to the no-scan values rather
   * than failing every stat; the damage surfaces where the damaged entries are read.
   */
  hardlinkCounts(): Promise<Map<number, number> | undefined> {
    if (this.linkCounts === undefined) {
      // Item headers only (no entry decoding), metadata only (for split archives the .mpxar,
      // never the payload), so contents are never touched.
      this.linkCounts = scanHardlinkCounts(this.accessor.archive)
        .catch(() => undefined)
        .then((counts) => (this.settledLinkCounts = counts));
    }
    return this.linkCounts;
  }

  /** hardlinkCounts() once it has settled; null before (the scan has to be awaited). */
  hardlinkCountsIfDone(): Map<number, number> | undefined | null {
    return this.settledLinkCounts;
  }

  /** A node for an entry (hardlinks resolved to their target). */
  async node(entry: PxarEntry, depth: number): Promise<PxarNode> {
    return entry.kind === 'hardlink' ? this.placed(entry, await this.accessor.resolve(entry), depth) : this.placed(entry, entry, depth);
  }

  /** The node of an entry listed under a directory at `depth` (`target`: a hardlink's, resolved). */
  private placed(entry: PxarEntry, target: PxarEntry, depth: number): PxarNode {
    if (depth > this.maxDepth) {
      throw new LimitError(`directories nested deeper than ${this.maxDepth} levels`, {
        file: this.accessor.name,
        offset: entry.filenameOffset,
      });
    }
    if (target.kind === 'hardlink') throw new UsageError('a hardlink node needs its resolved target');
    const ino = pxarIno(target);
    if (target.kind === 'directory' && ino !== 1) {
      this.dirEnds.set(ino, target.end);
      this.dirDepths.set(ino, depth);
    }
    if (entry.kind === 'hardlink') this.hardlinked.add(ino);
    return this.nodeOf(entry, target, depth);
  }

  /** The nodes of a directory's children (hardlinks resolved), in listing order. */
  async nodes(entries: PxarEntry[], depth: number): Promise<PxarNode[]> {
    const out: PxarNode[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      // Only hardlinks need I/O (their target): no promise per plain entry.
      out[i] = e.kind === 'hardlink' ? await this.node(e, depth) : this.placed(e, e, depth);
    }
    return out;
  }

  /** The root directory node (made once). */
  async root(): Promise<PxarNode> {
    this.rootNode ??= await this.node(this.accessor.root(), 0);
    return this.rootNode;
  }

  /** InodeSource: the node of an entry listed or looked up before, from its inode number. */
  async nodeByIno(ino: number): Promise<VfsNode> {
    if (ino === 1) return this.root();
    const entry = await this.accessor.entryAt(ino - 2, this.dirEnds.get(ino));
    const node = this.nodeOf(entry, entry, this.dirDepths.get(ino) ?? 0);
    // Inode numbers handed out for hardlinks are the target's: a rebuilt node cannot tell which
    // name the kernel reached it by, so it keeps the hardlink's answer (nlink without the scan).
    node.viaHardlink = this.hardlinked.has(ino);
    return node;
  }

  /**
   * InodeSource: a rebuilt node's name and directory. The directory is the innermost one seen
   * whose range holds the entry's position (a scan of the directories seen: messages only).
   */
  placeOfIno(ino: number, node: VfsNode): { name: Buffer; parentIno: number } | undefined {
    if (ino === 1 || !(node instanceof PxarNode)) return undefined;
    const pos = ino - 2;
    let parentIno = 1;
    let parentStart = -1;
    for (const [dirIno, end] of this.dirEnds) {
      const start = dirIno - 2;
      if (start < pos && pos < end && start > parentStart) {
        parentIno = dirIno;
        parentStart = start;
      }
    }
    return { name: node.entry.name, parentIno };
  }

  private nodeOf(entry: PxarEntry, target: PxarEntry, depth: number): PxarNode {
    // One class per kind: the VfsNode contract tells kinds apart by which methods exist, and
    // prototype methods cost nothing per node (a mount may hold every entry of an archive).
    if (target.kind === 'directory') return new PxarDirNode(this, entry, target, depth);
    if (target.kind === 'file') return new PxarFileNode(this, entry, target, depth);
    if (target.kind === 'symlink') return new PxarSymlinkNode(this, entry, target, depth);
    return new PxarNode(this, entry, target, depth);
  }
}

/** Inode number of an entry: root 1, others FILENAME offset + 2 (offsets are unique). */
export function pxarIno(e: PxarEntry): number {
  return e.filenameOffset < 0 ? 1 : e.filenameOffset + 2;
}

/**
 * A node of a pxar archive (devices, FIFOs and sockets use this class directly). Nodes keep only
 * their entries: a directory's children are not cached here (the VFS core keeps an open
 * directory's listing for as long as it is open, and the accessor caches decoded tables).
 */
export class PxarNode implements VfsNode {
  readonly kind: VfsKind;
  /** Rebuilt from an inode number that a hardlink was listed under (see PxarTree.nodeByIno). */
  viaHardlink = false;

  constructor(
    protected readonly tree: PxarTree,
    /** The entry as found in its directory (may be a hardlink). */
    readonly entry: PxarEntry,
    /** The entry whose data and metadata this node shows (the hardlink's target, or `entry`). */
    readonly target: PxarEntry,
    readonly depth: number,
  ) {
    this.kind = KIND[target.kind as Exclude<PxarKind, 'hardlink'>];
  }

  async stat(): Promise<VfsStat> {
    const counts = this.needsLinkCounts() ? await this.tree.hardlinkCounts() : undefined;
    return this.attributes(counts);
  }

  statSync(): VfsStat | undefined {
    if (!this.needsLinkCounts()) return this.attributes(undefined);
    const counts = this.tree.hardlinkCountsIfDone();
    return counts === null ? undefined : this.attributes(counts);
  }

  /** Regular files take nlink from the archive-wide hardlink scan when there is one. */
  private needsLinkCounts(): boolean {
    return this.target.kind === 'file' && this.tree.scanNlink;
  }

  private attributes(counts: Map<number, number> | undefined): VfsStat {
    const t = this.target;
    const st = t.metadata!.stat;
    let nlink = 1;
    if (t.kind === 'file') {
      if (counts !== undefined) nlink = 1 + (counts.get(t.filenameOffset) ?? 0);
      else if (this.entry.kind === 'hardlink' || this.viaHardlink) nlink = 2;
    }
    const size = t.kind === 'file' || t.kind === 'symlink' ? t.size : 0;
    const rdev = t.device !== undefined ? Number(makedev(BigInt(t.device.major), BigInt(t.device.minor))) : 0;
    return {
      ino: pxarIno(t),
      mode: st.mode,
      nlink,
      uid: st.uid,
      gid: st.gid,
      size,
      blocks: Math.ceil(size / 512),
      mtimeSec: st.mtimeSecs,
      mtimeNsec: st.mtimeNanos,
      rdev,
    };
  }

  hardlinkTarget(): Buffer | undefined {
    return this.entry.hardlink?.target;
  }

  async listxattr(): Promise<Buffer[]> {
    return allXattrs(this.target.metadata!).map((x) => x.name);
  }

  async getxattr(name: Buffer): Promise<Buffer | undefined> {
    return allXattrs(this.target.metadata!).find((x) => x.name.equals(name))?.value;
  }
}

export class PxarDirNode extends PxarNode {
  /** Children sorted by name bytes. */
  async readdir(): Promise<VfsDirEntry[]> {
    const entries = await this.tree.accessor.readdir(this.target);
    const nodes = await this.tree.nodes(entries, this.depth + 1);
    const out: VfsDirEntry[] = entries.map((e, i) => ({ name: e.name, node: nodes[i]! }));
    return out.sort((a, b) => Buffer.compare(a.name, b.name));
  }

  async lookup(name: Buffer): Promise<VfsNode | undefined> {
    const e = await this.tree.accessor.lookup(this.target, name);
    return e === undefined ? undefined : this.tree.node(e, this.depth + 1);
  }
}

export class PxarFileNode extends PxarNode {
  async open(): Promise<VfsFileHandle> {
    const acc = this.tree.accessor;
    const t = this.target;
    // Validates the payload reference once, up front, so open fails rather than the first read.
    await acc.content.locate(t);
    return {
      read: (offset, length) => acc.read(t, offset, length),
      readHeld: (offset, length) => acc.readHeld(t, offset, length),
      forget: (offset, length) => void acc.forget(t, offset, length),
      release: async () => undefined,
    };
  }
}

export class PxarSymlinkNode extends PxarNode {
  async readlink(): Promise<Buffer> {
    return this.target.symlinkTarget!;
  }
}

/**
 * Opens an archive and returns its root directory node. `payload` is the .ppxar stream of a split
 * archive (omit it to browse metadata only: opening a file then fails with NotFoundError).
 */
export async function openPxarTree(archive: ReadAt, payload?: ReadAt, opts: PxarTreeOptions = {}): Promise<PxarNode> {
  // A split archive's metadata stream holds nothing else: the chunk cache is all it needs.
  if (payload === undefined && opts.harvest !== undefined && archive instanceof IndexReadAt) archive = new HarvestingReadAt(archive, opts.harvest);
  const accessor = await PxarAccessor.open(archive, payload, opts);
  const tree = new PxarTree(accessor, opts);
  return registerInodeDomain(await tree.root(), tree);
}
