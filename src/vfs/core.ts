/**
 * The FUSE-free filesystem core: one object that answers everything a filesystem is asked
 * (lookup, getattr, readdir with attributes, readlink, xattrs, open/read/release), over a tree
 * of VfsNodes. The FUSE adapter is a thin translation of kernel requests to these calls; the CLI
 * uses the path API (`resolve`).
 *
 * Inode numbers. The kernel addresses nodes by a 64-bit node id that we hand out on lookup and
 * that stays valid until the kernel forgets it. A node's identity is (inode domain, st_ino):
 * every archive tree is one domain (registerInodeDomain), so two names of one hardlinked file
 * get the same node id; made-up nodes (snapshot and datastore directories, images, blobs) are
 * their own identity. When the whole mount is one archive, st_ino is the archive's own stable,
 * offset-derived number; when several archives share a mount, st_ino is the node id, which is
 * unique across them (so `du`/`cp -a` never mistake two archives' files for hardlinks).
 *
 * Reads. Each open file keeps its own state: a read that starts where the previous one ended
 * counts as sequential, and after two of those the next `readahead` chunks are fetched in the
 * background (through the chunk reader's single-flight LRU). Random reads never prefetch.
 *
 * Errors are PbsfsErrors mapped to errno names (PbsfsError.errno). A failed read logs one line
 * naming the file and the reason (the chunk digest is in the data layer's message) and answers
 * EIO for that read only.
 */
import { LRUCache } from 'lru-cache';
import { IoError, NotFoundError, PbsfsError, UsageError } from '../errors.js';
import { ListingReadAhead } from './listing-readahead.js';
import type { VfsDirEntry, VfsFileHandle, VfsNode, VfsStat } from './types.js';
import { OnceLog } from '../util/once-log.js';
import { TwoGenerationCache } from '../util/two-generation-cache.js';
import { heldData, heldForever, type HeldBytes } from '../io/read-at.js';
import { isPrefetching } from './virtual-nodes.js';

/** A filesystem error with its errno name, for the adapter. */
export class VfsError extends PbsfsError {
  constructor(
    readonly code: string,
    problem: string,
    file?: string,
  ) {
    super('io', problem, file !== undefined ? { file } : {});
  }
  override get errno(): string {
    return this.code;
  }
}

/** The errno name an error answers with. */
export function errnoOf(e: unknown): string {
  if (e instanceof PbsfsError) return e.errno;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  return 'EIO';
}

const domainRoots = new WeakMap<VfsNode, number>();
/** InodeSources by domain root: alive exactly as long as their tree's root is. */
const inodeSources = new WeakMap<VfsNode, InodeSource>();
/** Domain roots that have a source, by domain id (weak: trees come and go). */
const sourceRoots = new Map<number, WeakRef<VfsNode>>();
function sourceOfDomain(domain: number): InodeSource | undefined {
  const root = sourceRoots.get(domain)?.deref();
  return root === undefined ? undefined : inodeSources.get(root);
}
/** Node ids of rebuildable archive nodes: slot * 2^44 + st_ino (see VfsCore). */
const COMPACT_SPAN = 2 ** 44;
const MAX_SLOTS = Math.floor(Number.MAX_SAFE_INTEGER / COMPACT_SPAN);
let nextDomain = 1;

/**
 * Rebuilds any node of an archive tree from its inode number (st_ino), so that a mount of that
 * archive alone needs no table of every node the kernel has seen: the node id is the inode
 * number, and nodes live in a bounded cache. Without this, memory grows with every entry the
 * kernel keeps in its dentry cache (a `find` over ten million files would keep ten million nodes).
 */
export interface InodeSource {
  nodeByIno(ino: number): Promise<VfsNode>;
  /**
   * For messages about a rebuilt node (`node`, from nodeByIno): its name and the inode number of
   * the directory holding it (1: the archive's root), when known.
   */
  placeOfIno?(ino: number, node: VfsNode): { name: Buffer; parentIno: number } | undefined;
}

/** The InodeSource registered with a domain root, if any. */
export function inodeSourceOf(root: VfsNode): InodeSource | undefined {
  return inodeSources.get(root);
}

/**
 * Declares `root` the root of an archive tree: inode numbers below it are compared only with
 * each other (hardlinks share one). `source`, when given, can rebuild any node of the tree from
 * its inode number (see InodeSource). Returns the node for chaining.
 */
export function registerInodeDomain<T extends VfsNode>(root: T, source?: InodeSource): T {
  if (!domainRoots.has(root)) domainRoots.set(root, nextDomain++);
  if (source !== undefined) {
    inodeSources.set(root, source);
    sourceRoots.set(domainRoots.get(root)!, new WeakRef(root));
  }
  return root;
}

/** The largest read the kernel sends (FUSE max_pages); see VfsCore.serve. */
const SEQUENTIAL_SLACK = 1024 * 1024;

/** Progress of a sequential reader between two drop-behind hints (see VfsCore.dropBehind). */
const DROP_BEHIND_STEP = 1024 * 1024;

const virtualIds = new WeakMap<VfsNode, number>();
let nextVirtualId = 1;
function virtualKey(node: VfsNode): number {
  let id = virtualIds.get(node);
  if (id === undefined) {
    id = nextVirtualId++;
    virtualIds.set(node, id);
  }
  return id;
}

export interface VfsCoreOptions {
  /** Present every node as owned by this uid / gid. */
  uid?: number;
  gid?: number;
  /** Chunks to prefetch ahead of a sequential reader; 0 turns prefetch off. Default 4. */
  readahead?: number;
  /** Step between prefetch probes for handles that cannot prefetch themselves. Default 1 MiB. */
  prefetchStep?: number;
  /** Assumed chunk size for the prefetch window. Default 4 MiB. */
  chunkSizeHint?: number;
  /**
   * Files at least this large drop what a sequential reader has passed from the chunk cache
   * (see dropBehind). Default: never. The mount sets the chunk cache's size: a file that large
   * cannot stay cached whole anyway, so a second pass would find nothing of the first.
   */
  dropBehindFileBytes?: number;
  /** Counters of the data layer, shown in the `user.pbsfs.stats` xattr of the root. */
  stats?: () => object;
  /** Where read errors are reported (one line each). Default: stderr. */
  log?: (line: string) => void;
  /** Entries kept by the path-resolution cache. Default 4096. */
  pathCacheSize?: number;
  /**
   * Nodes kept in memory when the root archive can rebuild them (see InodeSource). Default
   * NODE_CACHE_DEFAULT.
   */
  nodeCacheSize?: number;
}

export const STATS_XATTR = 'user.pbsfs.stats';

/**
 * Default bound of the rebuildable-node cache: a few directories' worth of entries. A walk passes
 * each node once, and a node that outlives a young-generation collection or two is promoted and
 * must wait for a full one: with 16,384 nodes nearly every node was. Smaller bounds made walks
 * faster and smaller, and `ls -lR` and `getfattr -R` over a whole tree did not notice
 * (docs/performance.md). A node
 * that left the cache is rebuilt from its inode number (one entry decode).
 */
const NODE_CACHE_DEFAULT = 2048;

interface InodeEntry {
  nodeid: number;
  node: VfsNode;
  /** Domain id; 0 = made-up node keyed by identity. */
  domain: number;
  /** Identity within the domain: the archive inode number, or the made-up node's id. */
  key: number;
  lookups: number;
  /** Node id of the directory it was found in (PARENT_UNKNOWN: rebuilt, not placed yet). */
  parent: number;
  /** Name under `parent` (the path for messages is built from these only when needed). */
  name: Buffer;
  attr: VfsStat | undefined;
}

interface FileState {
  handle: VfsFileHandle;
  nodeid: number;
  path: string;
  size: number;
  expectedOffset: number;
  sequentialRun: number;
  prefetchedUntil: number;
  /** File offset below which this handle has told its source to forget (see dropBehind). */
  forgottenUntil: number;
}

interface DirState {
  nodeid: number;
  entries: Promise<VfsDirEntry[]> | undefined;
  /** Node ids of the subdirectories handed out so far by READDIRPLUS (for ListingReadAhead). */
  dirIds: number[];
  /** Listing position ("." is 0) up to which dirIds is complete; -1 once reported. */
  dirIdsUpTo: number;
}

export interface ResolvedEntry {
  nodeid: number;
  attr: VfsStat;
}

export interface DirListEntry {
  name: Buffer;
  /** Node id with one lookup reference taken (READDIRPLUS), or 0 for "." and "..". */
  nodeid: number;
  attr: VfsStat;
}

export interface VfsCounters {
  lookups: number;
  opens: number;
  reads: number;
  bytesRead: number;
  readErrors: number;
  prefetches: number;
  openFiles: number;
  inodes: number;
}

export const ROOT_ID = 1;

/** InodeEntry.parent of a rebuilt node until a message needs its place (see placeRebuilt). */
const PARENT_UNKNOWN = -1;

/** Directory listings kept for READDIRs without OPENDIR that stopped before the end. */
const UNOPENED_DIRS_MAX = 256;
/**
 * An unfinished listing without OPENDIR unused this long is taken as abandoned: a listing holds
 * a node per entry, and `ls | head` of a directory of millions must not pin them for good.
 */
const UNOPENED_IDLE_MS = 10_000;

/** A directory read without OPENDIR: its listing's handle and when a READDIR last used it. */
interface UnopenedDir {
  dh: number;
  used: number;
}

const KIND_BITS: Record<VfsNode['kind'], number> = {
  directory: 0o040000,
  file: 0o100000,
  symlink: 0o120000,
  chardev: 0o020000,
  blockdev: 0o060000,
  fifo: 0o010000,
  socket: 0o140000,
};
const UNKNOWN_ATTR: VfsStat = { ino: 0x7fffffff, mode: 0, nlink: 1, uid: 0, gid: 0, size: 0, blocks: 0, mtimeSec: 0, mtimeNsec: 0, rdev: 0 };

export class VfsCore {
  private readonly inodes = new Map<number, InodeEntry>();
  /** Node id per (domain, key): one small map per domain, no key strings per inode. */
  private readonly byKey = new Map<number, Map<number, number>>();
  private nextNodeId = ROOT_ID + 1;
  private readonly files = new Map<number, FileState>();
  private readonly dirs = new Map<number, DirState>();
  /** Listings of directories read without OPENDIR, by node id, least recently used first (see readdirUnopened). */
  private readonly unopenedDirs = new Map<number, UnopenedDir>();
  private nextHandle = 1;
  private readonly pathCache: LRUCache<string, VfsNode>;
  private readonly readAhead: ListingReadAhead;
  private readonly readErrors: OnceLog;
  private readonly singleDomain: boolean;
  /**
   * Archive nodes that can be rebuilt from their inode number (InodeSource) get node ids that
   * encode it, live only in the bounded `nodeCache`, and are never reference-counted: when the
   * whole mount is one such archive, node id = st_ino; otherwise each archive gets a slot and
   * node id = slot * 2^44 + st_ino (made-up nodes keep table ids below 2^44). Archives past
   * 16 TiB, or beyond 511 slots, fall back to the table.
   */
  private readonly slotOfDomain = new Map<number, number>();
  /** Slot 0 is the whole mount's archive in a single-archive mount; otherwise unused. */
  private readonly slots: ({ domain: number; source: InodeSource } | undefined)[] = [];
  private readonly nodeCache: TwoGenerationCache<number, InodeEntry>;
  readonly counters: VfsCounters = { lookups: 0, opens: 0, reads: 0, bytesRead: 0, readErrors: 0, prefetches: 0, openFiles: 0, inodes: 1 };
  private readonly readahead: number;
  private readonly prefetchStep: number;
  private readonly chunkSizeHint: number;
  private readonly dropBehindFileBytes: number;
  /** Open handles per node id (dropBehind stays off while a file has more than one). */
  private readonly opensOf = new Map<number, number>();

  constructor(
    readonly root: VfsNode,
    private readonly opts: VfsCoreOptions = {},
  ) {
    if (root.kind !== 'directory') throw new UsageError('the root of a mount must be a directory');
    const domain = domainRoots.get(root) ?? 0;
    this.singleDomain = domain !== 0;
    const rootSource = this.singleDomain ? sourceOfDomain(domain) : undefined;
    this.slots.push(rootSource !== undefined ? { domain, source: rootSource } : undefined);
    if (rootSource !== undefined) this.slotOfDomain.set(domain, 0);
    this.nodeCache = new TwoGenerationCache(Math.max(16, opts.nodeCacheSize ?? NODE_CACHE_DEFAULT));
    this.inodes.set(ROOT_ID, {
      nodeid: ROOT_ID,
      node: root,
      domain,
      key: 0,
      lookups: 1,
      parent: ROOT_ID,
      name: Buffer.alloc(0),
      attr: undefined,
    });
    this.readahead = Math.max(0, opts.readahead ?? 4);
    this.prefetchStep = opts.prefetchStep ?? 1024 * 1024;
    this.chunkSizeHint = opts.chunkSizeHint ?? 4 * 1024 * 1024;
    this.dropBehindFileBytes = opts.dropBehindFileBytes ?? Infinity;
    this.readErrors = new OnceLog(opts.log ?? ((line) => process.stderr.write(line + '\n')));
    this.pathCache = new LRUCache({ max: opts.pathCacheSize ?? 4096 });
    this.readAhead = new ListingReadAhead(async (id) => this.listingOf(await this.inode(id)));
  }

  // ---- attributes -------------------------------------------------------------------------

  /** True for node ids that encode a rebuildable archive node (see `slots`). */
  private isCompactId(nodeid: number): boolean {
    return this.singleDomain ? nodeid !== ROOT_ID && this.slotOfDomain.size > 0 : nodeid >= COMPACT_SPAN;
  }

  private async inode(nodeid: number): Promise<InodeEntry> {
    const e = this.inodes.get(nodeid) ?? this.nodeCache.get(nodeid);
    if (e !== undefined) return e;
    const slot = this.isCompactId(nodeid) ? this.slots[Math.floor(nodeid / COMPACT_SPAN)] : undefined;
    if (slot === undefined) throw new VfsError('ENOENT', `unknown node id ${nodeid}`);
    // A node the kernel still knows but our cache does not hold (dropped, or listed and never
    // cached): rebuild it from its inode number. Its name and directory are found only if a
    // message needs them (see placeRebuilt).
    const node = await slot.source.nodeByIno(nodeid % COMPACT_SPAN);
    return this.remember(nodeid, slot.domain, node, Buffer.from(`inode ${nodeid % COMPACT_SPAN}`), PARENT_UNKNOWN);
  }

  /** Names a rebuilt node and finds its directory (for messages), where its archive can tell. */
  private placeRebuilt(e: InodeEntry): void {
    const slot = this.slots[Math.floor(e.nodeid / COMPACT_SPAN)];
    const place = slot?.source.placeOfIno?.(e.nodeid % COMPACT_SPAN, e.node);
    // Parent 0 (no such node) when unknown: the path then shows as ".../name".
    e.parent = 0;
    if (slot === undefined || place === undefined) return;
    e.name = place.name;
    e.parent = (place.parentIno === 1 ? this.domainRootId(slot.domain) : this.compactId(slot.domain, place.parentIno)) ?? 0;
  }

  /** The node id of an archive's root directory (ROOT_ID when the mount is that archive). */
  private domainRootId(domain: number): number | undefined {
    return this.singleDomain ? ROOT_ID : this.byKey.get(domain)?.get(1);
  }

  /** The compact node id of an archive node, or undefined when it needs a table entry. */
  private compactId(domain: number, ino: number): number | undefined {
    if (domain === 0 || !Number.isSafeInteger(ino) || ino < 2 || ino >= COMPACT_SPAN) return undefined;
    let slot = this.slotOfDomain.get(domain);
    if (slot === undefined) {
      const source = this.singleDomain ? undefined : sourceOfDomain(domain);
      if (source === undefined || this.slots.length >= MAX_SLOTS) return undefined;
      slot = this.slots.length;
      this.slots.push({ domain, source });
      this.slotOfDomain.set(domain, slot);
    }
    return slot * COMPACT_SPAN + ino;
  }

  /** Caches a compact node under its node id. */
  private remember(nodeid: number, domain: number, node: VfsNode, name: Buffer, parent: number): InodeEntry {
    const known = this.nodeCache.get(nodeid);
    if (known !== undefined) return known;
    const e: InodeEntry = { nodeid, node, domain, key: nodeid, lookups: 1, parent, name, attr: undefined };
    this.nodeCache.set(nodeid, e);
    return e;
  }

  /** The attributes the kernel sees: overrides applied, st_ino as described above. */
  private present(st: VfsStat, nodeid: number): VfsStat {
    // The common case (one archive, no overrides) needs no copy: stat() objects are fresh.
    if (this.opts.uid === undefined && this.opts.gid === undefined && (this.singleDomain || st.ino === nodeid)) return st;
    return {
      ...st,
      ino: this.singleDomain ? st.ino : nodeid,
      uid: this.opts.uid ?? st.uid,
      gid: this.opts.gid ?? st.gid,
    };
  }

  private async attrOf(e: InodeEntry): Promise<VfsStat> {
    if (e.attr === undefined) e.attr = this.present(await e.node.stat(), e.nodeid);
    return e.attr;
  }

  /** Display path of an inode, for messages (parents the kernel already forgot show as "..."). */
  private pathOf(e: InodeEntry): string {
    const parts: string[] = [];
    let cur: InodeEntry | undefined = e;
    for (let depth = 0; cur !== undefined && cur.nodeid !== ROOT_ID; depth++) {
      if (depth > 4096) return `.../${parts.reverse().join('/')}`;
      if (cur.parent === PARENT_UNKNOWN) this.placeRebuilt(cur);
      parts.push(cur.name.toString());
      cur = this.inodes.get(cur.parent) ?? this.nodeCache.get(cur.parent);
      if (cur === undefined) return `.../${parts.reverse().join('/')}`;
    }
    return `/${parts.reverse().join('/')}`;
  }

  async getattr(nodeid: number): Promise<VfsStat> {
    return this.attrOf(await this.inode(nodeid));
  }

  /** Registers `child` (found under `parent` as `name`) and takes one lookup reference. */
  private async enter(parent: InodeEntry, name: Buffer, child: VfsNode): Promise<ResolvedEntry> {
    return this.enterWith(parent, name, child, child.statSync?.() ?? (await child.stat()));
  }

  /**
   * enter() with the child's attributes already at hand. `listed`: an entry of a READDIRPLUS
   * reply. Rebuildable archive nodes other than directories are then not cached: the kernel has
   * their attributes, a walk rarely touches them again, and a later request rebuilds the node
   * from its inode number (one entry decode). Caching every listed node was most of a walk's
   * garbage collection (each lived just long enough to be promoted).
   */
  private enterWith(parent: InodeEntry, name: Buffer, child: VfsNode, st: VfsStat, listed = false): ResolvedEntry {
    const compact = domainRoots.get(child) === undefined ? this.compactId(parent.domain, st.ino) : undefined;
    if (compact !== undefined) {
      if (listed && child.kind !== 'directory') return { nodeid: compact, attr: this.present(st, compact) };
      const e = this.remember(compact, parent.domain, child, name, parent.nodeid);
      e.attr ??= this.present(st, compact);
      return { nodeid: compact, attr: e.attr };
    }
    // A child is in its parent's domain unless it roots a domain of its own. Made-up nodes
    // (domain 0) are identified by object; archive nodes by (domain, ino).
    const domain = domainRoots.get(child) ?? parent.domain;
    const key = domain === 0 ? virtualKey(child) : st.ino;
    let keys = this.byKey.get(domain);
    if (keys === undefined) this.byKey.set(domain, (keys = new Map()));
    let nodeid = keys.get(key);
    let e = nodeid !== undefined ? this.inodes.get(nodeid) : undefined;
    if (e === undefined) {
      nodeid = this.nextNodeId++;
      e = { nodeid, node: child, domain, key, lookups: 0, parent: parent.nodeid, name, attr: undefined };
      e.attr = this.present(st, nodeid);
      this.inodes.set(nodeid, e);
      keys.set(key, nodeid);
      this.counters.inodes++;
    }
    e.lookups++;
    // A node known before under this key keeps the attributes it was presented with.
    e.attr ??= this.present(st, e.nodeid);
    return { nodeid: e.nodeid, attr: e.attr };
  }

  private async childOf(dir: VfsNode, name: Buffer): Promise<VfsNode | undefined> {
    if (dir.kind !== 'directory') throw new VfsError('ENOTDIR', 'not a directory');
    if (dir.lookup) return dir.lookup(name);
    const list = (await dir.readdir?.()) ?? [];
    return list.find((c) => c.name.equals(name))?.node;
  }

  /** LOOKUP: the child's node id and attributes (one reference taken), or undefined. */
  async lookup(parentId: number, name: Buffer): Promise<ResolvedEntry | undefined> {
    this.counters.lookups++;
    const parent = await this.inode(parentId);
    const child = await this.childOf(parent.node, name);
    if (child === undefined) return undefined;
    return this.enter(parent, name, child);
  }

  /** FORGET: the kernel dropped `n` references. */
  forget(nodeid: number, n: number): void {
    if (nodeid === ROOT_ID || this.isCompactId(nodeid)) return;
    const e = this.inodes.get(nodeid);
    if (e === undefined) return;
    e.lookups -= n;
    if (e.lookups <= 0) {
      this.inodes.delete(nodeid);
      const keys = this.byKey.get(e.domain);
      if (keys?.get(e.key) === nodeid) keys.delete(e.key);
      this.counters.inodes--;
    }
  }

  async readlink(nodeid: number): Promise<Buffer> {
    const e = await this.inode(nodeid);
    if (e.node.kind !== 'symlink' || !e.node.readlink) throw new VfsError('EINVAL', 'not a symbolic link', this.pathOf(e));
    return e.node.readlink();
  }

  // ---- xattrs -----------------------------------------------------------------------------

  async listxattr(nodeid: number): Promise<Buffer[]> {
    return (await this.inode(nodeid)).node.listxattr();
  }

  async getxattr(nodeid: number, name: Buffer): Promise<Buffer | undefined> {
    if (nodeid === ROOT_ID && name.toString() === STATS_XATTR) return Buffer.from(JSON.stringify(this.statsSnapshot()));
    return (await this.inode(nodeid)).node.getxattr(name);
  }

  /** Counters of the data layer and of the core, as shown by `user.pbsfs.stats`. */
  statsSnapshot(): Record<string, unknown> {
    const m = process.memoryUsage();
    const memory = { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
    const vfs = {
      ...this.counters,
      openFiles: this.files.size,
      openDirs: this.dirs.size,
      inodes: this.counters.inodes + this.nodeCache.size,
      listingsPrepared: this.readAhead.counters.prepared,
      listingsReadAhead: this.readAhead.counters.used,
    };
    return { ...(this.opts.stats?.() ?? {}), vfs, memory };
  }

  // ---- directories ------------------------------------------------------------------------

  async opendir(nodeid: number): Promise<number> {
    // The kernel opens directories it has cached the listing of (FOPEN_CACHE_DIR) only to read
    // that cache: a node that must be rebuilt is not needed until a READDIR actually comes.
    const known = this.inodes.get(nodeid) ?? this.nodeCache.get(nodeid);
    if (known === undefined && !this.isCompactId(nodeid)) throw new VfsError('ENOENT', `unknown node id ${nodeid}`);
    if (known !== undefined && known.node.kind !== 'directory') throw new VfsError('ENOTDIR', 'not a directory', this.pathOf(known));
    const dh = this.nextHandle++;
    this.dirs.set(dh, { nodeid, entries: undefined, dirIds: [], dirIdsUpTo: 0 });
    return dh;
  }

  releasedir(dh: number): void {
    this.dirs.delete(dh);
  }

  /**
   * READDIR of a directory the kernel opened without telling us (zero-message opendir: it sends
   * no OPENDIR and no RELEASEDIR). The listing state lives in a handle per directory node, made
   * on the first READDIR and dropped when a READDIR reaches the end of the listing; walkers read
   * to the end. Readers that stop early (`ls | head`) leave theirs behind, and nothing tells us
   * they are gone: a listing unused for UNOPENED_IDLE_MS is dropped at the next directory's
   * first READDIR, and beyond UNOPENED_DIRS_MAX the least recently used. A dropped listing costs
   * a later READDIR of that directory a fresh listing, never a wrong one (positions index the
   * same immutable listing).
   */
  async readdirUnopened(nodeid: number, offset: number, plus: boolean, fits: (name: Buffer) => boolean): Promise<DirListEntry[]> {
    const now = Date.now();
    let u = this.unopenedDirs.get(nodeid);
    if (u === undefined) {
      this.dropIdleUnopened(now);
      const dh = await this.opendir(nodeid);
      u = this.unopenedDirs.get(nodeid); // another READDIR of it may have come first
      if (u !== undefined) this.releasedir(dh);
      else {
        u = { dh, used: now };
        this.unopenedDirs.set(nodeid, u);
        if (this.unopenedDirs.size > UNOPENED_DIRS_MAX) {
          const [oldest, old] = this.unopenedDirs.entries().next().value as [number, UnopenedDir];
          this.unopenedDirs.delete(oldest);
          this.releasedir(old.dh);
        }
      }
    } else {
      // Least recently used first: move it to the end.
      this.unopenedDirs.delete(nodeid);
      this.unopenedDirs.set(nodeid, u);
    }
    u.used = now;
    const out = await this.readdir(u.dh, offset, plus, fits);
    if (out.length === 0 && this.unopenedDirs.get(nodeid) === u) {
      this.unopenedDirs.delete(nodeid);
      this.releasedir(u.dh);
    }
    return out;
  }

  /** Drops the unopened listings unused for UNOPENED_IDLE_MS (the map is in order of use). */
  private dropIdleUnopened(now: number): void {
    for (const [nodeid, u] of this.unopenedDirs) {
      if (now - u.used < UNOPENED_IDLE_MS) return;
      this.unopenedDirs.delete(nodeid);
      this.releasedir(u.dh);
    }
  }

  /** The children of a directory node (started now: the listing the read-ahead prepares too). */
  private listingOf(dir: InodeEntry): Promise<VfsDirEntry[]> {
    if (dir.node.kind !== 'directory') return Promise.reject(new VfsError('ENOTDIR', 'not a directory', this.pathOf(dir)));
    return dir.node.readdir ? dir.node.readdir() : Promise.resolve([]);
  }

  /** An open directory's listing, made once per handle (or taken from the read-ahead). */
  private async dirEntries(dh: number): Promise<{ dir: InodeEntry; list: VfsDirEntry[] }> {
    const d = this.dirs.get(dh);
    if (d === undefined) throw new VfsError('EBADF', `unknown directory handle ${dh}`);
    const dir = await this.inode(d.nodeid);
    if (dir.node.kind !== 'directory') throw new VfsError('ENOTDIR', 'not a directory', this.pathOf(dir));
    d.entries ??= this.readAhead.take(d.nodeid) ?? this.listingOf(dir);
    try {
      return { dir, list: await d.entries };
    } catch (e) {
      d.entries = undefined;
      throw e;
    }
  }

  /**
   * READDIR / READDIRPLUS: entries from position `offset` ("." is 0, ".." is 1, children follow),
   * as many as `fits(name)` accepts. With `plus`, each child gets a lookup reference (the kernel
   * counts one per returned entry).
   */
  async readdir(dh: number, offset: number, plus: boolean, fits: (name: Buffer) => boolean): Promise<DirListEntry[]> {
    const { dir, list } = await this.dirEntries(dh);
    const out: DirListEntry[] = [];
    const total = list.length + 2;
    const picked: { pos: number; name: Buffer; node: VfsNode | undefined }[] = [];
    for (let pos = offset; pos < total; pos++) {
      const name = pos === 0 ? Buffer.from('.') : pos === 1 ? Buffer.from('..') : list[pos - 2]!.name;
      if (!fits(name)) break;
      picked.push({ pos, name, node: pos < 2 ? undefined : list[pos - 2]!.node });
    }
    const selfAttr = await this.attrOf(dir);
    const parentEntry = this.inodes.get(dir.parent) ?? dir;
    const parentAttr = await this.attrOf(parentEntry);
    // Children whose attributes are at hand are entered at once; the others are stat'ed
    // concurrently (archive nodes may need I/O). One entry whose attributes cannot be read
    // (damage) must not hide the whole directory: it is listed without attributes (node id 0),
    // and looking it up reports the error.
    const resolved: ResolvedEntry[] = new Array(picked.length);
    const unknown = (node: VfsNode): ResolvedEntry => ({ nodeid: 0, attr: { ...UNKNOWN_ATTR, mode: KIND_BITS[node.kind] } });
    const pending: Promise<void>[] = [];
    picked.forEach((p, i) => {
      const node = p.node;
      if (node === undefined) return;
      let st: VfsStat | undefined;
      try {
        st = node.statSync?.();
      } catch {
        resolved[i] = unknown(node);
        return;
      }
      if (st !== undefined) {
        resolved[i] = plus ? this.enterWith(dir, p.name, node, st, true) : { nodeid: 0, attr: this.present(st, 0) };
        return;
      }
      pending.push(
        (async () => {
          try {
            if (plus) return await this.enter(dir, p.name, node);
            return { nodeid: 0, attr: this.present(await node.stat(), 0) };
          } catch {
            return unknown(node);
          }
        })().then((r) => {
          resolved[i] = r;
        }),
      );
    });
    if (pending.length > 0) await Promise.all(pending);
    if (plus) this.noteSubdirectories(dh, dir, picked, resolved, total);
    picked.forEach((p, i) => {
      if (p.pos === 0) out.push({ name: p.name, nodeid: 0, attr: selfAttr });
      else if (p.pos === 1) out.push({ name: p.name, nodeid: 0, attr: parentAttr });
      else {
        const r = resolved[i]!;
        // Plain readdir needs a nonzero d_ino even in multi-archive mounts.
        const attr = r.attr.ino === 0 ? { ...r.attr, ino: 0x7fffffff } : r.attr;
        out.push({ name: p.name, nodeid: r.nodeid, attr });
      }
    });
    return out;
  }

  /**
   * Collects the node ids of the subdirectories a READDIRPLUS hands out; once the listing has
   * been handed out to its end in order, tells the read-ahead (see listing-readahead.ts).
   */
  private noteSubdirectories(
    dh: number,
    dir: InodeEntry,
    picked: { pos: number; node: VfsNode | undefined }[],
    resolved: ResolvedEntry[],
    total: number,
  ): void {
    const d = this.dirs.get(dh);
    // Only a listing handed out in order, from its start (what walkers do), and only once.
    if (d === undefined || d.dirIdsUpTo < 0 || picked.length === 0 || picked[0]!.pos > d.dirIdsUpTo) return;
    const upTo = d.dirIdsUpTo;
    picked.forEach((p, i) => {
      const r = resolved[i];
      // Directories inside an archive only: the made-up levels above (groups, snapshots, an
      // archive's own directory) read a manifest or open an archive when entered, and that stays
      // for when the user enters them.
      const inArchive = dir.domain !== 0 && p.node !== undefined && domainRoots.get(p.node) === undefined;
      if (p.pos >= upTo && inArchive && p.node?.kind === 'directory' && r !== undefined && r.nodeid !== 0) d.dirIds.push(r.nodeid);
    });
    d.dirIdsUpTo = Math.max(upTo, picked[picked.length - 1]!.pos + 1);
    if (d.dirIdsUpTo < total) return;
    d.dirIdsUpTo = -1;
    this.readAhead.listed(dir.nodeid, d.dirIds);
  }

  // ---- files ------------------------------------------------------------------------------

  async open(nodeid: number): Promise<number> {
    const e = await this.inode(nodeid);
    if (e.node.kind === 'directory') throw new VfsError('EISDIR', 'is a directory', this.pathOf(e));
    if (!e.node.open) throw new VfsError('EINVAL', 'not a regular file', this.pathOf(e));
    const attr = await this.attrOf(e);
    const handle = await e.node.open();
    const fh = this.nextHandle++;
    this.files.set(fh, {
      handle,
      nodeid,
      path: this.pathOf(e),
      size: attr.size,
      expectedOffset: 0,
      sequentialRun: 0,
      prefetchedUntil: 0,
      forgottenUntil: 0,
    });
    this.opensOf.set(nodeid, (this.opensOf.get(nodeid) ?? 0) + 1);
    this.counters.opens++;
    this.counters.openFiles = this.files.size;
    return fh;
  }

  async read(fh: number, offset: number, length: number): Promise<Buffer> {
    return heldData(await this.serve(fh, offset, length, (h) => h.read(offset, length).then(heldForever)));
  }

  /**
   * As read(), but the bytes may be lent (see HeldBytes): the caller releases them exactly once,
   * as soon as it is done (the FUSE adapter, once the reply is written).
   */
  readHeld(fh: number, offset: number, length: number): Promise<HeldBytes> {
    return this.serve(fh, offset, length, (h) => (h.readHeld ? h.readHeld(offset, length) : h.read(offset, length).then(heldForever)));
  }

  private async serve(fh: number, offset: number, length: number, get: (h: VfsFileHandle) => Promise<HeldBytes>): Promise<HeldBytes> {
    const f = this.files.get(fh);
    if (f === undefined) throw new VfsError('EBADF', `unknown file handle ${fh}`);
    this.counters.reads++;
    // The kernel splits a read whose buffer is not page-aligned in two requests (the pages it
    // pins span one more than the limit) and may deliver them in either order: a request that
    // starts within SEQUENTIAL_SLACK of where the last one ended still counts as sequential.
    const near = Math.abs(offset - f.expectedOffset) <= SEQUENTIAL_SLACK;
    if (near) f.sequentialRun++;
    else f.sequentialRun = 0;
    f.expectedOffset = near ? Math.max(f.expectedOffset, offset + length) : offset + length;
    const p = get(f.handle);
    if (f.sequentialRun >= 2 && this.readahead > 0) this.prefetch(f, offset + length);
    if (f.sequentialRun >= 2 && f.size >= this.dropBehindFileBytes) this.dropBehind(f, offset);
    try {
      const held = await p;
      this.counters.bytesRead += held.length;
      return held;
    } catch (e) {
      this.counters.readErrors++;
      this.reportReadError(f.path, offset, length, e);
      throw e;
    }
  }

  private prefetch(f: FileState, from: number): void {
    const until = Math.min(f.size, from + this.readahead * this.chunkSizeHint);
    const start = Math.max(from, f.prefetchedUntil);
    if (start >= until) return;
    f.prefetchedUntil = until;
    this.counters.prefetches++;
    const h = f.handle;
    if (isPrefetching(h)) {
      h.prefetch(start, until - start);
      return;
    }
    // Touch one byte per step: each probe pulls its whole chunk into the cache; probes that land
    // in a chunk already cached or in flight cost nothing.
    for (let o = start; o < until; o += this.prefetchStep) h.read(o, 1).catch(() => undefined);
  }

  /**
   * Tells a sequential reader's source to forget what lies a chunk or more behind it, so a
   * stream through a large file reuses a few chunks' memory instead of filling (and flushing)
   * the whole chunk cache. Not while another handle has the same file open: it may be reading
   * the same chunks a little behind this one.
   */
  private dropBehind(f: FileState, offset: number): void {
    const upTo = offset - this.chunkSizeHint;
    // Whole chunks only are dropped: asking once per MiB of progress is often enough.
    if (upTo - f.forgottenUntil < DROP_BEHIND_STEP || f.handle.forget === undefined) return;
    if ((this.opensOf.get(f.nodeid) ?? 0) > 1) return;
    // Always from the start: a chunk is dropped only when it lies wholly inside the range.
    f.handle.forget(0, upTo);
    f.forgottenUntil = upTo;
  }

  private reportReadError(path: string, offset: number, length: number, e: unknown): void {
    const reason = e instanceof Error ? e.message : String(e);
    const what = e instanceof PbsfsError ? '' : 'internal error: ';
    // Once per file and reason, whatever the range.
    this.readErrors.log(`pbsfs: read error in ${path} [${offset}..${offset + length}): ${what}${reason}`, `${path}\0${reason}`);
  }

  async release(fh: number): Promise<void> {
    const f = this.files.get(fh);
    if (f === undefined) return;
    this.files.delete(fh);
    const opens = (this.opensOf.get(f.nodeid) ?? 1) - 1;
    if (opens > 0) this.opensOf.set(f.nodeid, opens);
    else this.opensOf.delete(f.nodeid);
    this.counters.openFiles = this.files.size;
    await f.handle.release();
  }

  get openFileCount(): number {
    return this.files.size;
  }

  // ---- path API (CLI) ---------------------------------------------------------------------

  /**
   * The node at `path` ('/'-separated, relative to the root; "." and ".." are resolved by name,
   * symlinks are not followed), or undefined when no such name exists (also when a component on
   * the way is not a directory). Data that cannot be read still throws.
   */
  async lookupPath(path: string | Buffer): Promise<VfsNode | undefined> {
    const r = await this.walkPath(path);
    return 'node' in r ? r.node : undefined;
  }

  /** As lookupPath, but a missing name is a NotFoundError naming the path (ENOTDIR through a non-directory). */
  async resolve(path: string | Buffer): Promise<VfsNode> {
    const r = await this.walkPath(path);
    if ('node' in r) return r.node;
    if (r.missing === 'ENOTDIR') throw new VfsError('ENOTDIR', 'not a directory', r.at || '/');
    throw new NotFoundError('no such file or directory', { file: Buffer.isBuffer(path) ? path.toString() : path });
  }

  private async walkPath(path: string | Buffer): Promise<{ node: VfsNode } | { missing: 'ENOENT' | 'ENOTDIR'; at: string }> {
    const raw = typeof path === 'string' ? Buffer.from(path) : path;
    const parts: Buffer[] = [];
    let start = 0;
    for (let i = 0; i <= raw.length; i++) {
      if (i === raw.length || raw[i] === 0x2f) {
        if (i > start) {
          const part = raw.subarray(start, i);
          if (!(part.length === 1 && part[0] === 0x2e)) {
            if (part.length === 2 && part[0] === 0x2e && part[1] === 0x2e) parts.pop();
            else parts.push(part);
          }
        }
        start = i + 1;
      }
    }
    let node = this.root;
    let walked = '';
    for (const part of parts) {
      const key = walked + '/' + part.toString('latin1');
      const cached = this.pathCache.get(key);
      if (cached !== undefined) {
        node = cached;
      } else {
        if (node.kind !== 'directory') return { missing: 'ENOTDIR', at: Buffer.from(walked, 'latin1').toString() };
        const child = await this.childOf(node, part);
        if (child === undefined) return { missing: 'ENOENT', at: Buffer.from(key, 'latin1').toString() };
        this.pathCache.set(key, child);
        node = child;
      }
      walked = key;
    }
    return { node };
  }

  /** Reads a whole file by path (small files; the CLI uses handles for large ones). */
  async readFile(path: string | Buffer): Promise<Buffer> {
    const node = await this.resolve(path);
    if (!node.open) throw new IoError('not a regular file', { file: String(path) });
    const st = await node.stat();
    const h = await node.open();
    try {
      return await h.read(0, st.size);
    } finally {
      await h.release();
    }
  }
}
