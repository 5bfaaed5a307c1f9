/**
 * The FAT boot sector and its BIOS parameter block: geometry, the FAT type, serial and label.
 * The type follows from the count of clusters (fewer than 4085: FAT12, fewer than 65525: FAT16)
 * unless the BPB has the FAT32 form (16-bit FAT size 0), as Linux decides it.
 */
import { FormatError } from '../../errors.js';
import { oemBytesToUtf8 } from './short-name.js';

export interface FatBootSector {
  flavour: 'fat12' | 'fat16' | 'fat32';
  bytesPerSector: number;
  clusterSize: number;
  numFats: number;
  /** Byte offset and length of the FAT in use (the first, or FAT32's active one when mirroring is off). */
  fatOffset: number;
  fatBytes: number;
  /** FAT12/16: the fixed root directory region. */
  rootDirOffset: number;
  rootDirBytes: number;
  /** FAT32: first cluster of the root directory. */
  rootCluster: number;
  /** Byte offset of cluster 2 (the first data sector). */
  dataOffset: number;
  clusterCount: number;
  volumeBytes: number;
  serial: number | undefined;
  /** The label in the extended BPB (trailing spaces cut), if any. */
  label: Buffer | undefined;
}

const SIZES = new Set([512, 1024, 2048, 4096]);

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** A cheap look at a first sector: is it a FAT boot sector? (exFAT and NTFS are not.) */
export function looksLikeFat(b: Buffer): boolean {
  if (b.length < 512) return false;
  if (b[510] !== 0x55 || b[511] !== 0xaa) return false;
  if (!(b[0] === 0xeb || b[0] === 0xe9)) return false;
  const oem = b.toString('latin1', 3, 11);
  if (oem === 'EXFAT   ' || oem === 'NTFS    ') return false;
  const bps = b.readUInt16LE(11);
  const spc = b[13]!;
  const reserved = b.readUInt16LE(14);
  const fats = b[16]!;
  const media = b[21]!;
  const fatSectors = b.readUInt16LE(22) || b.readUInt32LE(36);
  const total = b.readUInt16LE(19) || b.readUInt32LE(32);
  return SIZES.has(bps) && isPowerOfTwo(spc) && reserved >= 1 && fats >= 1 && (media >= 0xf8 || media === 0xf0) && fatSectors > 0 && total > 0;
}

export function parseFatBootSector(b: Buffer, file: string): FatBootSector {
  const bad = (problem: string, offset = 0): never => {
    throw new FormatError(`FAT boot sector: ${problem}`, { file, offset });
  };
  if (!looksLikeFat(b)) bad('no FAT boot sector (signature, jump or BIOS parameter block)');
  const bytesPerSector = b.readUInt16LE(11);
  const sectorsPerCluster = b[13]!;
  const clusterSize = bytesPerSector * sectorsPerCluster;
  if (clusterSize > 256 * 1024) bad(`clusters of ${clusterSize} bytes are larger than 256 KiB`, 13);
  const reserved = b.readUInt16LE(14);
  const numFats = b[16]!;
  const rootEntries = b.readUInt16LE(17);
  const totalSectors = b.readUInt16LE(19) || b.readUInt32LE(32);
  const fat16Sectors = b.readUInt16LE(22);
  const fat32Form = fat16Sectors === 0;
  const fatSectors = fat32Form ? b.readUInt32LE(36) : fat16Sectors;
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const firstData = reserved + numFats * fatSectors + rootDirSectors;
  if (firstData >= totalSectors) bad(`the data area starts at sector ${firstData}, past the volume's ${totalSectors} sectors`);
  const clusterCount = Math.floor((totalSectors - firstData) / sectorsPerCluster);
  const flavour = fat32Form ? 'fat32' : clusterCount < 4085 ? 'fat12' : 'fat16';
  if (fat32Form && rootEntries !== 0) bad(`a FAT32 BPB with ${rootEntries} fixed root entries`, 17);
  if (!fat32Form && rootEntries === 0) bad('a FAT12/16 BPB without root directory entries', 17);
  if (clusterCount > 0x0ffffff5) bad(`${clusterCount} clusters are more than FAT32 can number`);
  const ext = fat32Form ? 64 : 36; // drive number; the extended boot signature follows it
  const sig = b[ext + 2]!;
  const serial = sig === 0x29 || sig === 0x28 ? b.readUInt32LE(ext + 3) : undefined;
  let label: Buffer | undefined;
  if (sig === 0x29) {
    const raw = b.subarray(ext + 7, ext + 18);
    const text = raw.toString('latin1');
    if (text !== 'NO NAME    ' && text.trim() !== '') label = oemBytesToUtf8(trimSpaces(raw));
  }
  const rootCluster = fat32Form ? b.readUInt32LE(44) : 0;
  // FAT32 extended flags: bit 7 set means only the FAT numbered in bits 0-3 is kept up to date.
  const extFlags = fat32Form ? b.readUInt16LE(40) : 0;
  const activeFat = (extFlags & 0x80) !== 0 ? extFlags & 0x0f : 0;
  if (activeFat >= numFats) bad(`FAT32 names FAT ${activeFat} as active, but there are ${numFats}`, 40);
  return {
    flavour,
    bytesPerSector,
    clusterSize,
    numFats,
    fatOffset: (reserved + activeFat * fatSectors) * bytesPerSector,
    fatBytes: fatSectors * bytesPerSector,
    rootDirOffset: (reserved + numFats * fatSectors) * bytesPerSector,
    rootDirBytes: rootEntries * 32,
    rootCluster,
    dataOffset: firstData * bytesPerSector,
    clusterCount,
    volumeBytes: totalSectors * bytesPerSector,
    serial,
    label,
  };
}

export function trimSpaces(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0x20) end--;
  return b.subarray(0, end);
}

/** The serial as blkid prints a FAT UUID: XXXX-XXXX, upper case. */
export function serialUuid(serial: number): string {
  const hex = serial.toString(16).toUpperCase().padStart(8, '0');
  return `${hex.slice(0, 4)}-${hex.slice(4)}`;
}
