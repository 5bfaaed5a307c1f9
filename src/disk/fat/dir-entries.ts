/**
 * FAT directory entries (32 bytes each): 8.3 entries with their attributes, times, first cluster
 * and size, preceded by the long-name entries of VFAT. Free entries (first byte 0xE5) are
 * skipped, a first byte 0 ends the directory, volume-label entries and "." / ".." are not files.
 */
import { FormatError } from '../../errors.js';
import type { FsTime } from '../filesystem.js';
import { dosTime } from './dos-time.js';
import { ATTR_LONG_NAME, LongNameCollector } from './long-name.js';
import { shortName } from './short-name.js';
import { utf16ToUtf8 } from './utf16.js';

export const ATTR_READ_ONLY = 0x01;
export const ATTR_VOLUME_ID = 0x08;
export const ATTR_DIRECTORY = 0x10;
export const ENTRY_FREE = 0xe5;

export interface FatEntry {
  /** The name as UTF-8: the long name where a whole, matching one precedes the entry. */
  name: Buffer;
  /** Byte offset of the 8.3 entry in the volume. */
  offset: number;
  attributes: number;
  firstCluster: number;
  size: number;
  crtime: FsTime | undefined;
  mtime: FsTime;
  atime: FsTime;
}

/** True for the 32 bytes of an entry that names a file or directory (not free, label, long name). */
export function isFileEntry(e: Buffer): boolean {
  const attr = e[11]!;
  return e[0] !== 0 && e[0] !== ENTRY_FREE && (attr & 0x3f) !== ATTR_LONG_NAME && (attr & ATTR_VOLUME_ID) === 0;
}

/** The fields of one 8.3 entry; FAT12/16 keep no high half of the cluster number. */
export function entryFields(e: Buffer, fat32: boolean): Omit<FatEntry, 'name' | 'offset'> {
  const crDate = e.readUInt16LE(16);
  return {
    attributes: e[11]!,
    firstCluster: (fat32 ? e.readUInt16LE(20) * 0x10000 : 0) + e.readUInt16LE(26),
    size: e.readUInt32LE(28),
    crtime: crDate === 0 ? undefined : dosTime(crDate, e.readUInt16LE(14), e[13]!),
    mtime: dosTime(e.readUInt16LE(24), e.readUInt16LE(22)),
    atime: dosTime(e.readUInt16LE(18), 0),
  };
}

function isDotEntry(e: Buffer): boolean {
  return e.toString('latin1', 0, 11) === '.          ' || e.toString('latin1', 0, 11) === '..         ';
}

/** A name a path can hold: not empty, no "/" or NUL, not "." or "..". */
export function checkName(name: Buffer, file: string, offset: number, format: string): void {
  const s = name.toString('latin1');
  if (name.length === 0 || name.includes(0x2f) || name.includes(0) || s === '.' || s === '..') {
    throw new FormatError(`${format}: the directory entry at byte ${offset} has the name ${JSON.stringify(name.toString('utf8'))}, which no path can hold`, {
      file,
      offset,
    });
  }
}

export interface FatDirectoryScan {
  entries: FatEntry[];
  /** The 11 bytes of a volume-label entry, if the directory has one (the root does). */
  label: Buffer | undefined;
}

/** Parses a directory's bytes; `at(i)` is the volume offset of byte i. */
export function parseFatDirectory(data: Buffer, at: (i: number) => number, fat32: boolean, file: string, format: string): FatDirectoryScan {
  const entries: FatEntry[] = [];
  let label: Buffer | undefined;
  const lfn = new LongNameCollector();
  for (let i = 0; i + 32 <= data.length; i += 32) {
    const e = data.subarray(i, i + 32);
    if (e[0] === 0) break;
    if (e[0] === ENTRY_FREE) {
      lfn.reset();
      continue;
    }
    const attr = e[11]!;
    if ((attr & 0x3f) === ATTR_LONG_NAME) {
      lfn.add(e);
      continue;
    }
    if ((attr & ATTR_VOLUME_ID) !== 0) {
      lfn.reset();
      if (label === undefined) label = Buffer.from(e.subarray(0, 11));
      continue;
    }
    const long = lfn.take(e);
    if (isDotEntry(e)) continue;
    const name = long !== undefined ? utf16ToUtf8(long) : shortName(e);
    const offset = at(i);
    checkName(name, file, offset, format);
    entries.push({ name, offset, ...entryFields(e, fat32) });
  }
  return { entries, label };
}
