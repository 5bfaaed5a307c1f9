/**
 * What FAT and exFAT share above their on-disk formats: files as cluster runs in a data area,
 * directories as arrays of entries, inode numbers derived from entry positions, and bounded
 * caches of nodes, listings and runs. A format supplies its root, how to parse a directory's
 * bytes and how to rebuild a node from its inode number; this class does the rest of Filesystem.
 *
 * Inode numbers follow The Sleuth Kit: the root is 2, and an entry's number is its byte offset
 * from the start of the data area (FAT: the first sector after the FATs; exFAT: the cluster
 * heap) divided by 32, plus 3. They are stable across runs and map back to the entry.
 */
import { LRUCache } from 'lru-cache';
import { FormatError, LimitError, NotFoundError, UsageError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';
import type { Filesystem, FsDirEntry, FsStat, FsTime } from '../filesystem.js';
import { contiguousRun, exactChain, openChain, type ChainOwner, type ClusterRun } from './cluster-chain.js';
import type { FatTable } from './fat-table.js';

export interface ClusterNode {
  ino: number;
  dir: boolean;
  readOnly: boolean;
  /** Bytes of the file; undefined for a FAT directory, whose chain gives its length. */
  size: number | undefined;
  /** Bytes stored; from here up to `size` a file reads as zeros (exFAT ValidDataLength). */
  validSize: number;
  firstCluster: number;
  /** exFAT NoFatChain: the clusters are consecutive and the FAT is not consulted. */
  contiguous: boolean;
  atime: FsTime;
  mtime: FsTime;
  ctime: FsTime;
  crtime?: FsTime;
  /** Byte offset of the node's directory entry in the volume (errors name it). */
  entryOffset: number;
}

export interface ClusterDirEntry {
  name: Buffer;
  node: ClusterNode;
}

export interface ClusterLayout {
  clusterSize: number;
  /** Byte offset of cluster 2. */
  heapOffset: number;
  /** Byte offset the inode numbers count from (see above). */
  inodeBase: number;
  /** Largest directory read, in bytes. */
  maxDirBytes: number;
}

export const ROOT_INO = 2;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const MAX_DEPTH = 1024;

export abstract class ClusterFilesystem implements Filesystem {
  abstract readonly type: string;
  /** The format as error messages name it ("FAT16", "exFAT"). */
  protected abstract readonly formatName: string;
  abstract readonly label: string | undefined;
  abstract readonly uuid: string | undefined;
  readonly rootIno = ROOT_INO;
  readonly name: string;

  private readonly nodes = new LRUCache<number, ClusterNode>({ max: 65536 });
  private readonly listings = new LRUCache<number, ClusterDirEntry[]>({
    maxSize: 262144,
    sizeCalculation: (v) => Math.max(1, v.length),
  });
  private readonly runs = new LRUCache<number, ClusterRun[]>({ maxSize: 1 << 20, sizeCalculation: (v) => Math.max(1, v.length) });
  /** Directories seen in listings: their parent and first cluster, to refuse loops. */
  private readonly parents = new Map<number, { parent: number; cluster: number }>();

  protected constructor(
    protected readonly src: ReadAt,
    protected readonly fat: FatTable,
    protected readonly layout: ClusterLayout,
  ) {
    this.name = src.name;
  }

  /** The root directory's node. */
  protected abstract root(): ClusterNode;
  /** Entries of a directory from its bytes; `at(i)` is the volume offset of byte i. */
  protected abstract parseDirectory(dir: ClusterNode, data: Buffer, at: (i: number) => number): Promise<ClusterDirEntry[]>;
  /** Rebuilds a node evicted from the cache, from its inode number (an entry position). */
  protected abstract reloadNode(ino: number, entryOffset: number): Promise<ClusterNode>;
  /** A hook for checks of a node's clusters (exFAT: the allocation bitmap). */
  protected async checkRuns(_node: ClusterNode, _runs: ClusterRun[]): Promise<void> {}

  protected fail(problem: string, offset: number): never {
    throw new FormatError(`${this.formatName}: ${problem}`, { file: this.name, offset });
  }

  /** Inode number of the entry at volume offset `offset`. */
  protected inoAt(offset: number): number {
    return (offset - this.layout.inodeBase) / 32 + 3;
  }

  protected describe(node: ClusterNode): string {
    return node.ino === ROOT_INO ? 'the root directory' : `the ${node.dir ? 'directory' : 'file'} whose entry is at byte ${node.entryOffset}`;
  }

  protected async node(ino: number): Promise<ClusterNode> {
    if (ino === ROOT_INO) return this.root();
    const hit = this.nodes.get(ino);
    if (hit !== undefined) return hit;
    const offset = (ino - 3) * 32 + this.layout.inodeBase;
    if (!Number.isSafeInteger(ino) || ino < 3 || offset + 32 > this.src.size) {
      throw new NotFoundError(`${this.formatName}: no inode ${ino}`, { file: this.name });
    }
    const n = await this.reloadNode(ino, offset);
    this.nodes.set(ino, n);
    return n;
  }

  /** The node's clusters as runs, checked, cached. */
  protected async runsOf(node: ClusterNode): Promise<ClusterRun[]> {
    const hit = this.runs.get(node.ino);
    if (hit !== undefined) return hit;
    const owner: ChainOwner = { file: this.name, what: `${this.describe(node)} (${this.formatName})`, offset: node.entryOffset };
    const cs = this.layout.clusterSize;
    let r: ClusterRun[];
    if (node.size === undefined) {
      r = await openChain(this.fat, node.firstCluster, Math.ceil(this.layout.maxDirBytes / cs), owner);
    } else {
      const count = Math.ceil(node.size / cs);
      r = node.contiguous ? contiguousRun(this.fat, node.firstCluster, count, owner) : await exactChain(this.fat, node.firstCluster, count, owner);
    }
    await this.checkRuns(node, r);
    this.runs.set(node.ino, r);
    return r;
  }

  protected async sizeOf(node: ClusterNode): Promise<number> {
    if (node.size !== undefined) return node.size;
    const r = await this.runsOf(node);
    return r.reduce((n, x) => n + x.count, 0) * this.layout.clusterSize;
  }

  /** Bytes [offset, offset + length) of the node's stored data (within its clusters). */
  protected async readStored(node: ClusterNode, offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    if (length === 0) return out;
    const runs = await this.runsOf(node);
    const cs = this.layout.clusterSize;
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const index = Math.floor(pos / cs);
      const run = findRun(runs, index);
      if (run === undefined) this.fail(`${this.describe(node)} has no cluster for byte ${pos}`, node.entryOffset);
      const runEnd = (run.index + run.count) * cs;
      const n = Math.min(length - done, runEnd - pos);
      const at = this.layout.heapOffset + (run.cluster - 2) * cs + (pos - run.index * cs);
      const data = await readExact(this.src, at, n, `data of ${this.describe(node)}`);
      data.copy(out, done);
      done += n;
    }
    return out;
  }

  /** A directory's bytes and where each lies in the volume. */
  protected async directoryBytes(dir: ClusterNode): Promise<{ data: Buffer; at: (i: number) => number }> {
    const size = await this.sizeOf(dir);
    if (size > this.layout.maxDirBytes) {
      throw new LimitError(`${this.formatName}: ${this.describe(dir)} holds ${size} bytes, more than the ${this.layout.maxDirBytes} read for a directory`, {
        file: this.name,
        offset: dir.entryOffset,
      });
    }
    const data = await this.readStored(dir, 0, size);
    const runs = await this.runsOf(dir);
    const cs = this.layout.clusterSize;
    const at = (i: number): number => {
      const index = Math.floor(i / cs);
      const run = findRun(runs, index)!;
      return this.layout.heapOffset + (run.cluster - 2) * cs + (i - run.index * cs);
    };
    return { data, at };
  }

  private async listing(dirIno: number): Promise<ClusterDirEntry[]> {
    const hit = this.listings.get(dirIno);
    if (hit !== undefined) return hit;
    const dir = await this.node(dirIno);
    if (!dir.dir) throw new UsageError(`${this.formatName}: inode ${dirIno} is not a directory`, { file: this.name });
    const { data, at } = await this.directoryBytes(dir);
    const entries = await this.parseDirectory(dir, data, at);
    for (const e of entries) {
      if (e.node.dir) this.checkSubdirectory(dir, e.node);
      this.nodes.set(e.node.ino, e.node);
    }
    this.listings.set(dirIno, entries);
    return entries;
  }

  /**
   * A subdirectory must not start at the cluster of its directory or of an ancestor (a loop),
   * nor be listed by two directories (cross-linked chains), and nesting is bounded.
   */
  private checkSubdirectory(dir: ClusterNode, child: ClusterNode): void {
    const rootCluster = this.root().firstCluster;
    let cur = dir.ino;
    let cluster = dir.ino === ROOT_INO ? rootCluster : dir.firstCluster;
    for (let depth = 0; ; depth++) {
      if (cluster === child.firstCluster || child.firstCluster === rootCluster) {
        this.fail(`${this.describe(child)} starts at cluster ${child.firstCluster}, which an enclosing directory uses: a directory loop`, child.entryOffset);
      }
      if (depth >= MAX_DEPTH) {
        throw new LimitError(`${this.formatName}: directories nest deeper than ${MAX_DEPTH} levels at ${this.describe(child)}`, {
          file: this.name,
          offset: child.entryOffset,
        });
      }
      if (cur === ROOT_INO) break;
      const up = this.parents.get(cur);
      if (up === undefined) break;
      cur = up.parent;
      cluster = cur === ROOT_INO ? rootCluster : (this.parents.get(cur)?.cluster ?? -1);
    }
    const prev = this.parents.get(child.ino);
    if (prev !== undefined && prev.parent !== dir.ino) {
      this.fail(`${this.describe(child)} is listed by two directories (cross-linked cluster chains)`, child.entryOffset);
    }
    this.parents.set(child.ino, { parent: dir.ino, cluster: child.firstCluster });
  }

  async stat(ino: number): Promise<FsStat> {
    const n = await this.node(ino);
    const size = await this.sizeOf(n);
    const perm = (n.dir ? 0o755 : 0o644) & (n.readOnly ? ~0o222 : 0o777);
    const cs = this.layout.clusterSize;
    return {
      ino,
      mode: (n.dir ? S_IFDIR : S_IFREG) | perm,
      nlink: 1,
      uid: 0,
      gid: 0,
      size,
      blocks: (Math.ceil(size / cs) * cs) / 512,
      atime: n.atime,
      mtime: n.mtime,
      ctime: n.ctime,
      ...(n.crtime !== undefined ? { crtime: n.crtime } : {}),
      rdev: 0,
    };
  }

  async readdir(ino: number): Promise<FsDirEntry[]> {
    return (await this.listing(ino)).map((e) => ({ name: e.name, ino: e.node.ino }));
  }

  async lookup(dirIno: number, name: Buffer): Promise<number | undefined> {
    return (await this.listing(dirIno)).find((e) => e.name.equals(name))?.node.ino;
  }

  async readlink(ino: number): Promise<Buffer> {
    throw new UsageError(`${this.formatName}: inode ${ino} is not a symbolic link (the format has none)`, { file: this.name });
  }

  async read(ino: number, offset: number, length: number): Promise<Buffer> {
    const n = await this.node(ino);
    if (n.dir) throw new UsageError(`${this.formatName}: inode ${ino} is a directory`, { file: this.name });
    const size = await this.sizeOf(n);
    const start = Math.max(0, offset);
    const end = Math.min(size, start + Math.max(0, length));
    if (start >= end) return Buffer.alloc(0);
    const storedEnd = Math.min(end, n.validSize);
    if (start >= storedEnd) return Buffer.alloc(end - start);
    const stored = await this.readStored(n, start, storedEnd - start);
    return storedEnd === end ? stored : Buffer.concat([stored, Buffer.alloc(end - storedEnd)]);
  }

  async listxattr(_ino: number): Promise<Buffer[]> {
    return [];
  }

  async getxattr(_ino: number, _name: Buffer): Promise<Buffer | undefined> {
    return undefined;
  }
}

function findRun(runs: readonly ClusterRun[], index: number): ClusterRun | undefined {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (index < r.index) hi = mid - 1;
    else if (index >= r.index + r.count) lo = mid + 1;
    else return r;
  }
  return undefined;
}
