/**
 * Content detection by magic numbers, the way blkid does it: every test looks at fixed offsets of
 * the volume's first 68 KiB (one read), and only when none matches, at the md RAID superblocks
 * near the end. Nothing is parsed beyond the label and UUID fields. The type names are blkid's.
 */
import type { ReadAt } from '../../io/read-at.js';
import type { ContentSignature } from './types.js';

/** Bytes read from the start of a volume: enough for Btrfs's superblock at 64 KiB. */
export const HEAD_BYTES = 0x10000 + 0x1000;

const ascii = (b: Buffer, at: number, n: number): string => b.subarray(at, at + n).toString('latin1');

/** A NUL- or space-padded label, undefined when empty. */
function label(b: Buffer, at: number, n: number, enc: BufferEncoding = 'utf8'): string | undefined {
  let raw = b.subarray(at, Math.min(b.length, at + n));
  const nul = raw.indexOf(0);
  if (nul >= 0) raw = raw.subarray(0, nul);
  const s = raw.toString(enc).replace(/ +$/, '');
  return s === '' ? undefined : s;
}

/** A 16-byte UUID in the usual 8-4-4-4-12 form (as stored, byte by byte). */
export function uuidString(b: Buffer, at: number): string | undefined {
  const h = b.subarray(at, at + 16).toString('hex');
  if (h.length !== 32 || /^0+$/.test(h)) return undefined;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** FAT and exFAT serial numbers as blkid prints them: "ABCD-1234". */
function serial32(b: Buffer, at: number): string {
  const v = b.readUInt32LE(at).toString(16).toUpperCase().padStart(8, '0');
  return `${v.slice(0, 4)}-${v.slice(4)}`;
}

const EXT_INCOMPAT_EXT3 = 0x0002 | 0x0004 | 0x0010; // filetype, recover, meta_bg
const EXT_RO_COMPAT_EXT3 = 0x0001 | 0x0002 | 0x0004; // sparse_super, large_file, btree_dir

function ext(b: Buffer): ContentSignature | undefined {
  const sb = 1024;
  if (b.length < sb + 1024 || b.readUInt16LE(sb + 0x38) !== 0xef53) return undefined;
  const compat = b.readUInt32LE(sb + 0x5c);
  const incompat = b.readUInt32LE(sb + 0x60);
  const roCompat = b.readUInt32LE(sb + 0x64);
  let type = 'ext2';
  if ((incompat & ~EXT_INCOMPAT_EXT3) !== 0 || (roCompat & ~EXT_RO_COMPAT_EXT3) !== 0) type = 'ext4';
  else if (compat & 0x0004) type = 'ext3';
  if (incompat & 0x0008) type = 'jbd'; // an external journal device, not a filesystem
  return withIds({ type, filesystem: type !== 'jbd' }, label(b, sb + 0x78, 16), uuidString(b, sb + 0x68));
}

function withIds(sig: ContentSignature, lbl: string | undefined, uuid: string | undefined): ContentSignature {
  if (lbl !== undefined) sig.label = lbl;
  if (uuid !== undefined) sig.uuid = uuid;
  return sig;
}

const pow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** A FAT boot sector (BPB checks as in blkid's vfat probe, without the MBR look-alikes). */
export function isFatBootSector(b: Buffer): boolean {
  if (b.length < 512 || b[510] !== 0x55 || b[511] !== 0xaa) return false;
  if (!(b[0] === 0xeb || b[0] === 0xe9)) return false;
  const bps = b.readUInt16LE(11);
  const spc = b[13]!;
  const reserved = b.readUInt16LE(14);
  const fats = b[16]!;
  if (!pow2(bps) || bps < 512 || bps > 4096 || !pow2(spc) || reserved === 0 || fats < 1 || fats > 4) return false;
  const media = b[21]!;
  return media === 0xf0 || media >= 0xf8;
}

function fat(b: Buffer): ContentSignature | undefined {
  if (!isFatBootSector(b) || ascii(b, 3, 8) === 'NTFS    ' || ascii(b, 3, 8) === 'EXFAT   ') return undefined;
  const fat32 = b.readUInt16LE(22) === 0;
  const ext = fat32 ? 0x40 : 0x24;
  if (b[ext + 2] !== 0x29 && b[ext + 2] !== 0x28) return { type: 'vfat', filesystem: true };
  const lbl = label(b, ext + 7, 11, 'latin1');
  return withIds({ type: 'vfat', filesystem: true }, lbl === 'NO NAME' ? undefined : lbl, serial32(b, ext + 3));
}

function exfat(b: Buffer): ContentSignature | undefined {
  if (b.length < 512 || ascii(b, 3, 8) !== 'EXFAT   ') return undefined;
  return withIds({ type: 'exfat', filesystem: true }, undefined, serial32(b, 100));
}

function ntfs(b: Buffer): ContentSignature | undefined {
  if (b.length < 512 || ascii(b, 3, 8) !== 'NTFS    ') return undefined;
  return withIds({ type: 'ntfs', filesystem: true }, undefined, b.readBigUInt64LE(0x48).toString(16).toUpperCase().padStart(16, '0'));
}

function xfs(b: Buffer): ContentSignature | undefined {
  if (b.length < 512 || ascii(b, 0, 4) !== 'XFSB') return undefined;
  return withIds({ type: 'xfs', filesystem: true }, label(b, 108, 12), uuidString(b, 32));
}

function btrfs(b: Buffer): ContentSignature | undefined {
  const sb = 0x10000;
  if (b.length < sb + 0x200 || ascii(b, sb + 0x40, 8) !== '_BHRfS_M') return undefined;
  return withIds({ type: 'btrfs', filesystem: true }, label(b, sb + 0x12b, 256), uuidString(b, sb + 0x20));
}

function luks(b: Buffer): ContentSignature | undefined {
  if (b.length < 512 || !b.subarray(0, 6).equals(Buffer.from('LUKS\xba\xbe', 'latin1'))) return undefined;
  const version = b.readUInt16BE(6);
  return withIds({ type: 'crypto_LUKS', filesystem: false }, version === 2 ? label(b, 24, 48) : undefined, label(b, 168, 40, 'latin1'));
}

function bitlocker(b: Buffer): ContentSignature | undefined {
  if (b.length < 512 || ascii(b, 3, 8) !== '-FVE-FS-') return undefined;
  return { type: 'BitLocker', filesystem: false };
}

/** LVM2 physical volume label in one of the first four sectors. */
export function lvmLabelOffset(b: Buffer): number | undefined {
  for (let s = 0; s < 4; s++) {
    const at = s * 512;
    if (b.length >= at + 512 && ascii(b, at, 8) === 'LABELONE' && ascii(b, at + 24, 8) === 'LVM2 001') return at;
  }
  return undefined;
}

/** LVM's 32-character ids as its tools print them (6-4-4-4-4-4-6). */
export function lvmUuid(id: string): string {
  if (id.length !== 32) return id;
  return [id.slice(0, 6), id.slice(6, 10), id.slice(10, 14), id.slice(14, 18), id.slice(18, 22), id.slice(22, 26), id.slice(26)].join('-');
}

function lvm(b: Buffer): ContentSignature | undefined {
  const at = lvmLabelOffset(b);
  if (at === undefined) return undefined;
  const hdr = at + b.readUInt32LE(at + 20);
  const id = hdr + 32 <= b.length ? ascii(b, hdr, 32) : undefined;
  return withIds({ type: 'LVM2_member', filesystem: false }, undefined, id !== undefined && /^[A-Za-z0-9!#+.\-_]{32}$/.test(id) ? lvmUuid(id) : undefined);
}

const MD_MAGIC = 0xa92b4efc;

function mdAt(b: Buffer, at: number): ContentSignature | undefined {
  if (b.length < at + 256 || b.readUInt32LE(at) !== MD_MAGIC) return undefined;
  const major = b.readUInt32LE(at + 4);
  const uuid = major === 1 ? uuidString(b, at + 16) : undefined;
  return withIds({ type: 'linux_raid_member', filesystem: false }, major === 1 ? label(b, at + 32, 32) : undefined, uuid);
}

function zfs(b: Buffer): ContentSignature | undefined {
  // Uberblocks start at 128 KiB of each label: beyond HEAD_BYTES, so look for the nvlist's
  // "name"/"pool_guid" keys at 16 KiB instead (the label's packed config).
  const cfg = b.subarray(0x4000, 0x4000 + 0x1000);
  if (cfg.length === 0 || cfg[0] !== 0x01 || cfg[1] !== 0x01) return undefined;
  return cfg.includes('pool_guid', 0, 'latin1') ? { type: 'zfs_member', filesystem: false } : undefined;
}

function swap(b: Buffer): ContentSignature | undefined {
  for (const page of [4096, 8192, 16384, 65536]) {
    if (b.length < page) continue;
    const magic = ascii(b, page - 10, 10);
    if (magic === 'SWAPSPACE2' || magic === 'SWAP-SPACE') {
      return withIds({ type: 'swap', filesystem: false }, label(b, 1024 + 28, 16), uuidString(b, 1024 + 12));
    }
  }
  return undefined;
}

function iso9660(b: Buffer): ContentSignature | undefined {
  if (b.length < 0x8006 || ascii(b, 0x8001, 5) !== 'CD001') return undefined;
  return withIds({ type: 'iso9660', filesystem: true }, label(b, 0x8028, 32, 'latin1'), undefined);
}

/** In blkid's order of confidence: containers and superblocks with long magics first. */
const PROBES = [luks, bitlocker, lvm, ext, xfs, btrfs, ntfs, exfat, fat, iso9660, (b: Buffer) => mdAt(b, 4096), (b: Buffer) => mdAt(b, 0), zfs, swap];

/** What the head of a volume (its first HEAD_BYTES, or all of it if shorter) holds. */
export function probeHead(head: Buffer): ContentSignature | undefined {
  for (const p of PROBES) {
    const sig = p(head);
    if (sig !== undefined) return sig;
  }
  return undefined;
}

/** probeHead, then the md RAID 0.90 and 1.0 superblocks near the end of the volume. */
export async function probeContent(src: ReadAt, head?: Buffer): Promise<ContentSignature | undefined> {
  const h = head ?? (await src.readAt(0, HEAD_BYTES));
  const sig = probeHead(h);
  if (sig !== undefined || src.size < 128 * 1024) return sig;
  const v090 = Math.floor(src.size / 65536) * 65536 - 65536;
  const v10 = Math.floor((src.size - 8192) / 4096) * 4096;
  for (const at of [v10, v090]) {
    const b = await src.readAt(at, 4096);
    const md = mdAt(b, 0);
    if (md !== undefined) return md;
  }
  return undefined;
}
