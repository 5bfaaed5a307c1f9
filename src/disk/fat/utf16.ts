/**
 * UTF-16LE code units (VFAT long names, exFAT names and labels) to UTF-8 bytes. Surrogate pairs
 * become one 4-byte sequence. An unpaired surrogate, which some writers store, is encoded as its
 * own 3-byte sequence (WTF-8) rather than replaced, so two names that differ only there stay
 * distinct and every name reads back to the units on disk.
 */
export function utf16ToUtf8(units: readonly number[]): Buffer {
  const out: number[] = [];
  for (let i = 0; i < units.length; i++) {
    let c = units[i]!;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < units.length) {
      const lo = units[i + 1]!;
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return Buffer.from(out);
}

/** `count` little-endian 16-bit units of `buf` from `offset`. */
export function u16s(buf: Buffer, offset: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(buf.readUInt16LE(offset + 2 * i));
  return out;
}

/** The units before the first NUL. */
export function untilNul(units: readonly number[]): number[] {
  const end = units.indexOf(0);
  return end < 0 ? [...units] : units.slice(0, end);
}
