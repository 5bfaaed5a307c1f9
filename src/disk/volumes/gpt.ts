/**
 * The GUID partition table: a header at LBA 1 (CRC32 over its own bytes) pointing at an entry
 * array (CRC32 in the header), and a backup header at the last LBA with its own copy of the
 * array. The main copy is used when both of its CRCs match; otherwise the backup, with a warning
 * saying what was wrong. The sector size is found by where the header is: LBA 1 of 512 or 4096.
 */
import { FormatError, IntegrityError, LimitError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';
import { crc32 } from '../../util/crc32.js';
import { clipToImage, type PartitionRecord } from './partition.js';

const SIGNATURE = 'EFI PART';
export const SECTOR_SIZES = [512, 4096] as const;
/** Largest entry array accepted (the usual is 128 entries of 128 bytes: 16 KiB). */
export const MAX_TABLE_BYTES = 1024 * 1024;

const TYPE_NAMES: Record<string, string> = {
  'c12a7328-f81f-11d2-ba4b-00a0c93ec93b': 'EFI System',
  '21686148-6449-6e6f-744e-656564454649': 'BIOS boot',
  '0fc63daf-8483-4772-8e79-3d69d8477de4': 'Linux filesystem',
  '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': 'Linux swap',
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'Linux LVM',
  'a19d880f-05fc-4d3b-a006-743f0f84911e': 'Linux RAID',
  'ca7d7ccb-63ed-4c53-861c-1742536059cc': 'Linux LUKS',
  '933ac7e1-2eb4-4f13-b844-0e14e2aef915': 'Linux home',
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709': 'Linux root (x86-64)',
  'b921b045-1df0-41c3-af44-4c6f280d3fae': 'Linux root (ARM-64)',
  'bc13c2ff-59e6-4262-a352-b275fd6f7172': 'Linux extended boot',
  'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7': 'Microsoft basic data',
  'e3c9e316-0b5c-4db8-817d-f92df00215ae': 'Microsoft reserved',
  'de94bba4-06d1-4d40-a16a-bfd50179d6ac': 'Windows recovery environment',
  '6a898cc3-1dd2-11b2-99a6-080020736631': 'Solaris /usr & Apple ZFS',
  '516e7cba-6ecf-11d6-8ff8-00022d09712b': 'FreeBSD ZFS',
};

/** A GUID as stored in GPT (first three fields little-endian) in its usual text form. */
export function guidString(b: Buffer, at: number): string {
  const h = (i: number, n: number, le: boolean): string => {
    const s = b.subarray(at + i, at + i + n);
    return Buffer.from(le ? [...s].reverse() : s).toString('hex');
  };
  return `${h(0, 4, true)}-${h(4, 2, true)}-${h(6, 2, true)}-${h(8, 2, false)}-${h(10, 6, false)}`;
}

interface GptHeader {
  lba: number;
  alternateLba: number;
  firstUsable: number;
  lastUsable: number;
  diskGuid: string;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

export interface GptTable {
  sectorSize: number;
  diskId: string;
  partitions: PartitionRecord[];
  warnings: string[];
  /** Which copy the partitions come from. */
  used: 'main' | 'backup';
}

const u64 = (b: Buffer, at: number): number => {
  const v = b.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
};

/** The sector size whose LBA 1 holds a GPT header signature, if any (main copy only). */
export async function findGptSectorSize(src: ReadAt): Promise<number | undefined> {
  for (const ss of SECTOR_SIZES) {
    if (src.size < ss * 2) continue;
    const b = await src.readAt(ss, 8);
    if (b.toString('latin1') === SIGNATURE) return ss;
  }
  return undefined;
}

/** Parses and checks the header at `lba`; a string says what is wrong with it. */
async function readHeader(src: ReadAt, ss: number, lba: number): Promise<GptHeader | string> {
  if (lba < 1 || (lba + 1) * ss > src.size) return `header LBA ${lba} lies outside the image`;
  const b = await readExact(src, lba * ss, ss, 'GPT header');
  if (b.toString('latin1', 0, 8) !== SIGNATURE) return `no "EFI PART" signature at LBA ${lba}`;
  const size = b.readUInt32LE(12);
  if (size < 92 || size > ss) return `header size ${size} at LBA ${lba} is not in 92..${ss}`;
  const stored = b.readUInt32LE(16);
  const copy = Buffer.from(b.subarray(0, size));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) >>> 0 !== stored) return `header CRC mismatch at LBA ${lba}`;
  const h: GptHeader = {
    lba: u64(b, 24),
    alternateLba: u64(b, 32),
    firstUsable: u64(b, 40),
    lastUsable: u64(b, 48),
    diskGuid: guidString(b, 56),
    entriesLba: u64(b, 72),
    entryCount: b.readUInt32LE(80),
    entrySize: b.readUInt32LE(84),
    entriesCrc: b.readUInt32LE(88),
  };
  if (h.lba !== lba) return `header at LBA ${lba} says it is at LBA ${h.lba}`;
  if (h.entrySize < 128 || h.entrySize % 8 !== 0 || h.entrySize > 4096) return `entry size ${h.entrySize} is not a multiple of 8 in 128..4096`;
  return h;
}

async function readEntries(src: ReadAt, ss: number, h: GptHeader, where: string): Promise<Buffer | string> {
  const bytes = h.entryCount * h.entrySize;
  if (bytes > MAX_TABLE_BYTES) throw new LimitError(`GPT entry array of ${bytes} bytes (at most ${MAX_TABLE_BYTES})`, { file: where, offset: h.lba * ss + 80 });
  const at = h.entriesLba * ss;
  if (h.entriesLba < 1 || at + bytes > src.size) return `entry array at LBA ${h.entriesLba} lies outside the image`;
  const b = await readExact(src, at, bytes, 'GPT entry array');
  if (crc32(b) >>> 0 !== h.entriesCrc) return `entry array CRC mismatch (array at LBA ${h.entriesLba})`;
  return b;
}

/** Reads the GPT of `src` with logical sector size `ss`, falling back to the backup copy. */
export async function readGpt(src: ReadAt, ss: number): Promise<GptTable> {
  const where = `${src.name} (GPT)`;
  const warnings: string[] = [];
  const lastLba = Math.floor(src.size / ss) - 1;
  const main = await readHeader(src, ss, 1);
  let header: GptHeader | undefined;
  let entries: Buffer | undefined;
  let used: 'main' | 'backup' = 'main';
  let mainProblem: string | undefined;
  if (typeof main !== 'string') {
    const e = await readEntries(src, ss, main, where);
    if (typeof e === 'string') mainProblem = e;
    else [header, entries] = [main, e];
  } else {
    mainProblem = main;
  }
  if (header === undefined) {
    // The backup's place: the main header's alternate LBA if that header could be read, and the
    // last LBA of the image in any case.
    const candidates = [...new Set([typeof main !== 'string' ? main.alternateLba : -1, lastLba].filter((l) => l > 1 && l <= lastLba))];
    const problems: string[] = [];
    for (const lba of candidates) {
      const b = await readHeader(src, ss, lba);
      if (typeof b === 'string') {
        problems.push(b);
        continue;
      }
      const e = await readEntries(src, ss, b, where);
      if (typeof e === 'string') {
        problems.push(e);
        continue;
      }
      [header, entries, used] = [b, e, 'backup'];
      warnings.push(`main GPT is damaged (${mainProblem}); the backup at LBA ${lba} is used`);
      break;
    }
    if (header === undefined) {
      throw new IntegrityError(`GPT main copy is damaged (${mainProblem}) and so is the backup (${problems.join('; ') || 'none found'})`, {
        file: where,
        offset: ss,
      });
    }
  }
  const h = header;
  const buf = entries!;
  const partitions: PartitionRecord[] = [];
  for (let i = 0; i < h.entryCount; i++) {
    const at = i * h.entrySize;
    const type = guidString(buf, at);
    if (type === '00000000-0000-0000-0000-000000000000') continue;
    const first = u64(buf, at + 32);
    const last = u64(buf, at + 40);
    if (last < first) throw new FormatError(`GPT entry ${i + 1} ends (LBA ${last}) before it starts (LBA ${first})`, { file: where, offset: h.entriesLba * ss + at });
    if (first < h.firstUsable || last > h.lastUsable) warnings.push(`GPT entry ${i + 1} (LBA ${first}..${last}) lies outside the usable LBAs ${h.firstUsable}..${h.lastUsable}`);
    const start = first * ss;
    const clip = clipToImage(start, (last - first + 1) * ss, src.size);
    const name = buf.subarray(at + 56, at + Math.min(128, h.entrySize)).toString('utf16le').replace(/\0.*$/s, '');
    const rec: PartitionRecord = {
      number: i + 1,
      start,
      size: clip.size,
      typeId: type,
      typeName: TYPE_NAMES[type],
      partUuid: guidString(buf, at + 16),
      truncatedBy: clip.truncatedBy,
    };
    if (name !== '') rec.partName = name;
    partitions.push(rec);
  }
  return { sectorSize: ss, diskId: h.diskGuid, partitions, warnings, used };
}
