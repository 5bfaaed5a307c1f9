/**
 * The catalog's variable-length integers (spec 10.2).
 *
 * vu64: 7 data bits per byte, least significant group first, 0x80 = "more follows"; at most
 * 10 bytes. vi64: non-negative values as vu64; a negative value writes its magnitude in groups
 * that all carry 0x80 and then a 0x00 terminator; at most 11 bytes.
 *
 * Decoders work on bigint so every 64-bit value round-trips, and refuse anything a 64-bit
 * integer cannot hold (upstream silently drops the excess bits; we call it corrupt).
 */
import { FormatError, type ErrorContext } from '../errors.js';

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

export const VU64_MAX_BYTES = 10;
export const VI64_MAX_BYTES = 11;

export interface Decoded {
  value: bigint;
  /** Bytes consumed. */
  length: number;
}

function ctxAt(ctx: ErrorContext, base: number, off: number): ErrorContext {
  return { ...ctx, offset: base + off };
}

/** Encodes an unsigned 64-bit value. */
export function encodeVu64(v: bigint | number): Buffer {
  let d = BigInt(v);
  if (d < 0n || d > U64_MAX) throw new RangeError(`vu64 value out of range: ${d}`);
  const out: number[] = [];
  while (d >= 128n) {
    out.push(Number(d & 127n) | 0x80);
    d >>= 7n;
  }
  out.push(Number(d));
  return Buffer.from(out);
}

/** Encodes a signed 64-bit value. */
export function encodeVi64(v: bigint | number): Buffer {
  const s = BigInt(v);
  if (s < I64_MIN || s > I64_MAX) throw new RangeError(`vi64 value out of range: ${s}`);
  if (s >= 0n) return encodeVu64(s);
  let d = -s;
  const out: number[] = [];
  while (d >= 128n) {
    out.push(Number(d & 127n) | 0x80);
    d >>= 7n;
  }
  out.push(Number(d) | 0x80, 0);
  return Buffer.from(out);
}

/**
 * Decodes a vu64 at `off` of `buf` (which ends where the enclosing structure ends).
 * @param base  file offset of buf[0], for error messages
 */
export function decodeVu64(buf: Uint8Array, off: number, ctx: ErrorContext = {}, base = 0): Decoded {
  let v = 0n;
  for (let i = 0; i < VU64_MAX_BYTES; i++) {
    const t = buf[off + i];
    if (t === undefined) throw new FormatError('truncated variable-length integer', ctxAt(ctx, base, off));
    v |= BigInt(t & 0x7f) << BigInt(7 * i);
    if (t < 0x80) {
      if (v > U64_MAX) throw new FormatError('variable-length integer exceeds 64 bits', ctxAt(ctx, base, off));
      return { value: v, length: i + 1 };
    }
  }
  throw new FormatError(`variable-length integer has no end marker within ${VU64_MAX_BYTES} bytes`, ctxAt(ctx, base, off));
}

/** Decodes a vi64 at `off` of `buf`. */
export function decodeVi64(buf: Uint8Array, off: number, ctx: ErrorContext = {}, base = 0): Decoded {
  let v = 0n;
  for (let i = 0; i < VI64_MAX_BYTES; i++) {
    const t = buf[off + i];
    if (t === undefined) throw new FormatError('truncated signed variable-length integer', ctxAt(ctx, base, off));
    if (t === 0) {
      // A lone 0x00 is zero; after magnitude groups it marks the value negative.
      const value = -v;
      if (value < I64_MIN) throw new FormatError('signed variable-length integer below -2^63', ctxAt(ctx, base, off));
      return { value, length: i + 1 };
    }
    v |= BigInt(t & 0x7f) << BigInt(7 * i);
    if (t < 0x80) {
      if (v > I64_MAX) throw new FormatError('signed variable-length integer above 2^63-1', ctxAt(ctx, base, off));
      return { value: v, length: i + 1 };
    }
  }
  throw new FormatError(
    `signed variable-length integer has no end marker within ${VI64_MAX_BYTES} bytes`,
    ctxAt(ctx, base, off),
  );
}

/** The value as a JS number, or a FormatError naming `what` when it is beyond 2^53. */
export function toSafeNumber(v: bigint, what: string, ctx: ErrorContext = {}): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new FormatError(`${what} ${v} is out of range`, ctx);
  }
  return Number(v);
}
