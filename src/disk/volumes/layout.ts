/**
 * Finds the volumes of a disk image: a GPT (found at LBA 1 of 512 or 4096-byte sectors, or
 * announced by a protective MBR), else a filesystem or container on the whole disk, else an MBR;
 * then the LVM2 logical volumes of the physical volumes among them. Each volume's content is
 * named by its signature and is readable when a filesystem driver's probe accepts it. Reads only
 * the sectors of the tables, the first 68 KiB of each volume and the LVM metadata.
 */
import { type ReadAt } from '../../io/read-at.js';
import { SliceReadAt, volumeName } from '../block-source.js';
import { FILESYSTEM_DRIVERS, findDriver } from '../drivers.js';
import type { FilesystemDriver } from '../filesystem.js';
import { findGptSectorSize, readGpt, SECTOR_SIZES } from './gpt.js';
import { assembleLogicalVolumes, readPhysicalVolume, type PhysicalVolume } from './lvm.js';
import { isGptProtective, looksLikeMbr, readMbr } from './mbr.js';
import type { PartitionRecord } from './partition.js';
import { HEAD_BYTES, probeContent, probeHead } from './signatures.js';
import type { ContentSignature, DiskLayout, VolumeEntry } from './types.js';

export interface ScanOptions {
  drivers?: readonly FilesystemDriver[];
  /** Logical sector size for an MBR (GPT finds its own). Default 512. */
  mbrSectorSize?: number;
}

/** What pbsfs cannot open, said the way a user knows these things. */
const CONTAINER_NAMES: Record<string, string> = {
  crypto_LUKS: 'LUKS encrypted volume',
  BitLocker: 'BitLocker encrypted volume',
  linux_raid_member: 'md RAID member',
  zfs_member: 'ZFS pool member',
  swap: 'swap area',
  jbd: 'external ext3/4 journal',
};

async function readable(entry: VolumeEntry, drivers: readonly FilesystemDriver[], truncatedBy = 0): Promise<void> {
  const src = entry.source;
  if (src === undefined) return;
  if (truncatedBy > 0) {
    entry.reason = `the volume extends ${truncatedBy} bytes past the end of the image`;
    return;
  }
  const c = entry.content;
  if (c !== undefined && !c.filesystem) {
    entry.reason = `${CONTAINER_NAMES[c.type] ?? c.type}: not opened`;
    return;
  }
  const driver = await findDriver(src, drivers);
  if (driver !== undefined) {
    entry.readable = true;
    return;
  }
  entry.reason = c === undefined ? 'no filesystem signature found' : `no reader for ${c.type}`;
}

function entryOf(path: string, kind: VolumeEntry['kind'], offset: number, source: ReadAt | undefined, size: number, content: ContentSignature | undefined): VolumeEntry {
  return { path, kind, offset, size, content, readable: false, source };
}

/** Reads the layout of the disk image `src`. */
export async function scanDisk(src: ReadAt, opts: ScanOptions = {}): Promise<DiskLayout> {
  const drivers = opts.drivers ?? FILESYSTEM_DRIVERS;
  const head = await src.readAt(0, HEAD_BYTES);
  const layout: DiskLayout = { image: src.name, size: src.size, table: 'none', sectorSize: opts.mbrSectorSize ?? 512, volumes: [], warnings: [] };
  let records: PartitionRecord[] | undefined;
  let gptSs = await findGptSectorSize(src);
  if (gptSs === undefined && isGptProtective(head)) {
    // A protective MBR without a main header: the main one is damaged, look for the backup.
    for (const ss of SECTOR_SIZES) {
      try {
        await readGpt(src, ss);
        gptSs = ss;
        break;
      } catch {
        // the other sector size, or no GPT at all
      }
    }
  }
  const pvs: PhysicalVolume[] = [];
  const wholeDisk = gptSs === undefined ? probeHead(head) : undefined;
  if (gptSs !== undefined) {
    const gpt = await readGpt(src, gptSs);
    Object.assign(layout, { table: 'gpt', sectorSize: gpt.sectorSize, diskId: gpt.diskId });
    layout.warnings.push(...gpt.warnings);
    records = gpt.partitions;
  } else if (wholeDisk === undefined && looksLikeMbr(head)) {
    const mbr = await readMbr(src, layout.sectorSize);
    Object.assign(layout, { table: 'mbr', diskId: mbr.diskId });
    layout.warnings.push(...mbr.warnings);
    records = mbr.partitions;
  }
  if (records === undefined) {
    const content = wholeDisk ?? (await probeContent(src, head));
    const e = entryOf('raw', 'raw', 0, src, src.size, content);
    layout.volumes.push(e);
    if (content?.type === 'LVM2_member') await addPv(src, 'raw', head, pvs, e);
    else await readable(e, drivers);
  } else {
    const entries = await Promise.all(records.map((r) => partitionEntry(src, r, drivers, pvs)));
    layout.volumes.push(...entries);
  }
  for (const lv of assembleLogicalVolumes(pvs, src.name)) {
    const content = lv.source !== undefined ? await probeContent(lv.source) : undefined;
    const e = entryOf(`lvm/${lv.vg}/${lv.name}`, 'lvm', lv.firstOffset, lv.source, lv.size, content);
    e.lvmLayout = lv.layout;
    if (lv.uuid) e.partUuid = lv.uuid;
    if (lv.reason !== undefined) e.reason = lv.reason;
    else await readable(e, drivers);
    layout.volumes.push(e);
  }
  return layout;
}

async function addPv(src: ReadAt, path: string, head: Buffer, pvs: PhysicalVolume[], e: VolumeEntry): Promise<void> {
  try {
    const pv = await readPhysicalVolume(src, path, head);
    pvs.push(pv);
    e.reason = pv.vg !== undefined ? `LVM2 physical volume of VG ${pv.vg.name} (its logical volumes are under lvm/)` : `LVM2 physical volume without readable metadata${pv.problem ? ` (${pv.problem})` : ''}`;
  } catch (err) {
    e.reason = `LVM2 physical volume: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function partitionEntry(img: ReadAt, r: PartitionRecord, drivers: readonly FilesystemDriver[], pvs: PhysicalVolume[]): Promise<VolumeEntry> {
  const path = `part/${r.number}`;
  const base = { typeId: r.typeId, ...(r.typeName !== undefined ? { typeName: r.typeName } : {}), ...(r.partName !== undefined ? { partName: r.partName } : {}), ...(r.partUuid !== undefined ? { partUuid: r.partUuid } : {}), ...(r.mbrRole !== undefined ? { mbrRole: r.mbrRole } : {}) };
  if (r.mbrRole === 'extended') {
    return { ...entryOf(path, 'partition', r.start, undefined, r.size, undefined), ...base, reason: 'extended partition: holds the logical partitions (5 and up)' };
  }
  const src = r.size > 0 ? new SliceReadAt(img, r.start, r.size, volumeName(img.name, path)) : undefined;
  const head = src !== undefined ? await src.readAt(0, HEAD_BYTES) : Buffer.alloc(0);
  const content = src !== undefined ? await probeContent(src, head) : undefined;
  const e: VolumeEntry = { ...entryOf(path, 'partition', r.start, src, r.size, content), ...base };
  if (src === undefined) e.reason = `the partition starts past the end of the image (${r.truncatedBy} bytes missing)`;
  else if (content?.type === 'LVM2_member' && r.truncatedBy === 0) await addPv(src, path, head, pvs, e);
  else await readable(e, drivers, r.truncatedBy);
  return e;
}
