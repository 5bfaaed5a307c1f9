/**
 * The htree directory hashes: legacy (dx_hack_hash), half-MD4 and TEA, each with signed or
 * unsigned chars (s_flags says which), seeded by s_hash_seed. Written from the algorithm
 * descriptions in the kernel's ext4 documentation and e2fsprogs' behaviour; the tests check
 * every name of large htree directories against the real lookup.
 */
export const DX_HASH = { LEGACY: 0, HALF_MD4: 1, TEA: 2, LEGACY_UNSIGNED: 3, HALF_MD4_UNSIGNED: 4, TEA_UNSIGNED: 5 } as const;

function charAt(name: Uint8Array, i: number, signed: boolean): number {
  const c = name[i]!;
  return signed && c >= 128 ? c - 256 : c;
}

function hackHash(name: Uint8Array, signed: boolean): number {
  let hash0 = 0x12a3fe2d;
  let hash1 = 0x37abe8f9;
  for (let i = 0; i < name.length; i++) {
    let hash = (hash1 + (hash0 ^ Math.imul(charAt(name, i, signed), 7152373))) >>> 0;
    if (hash & 0x80000000) hash = (hash - 0x7fffffff) >>> 0;
    hash1 = hash0;
    hash0 = hash;
  }
  return (hash0 << 1) >>> 0;
}

/** Packs up to num*4 bytes of `name` from `start` into `num` words, padded with the length. */
function str2hashbuf(name: Uint8Array, start: number, len: number, num: number, signed: boolean): Uint32Array {
  const out = new Uint32Array(num);
  let pad = (len | (len << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  let val = pad;
  const n = Math.min(len, num * 4);
  let w = 0;
  for (let i = 0; i < n; i++) {
    val = (charAt(name, start + i, signed) + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[w++] = val;
      val = pad;
    }
  }
  if (w < num) out[w++] = val;
  while (w < num) out[w++] = pad;
  return out;
}

function rol(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

function halfMd4(buf: Uint32Array, x: Uint32Array): void {
  let a = buf[0]!;
  let b = buf[1]!;
  let c = buf[2]!;
  let d = buf[3]!;
  const F = (x1: number, y: number, z: number): number => (z ^ (x1 & (y ^ z))) >>> 0;
  const G = (x1: number, y: number, z: number): number => ((x1 & y) + ((x1 ^ y) & z)) >>> 0;
  const H = (x1: number, y: number, z: number): number => (x1 ^ y ^ z) >>> 0;
  const K2 = 0x5a827999;
  const K3 = 0x6ed9eba1;
  const r = (f: (p: number, q: number, s: number) => number, w: number, p: number, q: number, s: number, v: number, sh: number): number => rol((w + f(p, q, s) + v) >>> 0, sh);
  a = r(F, a, b, c, d, x[0]!, 3);
  d = r(F, d, a, b, c, x[1]!, 7);
  c = r(F, c, d, a, b, x[2]!, 11);
  b = r(F, b, c, d, a, x[3]!, 19);
  a = r(F, a, b, c, d, x[4]!, 3);
  d = r(F, d, a, b, c, x[5]!, 7);
  c = r(F, c, d, a, b, x[6]!, 11);
  b = r(F, b, c, d, a, x[7]!, 19);
  a = r(G, a, b, c, d, (x[1]! + K2) >>> 0, 3);
  d = r(G, d, a, b, c, (x[3]! + K2) >>> 0, 5);
  c = r(G, c, d, a, b, (x[5]! + K2) >>> 0, 9);
  b = r(G, b, c, d, a, (x[7]! + K2) >>> 0, 13);
  a = r(G, a, b, c, d, (x[0]! + K2) >>> 0, 3);
  d = r(G, d, a, b, c, (x[2]! + K2) >>> 0, 5);
  c = r(G, c, d, a, b, (x[4]! + K2) >>> 0, 9);
  b = r(G, b, c, d, a, (x[6]! + K2) >>> 0, 13);
  a = r(H, a, b, c, d, (x[3]! + K3) >>> 0, 3);
  d = r(H, d, a, b, c, (x[7]! + K3) >>> 0, 9);
  c = r(H, c, d, a, b, (x[2]! + K3) >>> 0, 11);
  b = r(H, b, c, d, a, (x[6]! + K3) >>> 0, 15);
  a = r(H, a, b, c, d, (x[1]! + K3) >>> 0, 3);
  d = r(H, d, a, b, c, (x[5]! + K3) >>> 0, 9);
  c = r(H, c, d, a, b, (x[0]! + K3) >>> 0, 11);
  b = r(H, b, c, d, a, (x[4]! + K3) >>> 0, 15);
  buf[0] = (buf[0]! + a) >>> 0;
  buf[1] = (buf[1]! + b) >>> 0;
  buf[2] = (buf[2]! + c) >>> 0;
  buf[3] = (buf[3]! + d) >>> 0;
}

function tea(buf: Uint32Array, x: Uint32Array): void {
  let sum = 0;
  let b0 = buf[0]!;
  let b1 = buf[1]!;
  const [a, b, c, d] = [x[0]!, x[1]!, x[2]!, x[3]!];
  for (let n = 0; n < 16; n++) {
    sum = (sum + 0x9e3779b9) >>> 0;
    b0 = (b0 + ((((b1 << 4) >>> 0) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b))) >>> 0;
    b1 = (b1 + ((((b0 << 4) >>> 0) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d))) >>> 0;
  }
  buf[0] = (buf[0]! + b0) >>> 0;
  buf[1] = (buf[1]! + b1) >>> 0;
}

/** The major hash of `name` (low bit clear), or undefined for a hash version this reader lacks. */
export function dirHash(name: Uint8Array, version: number, seed: readonly number[]): number | undefined {
  const buf = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  if (seed.some((w) => w !== 0)) for (let i = 0; i < 4; i++) buf[i] = seed[i]!;
  let hash: number;
  switch (version) {
    case DX_HASH.LEGACY:
    case DX_HASH.LEGACY_UNSIGNED:
      hash = hackHash(name, version === DX_HASH.LEGACY);
      break;
    case DX_HASH.HALF_MD4:
    case DX_HASH.HALF_MD4_UNSIGNED: {
      const signed = version === DX_HASH.HALF_MD4;
      for (let p = 0, len = name.length; len > 0; p += 32, len -= 32) halfMd4(buf, str2hashbuf(name, p, len, 8, signed));
      hash = buf[1]!;
      break;
    }
    case DX_HASH.TEA:
    case DX_HASH.TEA_UNSIGNED: {
      const signed = version === DX_HASH.TEA;
      for (let p = 0, len = name.length; len > 0; p += 16, len -= 16) tea(buf, str2hashbuf(name, p, len, 4, signed));
      hash = buf[0]!;
      break;
    }
    default:
      return undefined;
  }
  hash = (hash & ~1) >>> 0;
  if (hash === 0x7fffffff * 2) hash = 0x7ffffffe * 2;
  return hash;
}
