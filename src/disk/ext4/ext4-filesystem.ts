/**
 * The ext2/3/4 Filesystem: opens the superblock (optionally replaying the journal in memory
 * first), then answers stat/readdir/lookup/read/readlink/xattr calls by reading only the blocks
 * each one needs. Decoded inodes live in a small LRU; metadata blocks in the volume's cache.
 */
import { LRUCache } from 'lru-cache';
import { FormatError, LimitError, UnsupportedError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';
import type { Filesystem, FilesystemOpenOptions, FsDirEntry, FsStat } from '../filesystem.js';
import { IndirectMapper } from './block-map.js';
import { BadHtree, FT_DIR, htreeLookup, isDxNode, leafEntries, parseEntries, type DirBlock, type DirContext, type RawDirEntry } from './directory.js';
import { ExtentMapper } from './extents.js';
import { GroupDescriptors } from './group-descriptors.js';
import { inlineContent, inlineTail } from './inline-data.js';
import { deviceNumber, INODE_FLAGS, InodeTable, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Inode } from './inode.js';
import { replayJournal, type JournalReplay } from './journal.js';
import type { BlockMapper } from './mapping.js';
import { COMPAT, fsTypeName, hasCompat, hasIncompat, INCOMPAT, labelOf, parseSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, uuidOf, type Superblock } from './superblock.js';
import { BlockVolume } from './volume.js';
import { aclToXattr, blockXattrs, fullName, inodeXattrs, isAcl, isListed, MAX_XATTR_VALUE, type RawXattr } from './xattrs.js';

export const ROOT_INO = 2;
/** Largest single read() answered (a FUSE read is far smaller; this bounds one allocation). */
const MAX_READ_BYTES = 256 * 1024 * 1024;
/** Longest symlink target (PATH_MAX). */
const MAX_SYMLINK = 4096;
const INODE_CACHE_ENTRIES = 4096;
/** Directories whose parent is remembered for loop detection. */
const MAX_TRACKED_DIRS = 1_000_000;

export interface JournalStatus {
  /** The filesystem has a journal (an internal one, in s_journal_inum). */
  present: boolean;
  /** The superblock says the journal holds transactions not yet written home (needs_recovery). */
  needsRecovery: boolean;
  /** What 'apply' replayed (undefined when the journal was ignored). */
  replay: JournalReplay | undefined;
}

export class Ext4Filesystem implements Filesystem {
  readonly type: string;
  readonly label: string | undefined;
  readonly uuid: string | undefined;
  readonly rootIno = ROOT_INO;
  private readonly inodeCache = new LRUCache<number, Inode>({ max: INODE_CACHE_ENTRIES });
  /** Directory inode -> the directory that lists it (a second, different parent is a loop). */
  private readonly parents = new Map<number, number>([[ROOT_INO, ROOT_INO]]);
  /** How lookups were answered: through the htree index, or by a linear scan after a bad index. */
  readonly stats = { htreeLookups: 0, htreeFallbacks: 0 };

  private constructor(
    readonly sb: Superblock,
    private readonly vol: BlockVolume,
    private readonly inodes: InodeTable,
    readonly journal: JournalStatus,
  ) {
    this.type = fsTypeName(sb);
    this.label = labelOf(sb);
    this.uuid = uuidOf(sb);
  }

  get name(): string {
    return this.vol.name;
  }

  static async open(src: ReadAt, opts: FilesystemOpenOptions = {}): Promise<Ext4Filesystem> {
    let sb = parseSuperblock(await readExact(src, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, 'ext4 superblock'), src.name, src.size);
    const vol = new BlockVolume(src, sb.blockSize, sb.blocksCount);
    let inodes = new InodeTable(sb, vol, new GroupDescriptors(sb, vol));
    const present = hasCompat(sb, COMPAT.HAS_JOURNAL);
    const needsRecovery = hasIncompat(sb, INCOMPAT.RECOVER);
    let replay: JournalReplay | undefined;
    if (opts.journal === 'apply' && present) {
      if (sb.journalInum === 0) {
        throw new UnsupportedError('ext4 journal is on an external device; it cannot be replayed from this volume', { file: src.name, offset: SUPERBLOCK_OFFSET + 0xe0 });
      }
      const jinode = await inodes.read(sb.journalInum);
      const mapper = mapperFor(sb, vol, jinode);
      replay = await replayJournal(vol, mapper, Math.floor(jinode.size / sb.blockSize));
      vol.overlay = replay.overlay;
      vol.clear();
      // The superblock itself may have a newer copy in the journal.
      const sbBlock = Math.floor(SUPERBLOCK_OFFSET / sb.blockSize);
      const raw = await vol.bytes(sbBlock, SUPERBLOCK_OFFSET % sb.blockSize, SUPERBLOCK_SIZE, 'superblock');
      sb = parseSuperblock(Buffer.from(raw), src.name, src.size);
      vol.clear();
      vol.blocksCount = sb.blocksCount;
      inodes = new InodeTable(sb, vol, new GroupDescriptors(sb, vol));
    }
    return new Ext4Filesystem(sb, vol, inodes, { present, needsRecovery, replay });
  }

  private async inode(ino: number): Promise<Inode> {
    const hit = this.inodeCache.get(ino);
    if (hit !== undefined) return hit;
    const inode = await this.inodes.read(ino);
    if (inode.mode === 0 || (inode.nlink === 0 && (inode.flags & INODE_FLAGS.EA_INODE) === 0)) {
      throw this.vol.error(`inode ${ino} is not in use (a directory entry or lookup points at a free inode)`, inode.offset);
    }
    if (inode.size > Number.MAX_SAFE_INTEGER) throw this.vol.error(`inode ${ino}: size out of range`, inode.offset + 4);
    this.inodeCache.set(ino, inode);
    return inode;
  }

  async stat(ino: number): Promise<FsStat> {
    const i = await this.inode(ino);
    const fmt = i.mode & S_IFMT;
    const st: FsStat = {
      ino,
      mode: i.mode,
      nlink: i.nlink,
      uid: i.uid,
      gid: i.gid,
      size: fmt === S_IFCHR || fmt === S_IFBLK ? 0 : i.size,
      blocks: i.blocks512,
      atime: i.atime,
      mtime: i.mtime,
      ctime: i.ctime,
      rdev: fmt === S_IFCHR || fmt === S_IFBLK ? deviceNumber(i.iBlock) : 0,
    };
    if (i.crtime !== undefined) st.crtime = i.crtime;
    return st;
  }

  private async dirInode(ino: number): Promise<Inode> {
    const i = await this.inode(ino);
    if ((i.mode & S_IFMT) !== S_IFDIR) throw new FormatError(`ext4 inode ${ino} is not a directory`, { file: this.vol.name });
    if ((i.flags & INODE_FLAGS.ENCRYPT) !== 0) throw new UnsupportedError(`ext4 directory inode ${ino} is encrypted (fscrypt)`, { file: this.vol.name });
    return i;
  }

  private dirContext(i: Inode): DirContext {
    return {
      vol: this.vol,
      ino: i.ino,
      blockSize: this.sb.blockSize,
      hasFileType: hasIncompat(this.sb, INCOMPAT.FILETYPE),
      metadataCsum: this.sb.metadataCsum,
      csumSeed: i.csumSeed,
    };
  }

  private dirBlocks(i: Inode): number {
    const n = Math.ceil(i.size / this.sb.blockSize);
    if (n > this.sb.blocksCount) throw this.vol.error(`directory inode ${i.ino}: size ${i.size} exceeds the filesystem`, i.offset + 4);
    return n;
  }

  /** Logical block `lblk` of a directory (holes are damage: directories have none). */
  private async dirBlock(i: Inode, mapper: BlockMapper, lblk: number): Promise<DirBlock> {
    const run = await mapper.map(lblk);
    if (run.pblk === undefined || run.unwritten) throw this.vol.error(`directory inode ${i.ino}: block ${lblk} is a hole`, i.offset);
    const data = await this.vol.block(run.pblk, `block ${lblk} of directory inode ${i.ino}`);
    return { data, offset: run.pblk * this.sb.blockSize };
  }

  private inlineDirEntries(i: Inode): RawDirEntry[] {
    const ctx = this.dirContext(i);
    const out: RawDirEntry[] = [];
    parseEntries(ctx, i.iBlock, 4, i.iBlock.length, i.offset + 0x28, out);
    const tail = inlineTail(this.sb, this.vol, i);
    if (tail.length > 0) parseEntries(ctx, tail, 0, tail.length, i.offset, out);
    return out;
  }

  private isHtree(i: Inode): boolean {
    return (i.flags & INODE_FLAGS.INDEX) !== 0 && hasCompat(this.sb, COMPAT.DIR_INDEX);
  }

  /** Walks the entry blocks in order; `visit` returning true stops the walk. */
  private async eachDirBlock(i: Inode, visit: (entries: RawDirEntry[]) => boolean): Promise<void> {
    const ctx = this.dirContext(i);
    const mapper = mapperFor(this.sb, this.vol, i);
    const n = this.dirBlocks(i);
    const htree = this.isHtree(i);
    for (let lblk = 0; lblk < n; lblk++) {
      const blk = await this.dirBlock(i, mapper, lblk);
      if (htree && (lblk === 0 || isDxNode(blk.data, this.sb.blockSize))) continue;
      const entries: RawDirEntry[] = [];
      leafEntries(ctx, blk, entries);
      if (visit(entries)) return;
    }
  }

  async readdir(ino: number): Promise<FsDirEntry[]> {
    const i = await this.dirInode(ino);
    let all: RawDirEntry[];
    if ((i.flags & INODE_FLAGS.INLINE_DATA) !== 0) {
      all = this.inlineDirEntries(i);
    } else {
      all = [];
      await this.eachDirBlock(i, (entries) => {
        all.push(...entries);
        return false;
      });
    }
    for (const e of all) if (e.fileType === FT_DIR) this.noteParent(ino, e);
    return all.map((e) => ({ name: e.name, ino: e.ino }));
  }

  /** Directories have one parent: a second one means a loop (or a hard-linked directory). */
  private noteParent(dir: number, e: RawDirEntry): void {
    const known = this.parents.get(e.ino);
    if (known !== undefined && known !== dir) {
      throw this.vol.error(`directory inode ${dir}: entry "${e.name.toString('utf8')}" names directory inode ${e.ino}, which directory inode ${known} already holds (a directory loop)`);
    }
    if (known === undefined && this.parents.size < MAX_TRACKED_DIRS) this.parents.set(e.ino, dir);
  }

  async lookup(dirIno: number, name: Buffer): Promise<number | undefined> {
    const i = await this.dirInode(dirIno);
    if (name.length === 0 || name.length > 255) return undefined;
    let found: RawDirEntry | undefined;
    const pick = (entries: RawDirEntry[]): boolean => {
      found = entries.find((e) => e.name.equals(name));
      return found !== undefined;
    };
    if ((i.flags & INODE_FLAGS.INLINE_DATA) !== 0) {
      pick(this.inlineDirEntries(i));
    } else if (this.isHtree(i) && (i.flags & INODE_FLAGS.CASEFOLD) === 0) {
      const mapper = mapperFor(this.sb, this.vol, i);
      try {
        const ino = await htreeLookup(
          this.dirContext(i),
          { hashSeed: this.sb.hashSeed, hashUnsignedOffset: this.sb.hashUnsignedOffset, largeDir: hasIncompat(this.sb, INCOMPAT.LARGEDIR), dirBlocks: this.dirBlocks(i) },
          (lblk) => this.dirBlock(i, mapper, lblk),
          name,
        );
        this.stats.htreeLookups++;
        return ino;
      } catch (e) {
        if (!(e instanceof BadHtree)) throw e;
        this.stats.htreeFallbacks++;
        await this.eachDirBlock(i, pick);
      }
    } else {
      await this.eachDirBlock(i, pick);
    }
    return found?.ino;
  }

  async readlink(ino: number): Promise<Buffer> {
    const i = await this.inode(ino);
    if ((i.mode & S_IFMT) !== S_IFLNK) throw new FormatError(`ext4 inode ${ino} is not a symbolic link`, { file: this.vol.name });
    if (i.size === 0 || i.size > MAX_SYMLINK) throw this.vol.error(`symlink inode ${ino}: target length ${i.size} out of range`, i.offset + 4);
    if ((i.flags & INODE_FLAGS.INLINE_DATA) !== 0) return Buffer.from(inlineContent(this.sb, this.vol, i));
    const eaBlocks = i.fileAcl !== 0 ? this.sb.blockSize / 512 : 0;
    if ((i.flags & INODE_FLAGS.EXTENTS) === 0 && i.size < 60 && i.blocks512 - eaBlocks <= 0) return Buffer.from(i.iBlock.subarray(0, i.size));
    return this.readData(i, 0, i.size);
  }

  async read(ino: number, offset: number, length: number): Promise<Buffer> {
    const i = await this.inode(ino);
    if ((i.mode & S_IFMT) !== S_IFREG) throw new FormatError(`ext4 inode ${ino} is not a regular file`, { file: this.vol.name });
    return this.readData(i, offset, length);
  }

  private async readData(i: Inode, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new FormatError(`ext4 read of inode ${i.ino}: bad range (${offset}, ${length})`, { file: this.vol.name });
    }
    const end = Math.min(i.size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    if (end - offset > MAX_READ_BYTES) throw new LimitError(`ext4 read of ${end - offset} bytes exceeds the ${MAX_READ_BYTES}-byte bound`, { file: this.vol.name });
    if ((i.flags & INODE_FLAGS.ENCRYPT) !== 0) throw new UnsupportedError(`ext4 inode ${i.ino} is encrypted (fscrypt)`, { file: this.vol.name });
    if ((i.flags & INODE_FLAGS.INLINE_DATA) !== 0) return Buffer.from(inlineContent(this.sb, this.vol, i).subarray(offset, end));
    const bs = this.sb.blockSize;
    const out = Buffer.alloc(end - offset);
    const mapper = mapperFor(this.sb, this.vol, i);
    let pos = offset;
    while (pos < end) {
      const lblk = Math.floor(pos / bs);
      const run = await mapper.map(lblk);
      if (run.len < 1) throw this.vol.error(`inode ${i.ino}: empty block run at ${lblk}`, i.offset);
      const runEnd = Math.min(end, (lblk + run.len) * bs);
      if (run.pblk !== undefined && !run.unwritten) {
        const within = pos - lblk * bs;
        const nblocks = Math.ceil((runEnd - lblk * bs) / bs);
        const data = await this.vol.readBlocks(run.pblk, nblocks, `data of inode ${i.ino}`);
        data.copy(out, pos - offset, within, within + (runEnd - pos));
      }
      pos = runEnd;
    }
    return out;
  }

  private async xattrs(ino: number): Promise<{ inode: Inode; list: RawXattr[] }> {
    const i = await this.inode(ino);
    const list = [...inodeXattrs(this.sb, i, this.vol), ...(await blockXattrs(this.sb, this.vol, i))];
    return { inode: i, list };
  }

  async listxattr(ino: number): Promise<Buffer[]> {
    const { list } = await this.xattrs(ino);
    const out: Buffer[] = [];
    for (const x of list) {
      const n = isListed(x) ? fullName(x) : undefined;
      if (n !== undefined) out.push(n);
    }
    return out;
  }

  async getxattr(ino: number, name: Buffer): Promise<Buffer | undefined> {
    const { inode, list } = await this.xattrs(ino);
    for (const x of list) {
      if (!isListed(x)) continue;
      const n = fullName(x);
      if (n === undefined || !n.equals(name)) continue;
      const value = await this.xattrValue(inode, x);
      return isAcl(x) ? aclToXattr(value, this.vol, ino) : value;
    }
    return undefined;
  }

  private async xattrValue(owner: Inode, x: RawXattr): Promise<Buffer> {
    if (x.value !== undefined) return x.value;
    const ea = await this.inode(x.valueInum);
    if ((ea.flags & INODE_FLAGS.EA_INODE) === 0) throw this.vol.error(`inode ${owner.ino}: xattr value inode ${x.valueInum} is not an xattr inode`, ea.offset);
    if (ea.size !== x.valueSize || x.valueSize > MAX_XATTR_VALUE) throw this.vol.error(`inode ${owner.ino}: xattr value inode ${x.valueInum} holds ${ea.size} bytes, the entry says ${x.valueSize}`, ea.offset);
    return this.readData(ea, 0, ea.size);
  }
}

export function mapperFor(sb: Superblock, vol: BlockVolume, i: Inode): BlockMapper {
  return (i.flags & INODE_FLAGS.EXTENTS) !== 0 ? new ExtentMapper(sb, vol, i) : new IndirectMapper(vol, i);
}
