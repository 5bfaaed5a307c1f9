/**
 * CRC-32 (IEEE 802.3 / zlib; reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF).
 *
 * Every chunk and blob read is checked with this, so it must be fast: Node >= 20.15 ships a
 * native `zlib.crc32`, used when present. Older runtimes get a slice-by-8 table implementation
 * (8 table lookups per 8 input bytes instead of one lookup per byte).
 */
import * as zlib from 'node:zlib';

type NativeCrc32 = (data: Uint8Array, value?: number) => number;
const native: NativeCrc32 | undefined = (zlib as unknown as { crc32?: NativeCrc32 }).crc32;

/** Slice-by-8 lookup tables of a reflected CRC-32 polynomial (IEEE here; CRC-32C for ext4). */
export type SliceBy8Tables = readonly [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];

export function sliceBy8Tables(reflectedPoly: number): SliceBy8Tables {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  const t0 = t[0]!;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let i = 0; i < 8; i++) c = c & 1 ? reflectedPoly ^ (c >>> 1) : c >>> 1;
    t0[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t0[n]!;
    for (let k = 1; k < 8; k++) {
      c = t0[c & 0xff]! ^ (c >>> 8);
      t[k]![n] = c >>> 0;
    }
  }
  return t as unknown as SliceBy8Tables;
}

/** Continues the raw CRC register `crc` over `data` (no pre- or post-inversion). */
export function sliceBy8Update(tables: SliceBy8Tables, crc: number, data: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = tables;
  let c = crc >>> 0;
  let i = 0;
  const n = data.length;
  for (; i + 8 <= n; i += 8) {
    const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c =
      t7[a & 0xff]! ^
      t6[(a >>> 8) & 0xff]! ^
      t5[(a >>> 16) & 0xff]! ^
      t4[a >>> 24]! ^
      t3[data[i + 4]!]! ^
      t2[data[i + 5]!]! ^
      t1[data[i + 6]!]! ^
      t0[data[i + 7]!]!;
  }
  for (; i < n; i++) c = t0[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

let tables: SliceBy8Tables | undefined;

/** Pure-JS slice-by-8 CRC-32; exported for tests and for runtimes without zlib.crc32. */
export function crc32Js(data: Uint8Array, initial = 0): number {
  tables ??= sliceBy8Tables(0xedb88320);
  return ~sliceBy8Update(tables, ~initial >>> 0, data) >>> 0;
}

/**
 * CRC-32 of `data` as an unsigned 32-bit number; pass the CRC of the bytes before `data` as
 * `previous` to continue it (crc32(b, crc32(a)) === crc32(a + b)).
 */
export function crc32(data: Uint8Array, previous = 0): number {
  return native !== undefined ? native(data, previous) >>> 0 : crc32Js(data, previous);
}
