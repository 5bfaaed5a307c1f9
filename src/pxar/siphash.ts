/**
 * SipHash-2-4 (64-bit output) with paired 32-bit arithmetic.
 *
 * pxar uses it twice: the item type constants are hashes of magic strings, and the GOODBYE table
 * indexes children by the hash of their name. Names are hashed for every lookup and (in the
 * encoder) for every entry, so this avoids BigInt in the rounds: each 64-bit lane is a (lo, hi)
 * pair of unsigned 32-bit numbers held in plain locals.
 */

/** pxar's keys: the first two big-endian u64 of sha1("PROXMOX ARCHIVE FORMAT"). */
export const PXAR_HASH_KEY0 = 0x83ac3f1cfbb450dbn;
export const PXAR_HASH_KEY1 = 0xaa4f1b6879369fbdn;

/** A 64-bit hash as two unsigned 32-bit halves (what the goodbye table stores as u64 LE). */
export interface Hash64 {
  lo: number;
  hi: number;
}

const K0_LO = Number(PXAR_HASH_KEY0 & 0xffffffffn);
const K0_HI = Number(PXAR_HASH_KEY0 >> 32n);
const K1_LO = Number(PXAR_HASH_KEY1 & 0xffffffffn);
const K1_HI = Number(PXAR_HASH_KEY1 >> 32n);

/**
 * The state v0..v3 as (lo, hi) halves. Rounds read and write it here rather than in variables a
 * closure captures: those live in a heap context, where every unsigned 32-bit value is a boxed
 * number, and hashing each name then allocated ~1.3 KB (128 MB over a 100,000-entry tree walk).
 */
const V = new Uint32Array(8);

/** One SipRound on V: 64-bit add and rotate on (lo, hi) pairs. */
function sipRound(): void {
  let v0l = V[0]!;
  let v0h = V[1]!;
  let v1l = V[2]!;
  let v1h = V[3]!;
  let v2l = V[4]!;
  let v2h = V[5]!;
  let v3l = V[6]!;
  let v3h = V[7]!;
  let s: number;
  let t: number;
  // v0 += v1
  s = v0l + v1l;
  v0h = (v0h + v1h + (s > 0xffffffff ? 1 : 0)) >>> 0;
  v0l = s >>> 0;
  // v1 = rotl(v1, 13) ^ v0
  t = v1l;
  v1l = (((v1l << 13) | (v1h >>> 19)) ^ v0l) >>> 0;
  v1h = (((v1h << 13) | (t >>> 19)) ^ v0h) >>> 0;
  // v0 = rotl(v0, 32)
  t = v0l;
  v0l = v0h;
  v0h = t;
  // v2 += v3
  s = v2l + v3l;
  v2h = (v2h + v3h + (s > 0xffffffff ? 1 : 0)) >>> 0;
  v2l = s >>> 0;
  // v3 = rotl(v3, 16) ^ v2
  t = v3l;
  v3l = (((v3l << 16) | (v3h >>> 16)) ^ v2l) >>> 0;
  v3h = (((v3h << 16) | (t >>> 16)) ^ v2h) >>> 0;
  // v0 += v3
  s = v0l + v3l;
  v0h = (v0h + v3h + (s > 0xffffffff ? 1 : 0)) >>> 0;
  v0l = s >>> 0;
  // v3 = rotl(v3, 21) ^ v0
  t = v3l;
  v3l = (((v3l << 21) | (v3h >>> 11)) ^ v0l) >>> 0;
  v3h = (((v3h << 21) | (t >>> 11)) ^ v0h) >>> 0;
  // v2 += v1
  s = v2l + v1l;
  v2h = (v2h + v1h + (s > 0xffffffff ? 1 : 0)) >>> 0;
  v2l = s >>> 0;
  // v1 = rotl(v1, 17) ^ v2
  t = v1l;
  v1l = (((v1l << 17) | (v1h >>> 15)) ^ v2l) >>> 0;
  v1h = (((v1h << 17) | (t >>> 15)) ^ v2h) >>> 0;
  // v2 = rotl(v2, 32)
  V[0] = v0l;
  V[1] = v0h;
  V[2] = v1l;
  V[3] = v1h;
  V[4] = v2h;
  V[5] = v2l;
  V[6] = v3l;
  V[7] = v3h;
}

/** Absorbs one 64-bit message word: v3 ^= m, two rounds, v0 ^= m. */
function compress(ml: number, mh: number): void {
  V[6] = V[6]! ^ ml;
  V[7] = V[7]! ^ mh;
  sipRound();
  sipRound();
  V[0] = V[0]! ^ ml;
  V[1] = V[1]! ^ mh;
}

/** SipHash-2-4 of `data` with keys given as (lo, hi) halves; returns the 64-bit result halves. */
export function siphash24Parts(k0lo: number, k0hi: number, k1lo: number, k1hi: number, data: Uint8Array): Hash64 {
  // v0 = k0 ^ "somepseu", v1 = k1 ^ "dorandom", v2 = k0 ^ "lygenera", v3 = k1 ^ "tedbytes"
  V[0] = k0lo ^ 0x70736575;
  V[1] = k0hi ^ 0x736f6d65;
  V[2] = k1lo ^ 0x6e646f6d;
  V[3] = k1hi ^ 0x646f7261;
  V[4] = k0lo ^ 0x6e657261;
  V[5] = k0hi ^ 0x6c796765;
  V[6] = k1lo ^ 0x79746573;
  V[7] = k1hi ^ 0x74656462;
  const len = data.length;
  const full = len - (len % 8);
  for (let i = 0; i < full; i += 8) {
    compress(data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24), data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24));
  }
  // Last block: remaining bytes, length byte in the top position.
  let bl = 0;
  let bh = (len & 0xff) << 24;
  for (let j = 0; j < len - full; j++) {
    const b = data[full + j]!;
    if (j < 4) bl |= b << (8 * j);
    else bh |= b << (8 * (j - 4));
  }
  compress(bl, bh);
  V[4] = V[4]! ^ 0xff;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  return { lo: (V[0]! ^ V[2]! ^ V[4]! ^ V[6]!) >>> 0, hi: (V[1]! ^ V[3]! ^ V[5]! ^ V[7]!) >>> 0 };
}

/** General SipHash-2-4 with BigInt keys (used for the self-test of the type constants). */
export function siphash24(k0: bigint, k1: bigint, data: Uint8Array): bigint {
  const m = 0xffffffffn;
  const r = siphash24Parts(Number(k0 & m), Number((k0 >> 32n) & m), Number(k1 & m), Number((k1 >> 32n) & m), data);
  return (BigInt(r.hi) << 32n) | BigInt(r.lo);
}

/** pxar filename hash as (lo, hi) halves: the fast form used by goodbye-table lookups. */
export function pxarHashParts(name: Uint8Array): Hash64 {
  return siphash24Parts(K0_LO, K0_HI, K1_LO, K1_HI, name);
}

/** pxar filename hash as a u64 BigInt (no trailing NUL in `name`). */
export function pxarHash(name: Uint8Array): bigint {
  const r = pxarHashParts(name);
  return (BigInt(r.hi) << 32n) | BigInt(r.lo);
}

/** pxar filename hash as the 8 little-endian bytes written into a goodbye record. */
export function pxarHashBytes(name: Uint8Array): Buffer {
  const r = pxarHashParts(name);
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32LE(r.lo, 0);
  b.writeUInt32LE(r.hi, 4);
  return b;
}
