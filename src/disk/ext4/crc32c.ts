/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) as ext4 and jbd2 use it: the raw register
 * update with the caller's seed and no final inversion (the kernel's crc32c_le). A standard
 * CRC-32C of `data` is `~crc32cUpdate(0xffffffff, data)`. Slice-by-8 tables: metadata checksums
 * run over every directory, extent and inode block read.
 */
import { sliceBy8Tables, sliceBy8Update } from '../../util/crc32.js';

const TABLES = sliceBy8Tables(0x82f63b78);

/** Continues a CRC-32C register `crc` over `data` (no pre- or post-inversion). */
export function crc32cUpdate(crc: number, data: Uint8Array): number {
  return sliceBy8Update(TABLES, crc, data);
}

/** CRC-16 (ANSI, reflected polynomial 0xA001): the older uninit_bg group descriptor checksum. */
export function crc16Update(crc: number, data: Uint8Array): number {
  let c = crc & 0xffff;
  for (let i = 0; i < data.length; i++) {
    c ^= data[i]!;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
  }
  return c;
}

export function le32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}
