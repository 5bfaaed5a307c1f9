/** Small helpers for little-endian binary layouts and hex. */
import { FormatError, type ErrorContext } from '../errors.js';

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Parses lowercase or uppercase hex of an exact byte length. */
export function fromHex(s: string, bytes: number, what = 'hex value'): Buffer {
  if (s.length !== bytes * 2 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new FormatError(`${what} must be ${bytes * 2} hex digits, got ${JSON.stringify(s.slice(0, 80))}`);
  }
  return Buffer.from(s, 'hex');
}

/**
 * Reads a u64 LE as a JS number, refusing values beyond 2^53 (no PBS quantity we index by
 * can be that large; a bigger value means corrupt or hostile input).
 */
export function readU64(buf: Uint8Array, off: number, ctx: ErrorContext = {}): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError(`64-bit value ${v} is too large`, ctx);
  }
  return Number(v);
}

export function readU64Big(buf: Uint8Array, off: number): bigint {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigUint64(off, true);
}

export function readI64Big(buf: Uint8Array, off: number): bigint {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigInt64(off, true);
}

export function readU32(buf: Uint8Array, off: number): number {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(off, true);
}

export function writeU64(buf: Uint8Array, off: number, v: number | bigint): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setBigUint64(off, BigInt(v), true);
}

export function writeI64(buf: Uint8Array, off: number, v: number | bigint): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setBigInt64(off, BigInt(v), true);
}

export function writeU32(buf: Uint8Array, off: number, v: number): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(off, v >>> 0, true);
}

/** Constant-time-ish equality for digests and tags (lengths are public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** "4.0 MiB" style sizes for messages. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Parses "128M", "1G", "65536", "4KiB" into bytes. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(s);
  if (!m) throw new FormatError(`not a size: ${JSON.stringify(s)} (use e.g. 128M, 1G, 65536)`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.floor(Number(m[1]) * mult[(m[2] ?? '').toLowerCase()]!);
}

let zeros: Buffer | undefined;

/** True when every byte of `b` is 0 (memcmp against a shared 1 MiB zero block, slice by slice). */
export function isAllZero(b: Uint8Array): boolean {
  const z = (zeros ??= Buffer.alloc(1024 * 1024));
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  for (let off = 0; off < buf.length; off += z.length) {
    const n = Math.min(z.length, buf.length - off);
    if (!buf.subarray(off, off + n).equals(n === z.length ? z : z.subarray(0, n))) return false;
  }
  return true;
}
