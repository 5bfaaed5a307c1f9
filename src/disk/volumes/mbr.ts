/**
 * The MS-DOS partition table: four primary slots in sector 0, and for an extended partition a
 * chain of extended boot records (EBRs), each holding one logical partition (relative to that
 * EBR) and a link to the next EBR (relative to the extended partition's start). Numbering follows
 * the Linux kernel: primaries by slot (1-4, gaps kept), logical partitions from 5 in chain order,
 * EBRs without a partition not numbered. A chain that loops back, leaves its extended partition
 * or is longer than MAX_LOGICAL is refused.
 */
import { FormatError, LimitError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';
import { clipToImage, type PartitionRecord } from './partition.js';

export const MAX_LOGICAL = 256;

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
export const GPT_PROTECTIVE_TYPE = 0xee;

const TYPE_NAMES: Record<number, string> = {
  0x01: 'FAT12',
  0x04: 'FAT16 <32M',
  0x05: 'Extended',
  0x06: 'FAT16',
  0x07: 'HPFS/NTFS/exFAT',
  0x0b: 'W95 FAT32',
  0x0c: 'W95 FAT32 (LBA)',
  0x0e: 'W95 FAT16 (LBA)',
  0x0f: "W95 Ext'd (LBA)",
  0x27: 'Hidden NTFS WinRE',
  0x82: 'Linux swap / Solaris',
  0x83: 'Linux',
  0x85: 'Linux extended',
  0x8e: 'Linux LVM',
  0xa5: 'FreeBSD',
  0xee: 'GPT',
  0xef: 'EFI (FAT-12/16/32)',
  0xfd: 'Linux raid autodetect',
};

export interface MbrEntry {
  status: number;
  type: number;
  /** In sectors. */
  lbaStart: number;
  sectors: number;
}

/** The four slots of a sector holding an MBR or EBR, or undefined without the 0x55AA mark. */
export function mbrSlots(sector: Buffer): MbrEntry[] | undefined {
  if (sector.length < 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) return undefined;
  const out: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const at = 446 + i * 16;
    out.push({ status: sector[at]!, type: sector[at + 4]!, lbaStart: sector.readUInt32LE(at + 8), sectors: sector.readUInt32LE(at + 12) });
  }
  return out;
}

/** True when sector 0 looks like an MBR: boot marks valid, at least one slot in use. */
export function looksLikeMbr(sector: Buffer): boolean {
  const slots = mbrSlots(sector);
  if (slots === undefined) return false;
  if (slots.some((s) => s.status !== 0 && s.status !== 0x80)) return false;
  return slots.some((s) => s.type !== 0 && s.sectors !== 0);
}

export function isGptProtective(sector: Buffer): boolean {
  return (mbrSlots(sector) ?? []).some((s) => s.type === GPT_PROTECTIVE_TYPE);
}

function record(number: number, startSector: number, sectors: number, type: number, role: PartitionRecord['mbrRole'], ss: number, imageSize: number): PartitionRecord {
  const start = startSector * ss;
  const clip = clipToImage(start, sectors * ss, imageSize);
  return {
    number,
    start,
    size: clip.size,
    typeId: `0x${type.toString(16).padStart(2, '0')}`,
    typeName: TYPE_NAMES[type],
    mbrRole: role,
    truncatedBy: clip.truncatedBy,
  };
}

export interface MbrTable {
  diskId: string;
  partitions: PartitionRecord[];
  warnings: string[];
}

/** Reads the MBR in sector 0 of `src` and follows the extended partition's chain. */
export async function readMbr(src: ReadAt, sectorSize = 512): Promise<MbrTable> {
  const where = `${src.name} (MBR)`;
  const mbr = await readExact(src, 0, 512, 'MBR');
  const slots = mbrSlots(mbr);
  if (slots === undefined) throw new FormatError('sector 0 has no MBR boot signature 0x55AA', { file: where, offset: 510 });
  const out: PartitionRecord[] = [];
  const warnings: string[] = [];
  let extended: MbrEntry | undefined;
  slots.forEach((s, i) => {
    if (s.type === 0 || s.sectors === 0) return;
    const isExt = EXTENDED_TYPES.has(s.type);
    out.push(record(i + 1, s.lbaStart, s.sectors, s.type, isExt ? 'extended' : 'primary', sectorSize, src.size));
    if (isExt) {
      if (extended !== undefined) warnings.push(`MBR slot ${i + 1}: a second extended partition is ignored`);
      else extended = s;
    }
  });
  if (extended !== undefined) out.push(...(await readLogical(src, extended, sectorSize, where)));
  return { diskId: `0x${mbr.readUInt32LE(440).toString(16).padStart(8, '0')}`, partitions: out, warnings };
}

async function readLogical(src: ReadAt, ext: MbrEntry, ss: number, where: string): Promise<PartitionRecord[]> {
  const out: PartitionRecord[] = [];
  const extStart = ext.lbaStart;
  const extEnd = ext.lbaStart + ext.sectors;
  const seen = new Set<number>();
  let ebr = extStart;
  let number = 5;
  for (let hops = 0; ; hops++) {
    if (hops >= MAX_LOGICAL) throw new LimitError(`extended partition chain is longer than ${MAX_LOGICAL} links`, { file: where, offset: ebr * ss });
    if (seen.has(ebr)) throw new FormatError(`extended partition chain loops back to the EBR at sector ${ebr}`, { file: where, offset: ebr * ss });
    seen.add(ebr);
    if (ebr < extStart || ebr >= extEnd || (ebr + 1) * ss > src.size) {
      throw new FormatError(`EBR at sector ${ebr} lies outside the extended partition or the image`, { file: where, offset: ebr * ss });
    }
    const sector = await readExact(src, ebr * ss, 512, 'EBR');
    const slots = mbrSlots(sector);
    if (slots === undefined) throw new FormatError(`EBR at sector ${ebr} has no boot signature 0x55AA`, { file: where, offset: ebr * ss + 510 });
    const [data, link] = slots as [MbrEntry, MbrEntry];
    if (data.type !== 0 && data.sectors !== 0 && !EXTENDED_TYPES.has(data.type)) {
      const start = ebr + data.lbaStart;
      if (start + data.sectors > extEnd) {
        throw new FormatError(`logical partition ${number} (sectors ${start}..${start + data.sectors}) leaves its extended partition`, {
          file: where,
          offset: ebr * ss + 446,
        });
      }
      out.push(record(number++, start, data.sectors, data.type, 'logical', ss, src.size));
    }
    if (link.type === 0 || link.sectors === 0 || !EXTENDED_TYPES.has(link.type)) break;
    ebr = extStart + link.lbaStart;
  }
  return out;
}
