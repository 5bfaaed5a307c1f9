/**
 * The exFAT boot region: the main boot sector, eight extended boot sectors, OEM parameters, a
 * reserved sector and a sector filled with the region's checksum (12 sectors). A backup copy
 * follows at sector 12; pbsfs uses it when the main region's checksum fails.
 */
import { FormatError, IntegrityError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';

export interface ExfatBoot {
  bytesPerSector: number;
  clusterSize: number;
  volumeBytes: number;
  fatOffset: number;
  fatBytes: number;
  heapOffset: number;
  clusterCount: number;
  rootCluster: number;
  serial: number;
  /** 0 or 1: which FAT and allocation bitmap are in use (TexFAT keeps two). */
  activeFat: number;
  /** Sector of the region used: 0, or 12 for the backup. */
  regionSector: number;
}

const SIGNATURE = 'EXFAT   ';

/** The boot checksum: every byte of the first 11 sectors but VolumeFlags and PercentInUse. */
export function bootChecksum(region: Buffer, sectorSize: number): number {
  let sum = 0;
  for (let i = 0; i < sectorSize * 11; i++) {
    if (i === 106 || i === 107 || i === 112) continue;
    sum = (((sum & 1) !== 0 ? 0x80000000 : 0) + (sum >>> 1) + region[i]!) >>> 0;
  }
  return sum;
}

export function looksLikeExfat(first: Buffer): boolean {
  return first.length >= 512 && first.toString('latin1', 3, 11) === SIGNATURE;
}

function parseMain(b: Buffer, file: string, base: number): Omit<ExfatBoot, 'regionSector'> {
  const bad = (problem: string, at: number): never => {
    throw new FormatError(`exFAT boot sector: ${problem}`, { file, offset: base + at });
  };
  if (!looksLikeExfat(b)) bad('no "EXFAT" signature', 3);
  if (b[510] !== 0x55 || b[511] !== 0xaa) bad('no boot signature 0x55AA', 510);
  for (let i = 11; i < 64; i++) if (b[i] !== 0) bad('the MustBeZero field is not zero (a FAT BPB?)', i);
  const bpsShift = b[108]!;
  const spcShift = b[109]!;
  if (bpsShift < 9 || bpsShift > 12) bad(`sector size 2^${bpsShift} is not 512..4096 bytes`, 108);
  if (bpsShift + spcShift > 25) bad(`clusters of 2^${bpsShift + spcShift} bytes are larger than 32 MiB`, 109);
  const ss = 2 ** bpsShift;
  const major = b[105]!;
  if (major !== 1) bad(`file system revision ${major}.${b[104]} is not 1.x`, 104);
  const numFats = b[110]!;
  if (numFats !== 1 && numFats !== 2) bad(`${numFats} FATs (1 or 2 are allowed)`, 110);
  const volumeSectors = Number(b.readBigUInt64LE(72));
  const fatOffset = b.readUInt32LE(80);
  const fatLength = b.readUInt32LE(84);
  const heap = b.readUInt32LE(88);
  const clusterCount = b.readUInt32LE(92);
  const rootCluster = b.readUInt32LE(96);
  const activeFat = b.readUInt16LE(106) & 1;
  if (activeFat >= numFats) bad('VolumeFlags name the second FAT, but there is one', 106);
  if (fatOffset < 24 || fatLength === 0) bad(`the FAT at sector ${fatOffset} (${fatLength} sectors) overlaps the boot regions`, 80);
  if (heap < fatOffset + fatLength * numFats) bad(`the cluster heap at sector ${heap} overlaps the FATs`, 88);
  const clusterSize = ss * 2 ** spcShift;
  const heapEnd = heap + (clusterCount * clusterSize) / ss;
  if (!Number.isSafeInteger(volumeSectors * ss) || heapEnd > volumeSectors) bad(`${clusterCount} clusters from sector ${heap} run past the volume's ${volumeSectors} sectors`, 92);
  if (rootCluster < 2 || rootCluster >= clusterCount + 2) bad(`the root directory's cluster ${rootCluster} is outside the cluster heap`, 96);
  return {
    bytesPerSector: ss,
    clusterSize,
    volumeBytes: volumeSectors * ss,
    fatOffset: (fatOffset + activeFat * fatLength) * ss,
    fatBytes: fatLength * ss,
    heapOffset: heap * ss,
    clusterCount,
    rootCluster,
    serial: b.readUInt32LE(100),
    activeFat,
  };
}

async function readRegion(src: ReadAt, sector: number, ss: number): Promise<{ boot: Omit<ExfatBoot, 'regionSector'> } | { error: Error }> {
  try {
    const region = await readExact(src, sector * ss, 12 * ss, 'exFAT boot region');
    const boot = parseMain(region, src.name, sector * ss);
    if (boot.bytesPerSector !== ss) throw new FormatError('exFAT boot sector: the backup region gives another sector size', { file: src.name, offset: sector * ss + 108 });
    const sum = bootChecksum(region, ss);
    for (let i = 0; i < ss; i += 4) {
      const stored = region.readUInt32LE(11 * ss + i);
      if (stored !== sum) {
        throw new IntegrityError(`exFAT boot region checksum mismatch: computed ${hex(sum)}, the checksum sector holds ${hex(stored)}`, {
          file: src.name,
          offset: (sector + 11) * ss + i,
        });
      }
    }
    return { boot };
  } catch (e) {
    if (e instanceof FormatError || e instanceof IntegrityError) return { error: e };
    throw e;
  }
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}

/** The main boot region, or the backup when the main one fails its checks; else the main's error. */
export async function readBootRegion(src: ReadAt): Promise<ExfatBoot> {
  const first = await readExact(src, 0, 512, 'exFAT boot sector');
  const shift = first[108]!;
  const ss = shift >= 9 && shift <= 12 ? 2 ** shift : 512;
  const main = await readRegion(src, 0, ss);
  if ('boot' in main) return { ...main.boot, regionSector: 0 };
  const backup = await readRegion(src, 12, ss);
  if ('boot' in backup) return { ...backup.boot, regionSector: 12 };
  throw main.error;
}
