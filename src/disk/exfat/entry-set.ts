/**
 * exFAT directory entries: 32-byte entries whose first byte is a type (bit 7: in use). A file is
 * an entry set: a File entry (0x85) with its attributes and times, a Stream Extension (0xC0) with
 * the first cluster, the lengths and the NoFatChain flag, and File Name entries (0xC1, 15 UTF-16
 * units each). The set's checksum and the name's hash (over the up-cased name) are verified. The
 * root also holds the allocation bitmap (0x81), the up-case table (0x82) and the label (0x83).
 * Entries not in use (deleted files) are skipped; type 0 ends the directory.
 */
import { FormatError, IntegrityError } from '../../errors.js';
import type { FsTime } from '../filesystem.js';
import { dosTime } from '../fat/dos-time.js';
import { u16s, utf16ToUtf8 } from '../fat/utf16.js';
import type { UpcaseTable } from './upcase-table.js';

export const TYPE_BITMAP = 0x81;
export const TYPE_UPCASE = 0x82;
export const TYPE_LABEL = 0x83;
export const TYPE_FILE = 0x85;
const TYPE_STREAM = 0xc0;
const TYPE_NAME = 0xc1;
const IN_USE = 0x80;
const FLAG_ALLOCATION_POSSIBLE = 0x01;
const FLAG_NO_FAT_CHAIN = 0x02;

export interface ExfatFile {
  name: Buffer;
  /** Volume offset of the File entry. */
  offset: number;
  attributes: number;
  firstCluster: number;
  contiguous: boolean;
  dataLength: number;
  validDataLength: number;
  crtime: FsTime;
  mtime: FsTime;
  atime: FsTime;
}

/** The 16-bit set checksum over every byte of the set but the checksum field itself. */
export function setChecksum(set: Buffer): number {
  let sum = 0;
  for (let i = 0; i < set.length; i++) {
    if (i === 2 || i === 3) continue;
    sum = (((sum & 1) !== 0 ? 0x8000 : 0) + (sum >>> 1) + set[i]!) & 0xffff;
  }
  return sum;
}

/** An exFAT timestamp with its 10 ms byte and UTC offset byte (bit 7: valid; 15-minute steps). */
export function exfatTime(ts: number, tenMs: number, utcOffset: number): FsTime {
  const minutes = (utcOffset & 0x80) !== 0 ? (((utcOffset & 0x7f) ^ 0x40) - 0x40) * 15 : 0;
  return dosTime(ts >>> 16, ts & 0xffff, tenMs, minutes);
}

/** Number of 32-byte entries of the set starting at `e` (a File entry), 0 for other types. */
export function setLength(first: Buffer): number {
  return first[0] === TYPE_FILE ? 1 + first[1]! : 0;
}

/**
 * Decodes one in-use File entry set (all its entries, contiguous in `set`); `offset` is the
 * volume offset of its first entry, for errors and the inode number.
 */
export function decodeFileSet(set: Buffer, offset: number, upcase: UpcaseTable, file: string): ExfatFile {
  const bad = (problem: string, at = 0): never => {
    throw new FormatError(`exFAT: the entry set at byte ${offset} ${problem}`, { file, offset: offset + at });
  };
  const count = set[1]!;
  if (count < 2 || count > 18) bad(`has ${count} secondary entries (2..18 are allowed)`, 1);
  const stored = set.readUInt16LE(2);
  const sum = setChecksum(set);
  if (stored !== sum) {
    throw new IntegrityError(`exFAT: the entry set at byte ${offset} fails its checksum (computed 0x${sum.toString(16)}, stored 0x${stored.toString(16)})`, {
      file,
      offset,
    });
  }
  const stream = set.subarray(32, 64);
  if (stream[0] !== TYPE_STREAM) bad(`does not continue with a stream extension entry (type 0x${stream[0]!.toString(16)})`, 32);
  const flags = stream[1]!;
  const nameLength = stream[3]!;
  const parts = Math.ceil(nameLength / 15);
  if (nameLength === 0 || 1 + parts > count) bad(`has a name of ${nameLength} units in ${count - 1} name entries`, 35);
  const units: number[] = [];
  for (let p = 0; p < parts; p++) {
    const e = set.subarray(64 + 32 * p, 96 + 32 * p);
    if (e[0] !== TYPE_NAME) bad(`has entry ${p + 2} of type 0x${e[0]!.toString(16)} where a file name entry belongs`, 64 + 32 * p);
    units.push(...u16s(e, 2, 15));
  }
  for (let i = 1 + 1 + parts; i <= count; i++) {
    const type = set[32 * i]!;
    // Critical secondary entries (0xC0..0xDF) other than the two above are not defined in exFAT 1.0.
    if ((type & IN_USE) === 0 || (type & 0x20) === 0) bad(`has an unknown critical secondary entry of type 0x${type.toString(16)}`, 32 * i);
  }
  const nameUnits = units.slice(0, nameLength);
  const hash = upcase.nameHash(nameUnits);
  if (hash !== stream.readUInt16LE(4)) {
    throw new IntegrityError(`exFAT: the entry set at byte ${offset} has a name hash 0x${stream.readUInt16LE(4).toString(16)} that does not match its name (0x${hash.toString(16)})`, {
      file,
      offset: offset + 36,
    });
  }
  const validDataLength = Number(stream.readBigUInt64LE(8));
  const dataLength = Number(stream.readBigUInt64LE(24));
  const firstCluster = stream.readUInt32LE(20);
  if (!Number.isSafeInteger(dataLength) || !Number.isSafeInteger(validDataLength)) bad('has a data length beyond 2^53 bytes', 56);
  if (validDataLength > dataLength) bad(`has a valid data length ${validDataLength} above its data length ${dataLength}`, 40);
  if ((flags & FLAG_ALLOCATION_POSSIBLE) === 0 && (dataLength !== 0 || firstCluster !== 0)) bad('holds data although allocation is not possible', 33);
  if (dataLength > 0 && firstCluster === 0) bad(`holds ${dataLength} bytes but no first cluster`, 52);
  return {
    name: utf16ToUtf8(nameUnits),
    offset,
    attributes: set.readUInt16LE(4),
    firstCluster,
    contiguous: (flags & FLAG_NO_FAT_CHAIN) !== 0,
    dataLength,
    validDataLength,
    crtime: exfatTime(set.readUInt32LE(8), set[20]!, set[22]!),
    mtime: exfatTime(set.readUInt32LE(12), set[21]!, set[23]!),
    atime: exfatTime(set.readUInt32LE(16), 0, set[24]!),
  };
}

export interface RootSpecials {
  bitmaps: { flags: number; firstCluster: number; length: number; offset: number }[];
  upcase: { checksum: number; firstCluster: number; length: number; offset: number } | undefined;
  label: Buffer | undefined;
}

/** Walks a directory's entries; `at(i)` is the volume offset of byte i. */
export function scanDirectory(
  data: Buffer,
  at: (i: number) => number,
  onSet: (set: Buffer, offset: number) => void,
  file: string,
  specials?: RootSpecials,
): void {
  for (let i = 0; i + 32 <= data.length; ) {
    const type = data[i]!;
    if (type === 0) return;
    if ((type & IN_USE) === 0) {
      i += 32;
      continue;
    }
    if (type === TYPE_FILE) {
      const len = setLength(data.subarray(i, i + 32)) * 32;
      if (i + len > data.length) {
        throw new FormatError(`exFAT: the entry set at byte ${at(i)} runs past the end of its directory`, { file, offset: at(i) });
      }
      onSet(data.subarray(i, i + len), at(i));
      i += len;
      continue;
    }
    const e = data.subarray(i, i + 32);
    if (specials !== undefined) {
      if (type === TYPE_BITMAP) specials.bitmaps.push({ flags: e[1]!, firstCluster: e.readUInt32LE(20), length: Number(e.readBigUInt64LE(24)), offset: at(i) });
      else if (type === TYPE_UPCASE && specials.upcase === undefined)
        specials.upcase = { checksum: e.readUInt32LE(4), firstCluster: e.readUInt32LE(20), length: Number(e.readBigUInt64LE(24)), offset: at(i) };
      else if (type === TYPE_LABEL && specials.label === undefined) specials.label = utf16ToUtf8(u16s(e, 2, Math.min(11, e[1]!)));
    }
    i += 32;
  }
}
