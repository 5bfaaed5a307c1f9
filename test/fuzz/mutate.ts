/**
 * Byte-level mutations of seed files: bit flips, bytes set to interesting values, little-endian
 * u16/u32/u64 fields overwritten with boundary values (at 8-aligned and unaligned offsets),
 * truncation, extension, insertion and deletion, and splices of slices of other seeds.
 * Positions favour the seed's hot spots (headers, tables, item boundaries), where the parsers
 * make decisions, over bulk data.
 */
import type { Seed } from './framework.js';
import type { Rng } from './rng.js';

const INTERESTING_U8 = [0x00, 0x01, 0x02, 0x07, 0x08, 0x0f, 0x10, 0x1f, 0x20, 0x2f, 0x3f, 0x40, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff];

const INTERESTING_U64: bigint[] = [
  0n,
  1n,
  2n,
  7n,
  8n,
  15n,
  16n,
  17n,
  23n,
  24n,
  32n,
  40n,
  0x7fn,
  0x80n,
  0xffn,
  0x100n,
  4095n,
  4096n,
  4097n,
  0xffffn,
  0x10000n,
  0x400000n,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 16n,
  2n ** 64n - 1n,
];

function interestingU64(rng: Rng, len: number): bigint {
  // Lengths related to the input itself are the most interesting "boundary" values.
  if (rng.chance(0.3)) {
    const base = BigInt(len);
    const delta = BigInt(rng.below(33)) - 16n;
    const v = base + delta;
    return v < 0n ? 0n : v;
  }
  return rng.pick(INTERESTING_U64);
}

/** A position in [0, len): uniform, near a hot spot, or near either end. */
function position(seed: Seed | undefined, len: number, rng: Rng): number {
  if (len <= 0) return 0;
  const r = rng.below(10);
  if (r < 4 && seed?.hot !== undefined && seed.hot.length > 0) {
    const h = rng.pick(seed.hot) + rng.below(48) - 8;
    return Math.min(len - 1, Math.max(0, h));
  }
  if (r < 6) return Math.min(len - 1, rng.below(Math.min(len, 256)));
  if (r < 7) return Math.max(0, len - 1 - rng.below(Math.min(len, 256)));
  return rng.below(len);
}

function pickSeed(seeds: Seed[], rng: Rng): Seed {
  let total = 0;
  for (const s of seeds) total += s.weight ?? 1;
  let x = rng.below(Math.max(1, Math.round(total * 1000))) / 1000;
  for (const s of seeds) {
    x -= s.weight ?? 1;
    if (x < 0) return s;
  }
  return seeds[seeds.length - 1]!;
}

/** One mutated copy of a randomly chosen seed (1-4 mutations, sometimes more). */
export function mutate(seeds: Seed[], rng: Rng, maxBytes: number): Buffer {
  const seed = pickSeed(seeds, rng);
  let b: Buffer = Buffer.from(seed.data);
  const n = rng.chance(0.1) ? 5 + rng.below(12) : 1 + rng.below(4);
  for (let k = 0; k < n; k++) b = mutateOnce(b, seed, seeds, rng, maxBytes);
  return b;
}

function mutateOnce(b: Buffer, seed: Seed, seeds: Seed[], rng: Rng, maxBytes: number): Buffer {
  const len = b.length;
  const op = rng.below(13);
  if (len === 0 && op < 10) return Buffer.from(rng.bytes(1 + rng.below(64)));
  switch (op) {
    case 0:
    case 1: {
      const p = position(seed, len, rng);
      b[p] = b[p]! ^ (1 << rng.below(8));
      return b;
    }
    case 2: {
      b[position(seed, len, rng)] = rng.pick(INTERESTING_U8);
      return b;
    }
    case 3: {
      b[position(seed, len, rng)] = rng.below(256);
      return b;
    }
    case 4:
    case 5: {
      // u64 at an 8-aligned offset (the formats' natural field alignment) or anywhere.
      if (len < 8) return b;
      let p = position(seed, len - 7, rng);
      if (op === 4) p &= ~7;
      b.writeBigUInt64LE(interestingU64(rng, len), Math.min(p, len - 8));
      return b;
    }
    case 6: {
      if (len < 4) return b;
      const p = Math.min(position(seed, len - 3, rng), len - 4);
      const v = Number(interestingU64(rng, len) & 0xffffffffn);
      if (rng.chance(0.5)) b.writeUInt32LE(v >>> 0, p);
      else b.writeUInt16LE(v & 0xffff, Math.min(p, len - 2));
      return b;
    }
    case 7: {
      // Truncate: anywhere, or by a few bytes.
      const cut = rng.chance(0.5) ? rng.below(len) : Math.max(0, len - 1 - rng.below(32));
      return b.subarray(0, cut);
    }
    case 8: {
      const extra = rng.chance(0.5) ? rng.bytes(1 + rng.below(64)) : Buffer.alloc(1 + rng.below(4096), rng.pick(INTERESTING_U8));
      if (len + extra.length > maxBytes) return b;
      return Buffer.concat([b, extra]);
    }
    case 9: {
      // Delete a range.
      const p = position(seed, len, rng);
      const n = 1 + rng.below(Math.min(64, len - p));
      return Buffer.concat([b.subarray(0, p), b.subarray(p + n)]);
    }
    case 10: {
      // Insert random bytes.
      const p = position(seed, len, rng);
      const ins = rng.bytes(1 + rng.below(32));
      if (len + ins.length > maxBytes) return b;
      return Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]);
    }
    case 11: {
      // Overwrite with a slice of another seed (or this one).
      const other = rng.pick(seeds);
      if (other.data.length === 0 || len === 0) return b;
      const from = position(other, other.data.length, rng);
      const n = Math.min(1 + rng.below(512), other.data.length - from, len);
      const to = Math.min(position(seed, len, rng), len - n);
      other.data.copy(b, to, from, from + n);
      return b;
    }
    default: {
      // Splice: our head, another seed's tail (or a duplicated block of our own).
      const other = rng.pick(seeds);
      const head = b.subarray(0, position(seed, len, rng));
      const tail = other.data.subarray(position(other, other.data.length, rng));
      if (head.length + tail.length > maxBytes) return b;
      return Buffer.concat([head, tail]);
    }
  }
}
