/**
 * What the volume layer finds on a disk image: the partition table (if any) and one entry per
 * volume, named as proxmox-file-restore names its buckets (`raw`, `part/N`, `lvm/VG/LV`).
 */
import type { ReadAt } from '../../io/read-at.js';

/** What a volume's first bytes say it holds (blkid's TYPE, LABEL and UUID). */
export interface ContentSignature {
  /** blkid's spelling: ext4, vfat, exfat, ntfs, xfs, btrfs, zfs_member, LVM2_member, crypto_LUKS, BitLocker, linux_raid_member, swap. */
  type: string;
  label?: string;
  uuid?: string;
  /** Holds files pbsfs could read (a filesystem), as against a container or a swap area. */
  filesystem: boolean;
}

export type TableType = 'gpt' | 'mbr' | 'none';

export interface VolumeEntry {
  /** `raw`, `part/N` or `lvm/VG/LV`. */
  path: string;
  kind: 'raw' | 'partition' | 'lvm';
  /** Byte offset in the image (partitions and the raw disk; for an LV, of its first piece). */
  offset: number;
  size: number;
  /** MBR type byte as "0x83", or the GPT type GUID. */
  typeId?: string;
  /** What the type id means ("Linux filesystem", "EFI System", "Linux LVM", ...). */
  typeName?: string;
  /** GPT partition name. */
  partName?: string;
  /** GPT unique partition GUID. */
  partUuid?: string;
  /** MBR: primary, extended or logical. */
  mbrRole?: 'primary' | 'extended' | 'logical';
  /** LVM: segment types and layout ("linear", "striped 2x64KiB", ...). */
  lvmLayout?: string;
  content: ContentSignature | undefined;
  /** A filesystem reader exists for the content and the volume's bytes are all reachable. */
  readable: boolean;
  /** Why not, when not readable. */
  reason?: string;
  /** The volume's bytes (absent when they cannot be assembled, e.g. an LV on a missing PV). */
  source: ReadAt | undefined;
}

export interface DiskLayout {
  /** The image's name (used in messages). */
  image: string;
  size: number;
  table: TableType;
  /** Logical sector size the table was found with (512 or 4096). */
  sectorSize: number;
  /** GPT disk GUID or MBR disk signature ("0x1234abcd"). */
  diskId?: string;
  volumes: VolumeEntry[];
  /** Problems that did not stop the scan (a damaged GPT main header replaced by its backup, ...). */
  warnings: string[];
}
