/**
 * An exFAT volume as a read-only Filesystem. Modes, owners and ctime follow the FAT reader
 * (0644/0755 less write bits when read-only, 0:0, ctime = mtime). Times carry 10 ms and are
 * converted to UTC with the stored UTC offset where it is marked valid, else read as UTC.
 * Bytes between ValidDataLength and DataLength read as zeros.
 */
import { FormatError, NotFoundError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';
import { serialUuid } from '../fat/boot-sector.js';
import type { ClusterRun } from '../fat/cluster-chain.js';
import { ClusterFilesystem, ROOT_INO, type ClusterDirEntry, type ClusterNode } from '../fat/cluster-fs.js';
import { ATTR_DIRECTORY, ATTR_READ_ONLY, checkName } from '../fat/dir-entries.js';
import { NO_TIME } from '../fat/dos-time.js';
import { FatTable } from '../fat/fat-table.js';
import { AllocationBitmap } from './allocation-bitmap.js';
import { readBootRegion, type ExfatBoot } from './boot-region.js';
import { decodeFileSet, scanDirectory, setLength, TYPE_FILE, type ExfatFile, type RootSpecials } from './entry-set.js';
import { UpcaseTable } from './upcase-table.js';

/** Largest directory read (the format allows 256 MiB; pbsfs holds a listing in memory). */
const MAX_DIR_BYTES = 32 * 1024 * 1024;

export class ExfatFilesystem extends ClusterFilesystem {
  readonly type = 'exfat';
  protected readonly formatName = 'exFAT';
  label: string | undefined;
  readonly uuid: string;
  private readonly rootNode: ClusterNode;
  private upcase!: UpcaseTable;
  private bitmap!: AllocationBitmap;

  private constructor(
    src: ReadAt,
    readonly boot: ExfatBoot,
  ) {
    super(src, new FatTable(src, 'exfat', boot.fatOffset, boot.fatBytes, boot.clusterCount), {
      clusterSize: boot.clusterSize,
      heapOffset: boot.heapOffset,
      inodeBase: boot.heapOffset,
      maxDirBytes: MAX_DIR_BYTES,
    });
    this.uuid = serialUuid(boot.serial);
    this.rootNode = {
      ino: ROOT_INO,
      dir: true,
      readOnly: false,
      size: undefined,
      validSize: 0,
      firstCluster: boot.rootCluster,
      contiguous: false,
      atime: NO_TIME,
      mtime: NO_TIME,
      ctime: NO_TIME,
      entryOffset: boot.heapOffset + (boot.rootCluster - 2) * boot.clusterSize,
    };
  }

  static async open(src: ReadAt): Promise<ExfatFilesystem> {
    const fs = new ExfatFilesystem(src, await readBootRegion(src));
    await fs.loadRoot();
    return fs;
  }

  private async loadRoot(): Promise<void> {
    const { data, at } = await this.directoryBytes(this.rootNode);
    const specials: RootSpecials = { bitmaps: [], upcase: undefined, label: undefined };
    scanDirectory(data, at, () => {}, this.name, specials);
    const where = this.rootNode.entryOffset;
    const up = specials.upcase;
    if (up === undefined) throw new FormatError('exFAT: the root directory has no up-case table entry', { file: this.name, offset: where });
    if (up.length === 0 || up.length > 256 * 1024) this.fail(`the up-case table of ${up.length} bytes is not 1..262144 bytes`, up.offset);
    const upNode = this.special(up.firstCluster, up.length, up.offset);
    this.upcase = UpcaseTable.decode(await this.readStored(upNode, 0, up.length), up.checksum, this.name, up.offset);
    const bm = specials.bitmaps.find((b) => (b.flags & 1) === this.boot.activeFat);
    if (bm === undefined) throw new FormatError('exFAT: the root directory has no allocation bitmap entry', { file: this.name, offset: where });
    const need = Math.ceil(this.boot.clusterCount / 8);
    if (bm.length < need) this.fail(`the allocation bitmap of ${bm.length} bytes cannot hold ${this.boot.clusterCount} clusters`, bm.offset);
    const bmNode = this.special(bm.firstCluster, need, bm.offset);
    await this.runsOf(bmNode);
    this.bitmap = new AllocationBitmap((o, l) => this.readStored(bmNode, o, l), need);
    this.label = specials.label !== undefined && specials.label.length > 0 ? specials.label.toString('utf8') : undefined;
  }

  /** A node for a root-directory system file (bitmap, up-case table): a FAT chain. */
  private special(firstCluster: number, length: number, offset: number): ClusterNode {
    return { ...this.rootNode, ino: this.inoAt(offset), dir: false, size: length, validSize: length, firstCluster, entryOffset: offset };
  }

  protected root(): ClusterNode {
    return this.rootNode;
  }

  protected override async checkRuns(node: ClusterNode, runs: ClusterRun[]): Promise<void> {
    if (this.bitmap === undefined) return;
    for (const r of runs) {
      const free = await this.bitmap.firstFree(r.cluster, r.count);
      if (free !== undefined) this.fail(`cluster ${free} of ${this.describe(node)} is free in the allocation bitmap`, node.entryOffset);
    }
  }

  private toNode(f: ExfatFile): ClusterNode {
    checkName(f.name, this.name, f.offset, this.formatName);
    const dir = (f.attributes & ATTR_DIRECTORY) !== 0;
    return {
      ino: this.inoAt(f.offset),
      dir,
      readOnly: (f.attributes & ATTR_READ_ONLY) !== 0,
      size: f.dataLength,
      validSize: dir ? f.dataLength : f.validDataLength,
      firstCluster: f.firstCluster,
      contiguous: f.contiguous,
      atime: f.atime,
      mtime: f.mtime,
      ctime: f.mtime,
      crtime: f.crtime,
      entryOffset: f.offset,
    };
  }

  protected async parseDirectory(_dir: ClusterNode, data: Buffer, at: (i: number) => number): Promise<ClusterDirEntry[]> {
    const out: ClusterDirEntry[] = [];
    scanDirectory(
      data,
      at,
      (set, offset) => {
        const f = decodeFileSet(set, offset, this.upcase, this.name);
        out.push({ name: f.name, node: this.toNode(f) });
      },
      this.name,
    );
    return out;
  }

  /**
   * Rebuilds a node from the position of its File entry. A set that crosses into the next
   * cluster continues either at the FAT's next cluster or at the adjacent one (NoFatChain
   * directories); the set checksum tells which.
   */
  protected async reloadNode(ino: number, entryOffset: number): Promise<ClusterNode> {
    const first = await readExact(this.src, entryOffset, 32, 'exFAT directory entry');
    if (first[0] !== TYPE_FILE) throw new NotFoundError(`exFAT: no file has inode ${ino}`, { file: this.name, offset: entryOffset });
    const len = setLength(first) * 32;
    const cs = this.boot.clusterSize;
    const cluster = Math.floor((entryOffset - this.boot.heapOffset) / cs) + 2;
    const inCluster = this.boot.heapOffset + (cluster - 1) * cs - entryOffset;
    if (len <= inCluster) return this.toNode(decodeFileSet(await readExact(this.src, entryOffset, len, 'exFAT entry set'), entryOffset, this.upcase, this.name));
    const head = await readExact(this.src, entryOffset, inCluster, 'exFAT entry set');
    const link = this.fat.isCluster(cluster) ? await this.fat.link(cluster) : undefined;
    const candidates = [...(link?.kind === 'next' ? [link.cluster] : []), cluster + 1].filter((c) => this.fat.isCluster(c));
    let lastError: unknown = new NotFoundError(`exFAT: no file has inode ${ino}`, { file: this.name, offset: entryOffset });
    for (const next of candidates) {
      const tail = await readExact(this.src, this.boot.heapOffset + (next - 2) * cs, len - inCluster, 'exFAT entry set');
      try {
        return this.toNode(decodeFileSet(Buffer.concat([head, tail]), entryOffset, this.upcase, this.name));
      } catch (e) {
        lastError = e;
      }
    }
    throw lastError;
  }
}
