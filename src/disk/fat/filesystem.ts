/**
 * A FAT12/16/32 volume as a read-only Filesystem. FAT has no owners, permissions or symlinks:
 * files are 0644 and directories 0755, less the write bits when the read-only attribute is set,
 * owned by 0:0; ctime is the modification time (FAT keeps no change time); the access time is a
 * date (midnight UTC). The FAT12/16 root is the fixed region after the FATs; the FAT32 root is a
 * cluster chain like any directory.
 */
import { NotFoundError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';
import { parseFatBootSector, serialUuid, trimSpaces, type FatBootSector } from './boot-sector.js';
import { ClusterFilesystem, ROOT_INO, type ClusterDirEntry, type ClusterNode } from './cluster-fs.js';
import { ATTR_DIRECTORY, ATTR_READ_ONLY, entryFields, isFileEntry, parseFatDirectory, type FatEntry } from './dir-entries.js';
import { NO_TIME } from './dos-time.js';
import { FatTable } from './fat-table.js';
import { oemBytesToUtf8 } from './short-name.js';

/** FAT limits a directory to 65,536 entries. */
const MAX_DIR_BYTES = 65536 * 32;

export class FatFilesystem extends ClusterFilesystem {
  readonly type = 'vfat';
  protected readonly formatName: string;
  label: string | undefined;
  readonly uuid: string | undefined;
  /** FAT12, FAT16 or FAT32. */
  readonly variant: FatBootSector['flavour'];
  private readonly rootNode: ClusterNode;

  private constructor(
    src: ReadAt,
    private readonly boot: FatBootSector,
  ) {
    super(src, new FatTable(src, boot.flavour, boot.fatOffset, boot.fatBytes, boot.clusterCount), {
      clusterSize: boot.clusterSize,
      heapOffset: boot.dataOffset,
      inodeBase: boot.flavour === 'fat32' ? boot.dataOffset : boot.rootDirOffset,
      maxDirBytes: MAX_DIR_BYTES,
    });
    this.variant = boot.flavour;
    this.formatName = boot.flavour.toUpperCase();
    this.uuid = boot.serial !== undefined ? serialUuid(boot.serial) : undefined;
    this.label = boot.label?.toString('utf8');
    const fixedRoot = boot.flavour !== 'fat32';
    this.rootNode = {
      ino: ROOT_INO,
      dir: true,
      readOnly: false,
      size: fixedRoot ? boot.rootDirBytes : undefined,
      validSize: fixedRoot ? boot.rootDirBytes : 0,
      firstCluster: fixedRoot ? 0 : boot.rootCluster,
      contiguous: false,
      atime: NO_TIME,
      mtime: NO_TIME,
      ctime: NO_TIME,
      entryOffset: 0,
    };
  }

  static async open(src: ReadAt): Promise<FatFilesystem> {
    const boot = parseFatBootSector(await readExact(src, 0, 512, 'FAT boot sector'), src.name);
    const fs = new FatFilesystem(src, boot);
    // blkid takes the label from the root directory's label entry before the boot sector's.
    const { data } = await fs.directoryBytes(fs.rootNode);
    const scan = parseFatDirectory(data, (i) => i, boot.flavour === 'fat32', src.name, fs.formatName);
    if (scan.label !== undefined) {
      const l = trimSpaces(scan.label);
      fs.label = l.length > 0 ? oemBytesToUtf8(l).toString('utf8') : fs.label;
    }
    return fs;
  }

  protected root(): ClusterNode {
    return this.rootNode;
  }

  protected override async directoryBytes(dir: ClusterNode): Promise<{ data: Buffer; at: (i: number) => number }> {
    if (dir.ino !== ROOT_INO || this.boot.flavour === 'fat32') return super.directoryBytes(dir);
    const base = this.boot.rootDirOffset;
    return { data: await readExact(this.src, base, this.boot.rootDirBytes, 'FAT root directory'), at: (i) => base + i };
  }

  private toNode(e: Omit<FatEntry, 'name'>): ClusterNode {
    const dir = (e.attributes & ATTR_DIRECTORY) !== 0;
    return {
      ino: this.inoAt(e.offset),
      dir,
      readOnly: (e.attributes & ATTR_READ_ONLY) !== 0,
      size: dir ? undefined : e.size,
      validSize: dir ? 0 : e.size,
      firstCluster: e.firstCluster,
      contiguous: false,
      atime: e.atime,
      mtime: e.mtime,
      ctime: e.mtime,
      ...(e.crtime !== undefined ? { crtime: e.crtime } : {}),
      entryOffset: e.offset,
    };
  }

  protected async parseDirectory(_dir: ClusterNode, data: Buffer, at: (i: number) => number): Promise<ClusterDirEntry[]> {
    const scan = parseFatDirectory(data, at, this.boot.flavour === 'fat32', this.name, this.formatName);
    return scan.entries.map((e) => ({ name: e.name, node: this.toNode(e) }));
  }

  protected async reloadNode(ino: number, entryOffset: number): Promise<ClusterNode> {
    const e = await readExact(this.src, entryOffset, 32, 'FAT directory entry');
    if (!isFileEntry(e)) throw new NotFoundError(`${this.formatName}: no file has inode ${ino}`, { file: this.name, offset: entryOffset });
    return this.toNode({ offset: entryOffset, ...entryFields(e, this.boot.flavour === 'fat32') });
  }
}
