/** Name decoding shared by FAT and exFAT: UTF-16 to UTF-8, 8.3 names, long-name runs. */
import { describe, expect, it } from 'vitest';
import { LongNameCollector, shortNameChecksum } from '../../../src/disk/fat/long-name.js';
import { shortName } from '../../../src/disk/fat/short-name.js';
import { utf16ToUtf8 } from '../../../src/disk/fat/utf16.js';

function units(s: string): number[] {
  return [...s].flatMap((c) => {
    const cp = c.codePointAt(0)!;
    if (cp < 0x10000) return [cp];
    const v = cp - 0x10000;
    return [0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff)];
  });
}

function entry8_3(name11: string, ntFlags = 0): Buffer {
  const e = Buffer.alloc(32);
  e.write(name11, 0, 'latin1');
  e[11] = 0x20;
  e[12] = ntFlags;
  return e;
}

function lfnEntries(name: string, short: Buffer): Buffer[] {
  const u = units(name);
  const parts = Math.ceil((u.length + 1) / 13);
  const padded = [...u, 0, ...new Array<number>(parts * 13).fill(0xffff)].slice(0, parts * 13);
  const sum = shortNameChecksum(short.subarray(0, 11));
  const out: Buffer[] = [];
  for (let p = parts; p >= 1; p--) {
    const e = Buffer.alloc(32);
    e[0] = p | (p === parts ? 0x40 : 0);
    e[11] = 0x0f;
    e[13] = sum;
    const chunk = padded.slice((p - 1) * 13, p * 13);
    chunk.forEach((c, i) => e.writeUInt16LE(c, i < 5 ? 1 + 2 * i : i < 11 ? 14 + 2 * (i - 5) : 28 + 2 * (i - 11)));
    out.push(e);
  }
  return out;
}

describe('UTF-16 names to UTF-8 bytes', () => {
  it('joins surrogate pairs into one 4-byte sequence', () => {
    expect(utf16ToUtf8(units('emoji 😀 and 𝄞')).toString('utf8')).toBe('emoji 😀 and 𝄞');
    expect(utf16ToUtf8(units('Ünïcødé — ✓ 日本')).toString('utf8')).toBe('Ünïcødé — ✓ 日本');
  });
  it('keeps an unpaired surrogate as its own 3-byte sequence instead of replacing it', () => {
    expect(utf16ToUtf8([0x61, 0xd800, 0x62])).toEqual(Buffer.from([0x61, 0xed, 0xa0, 0x80, 0x62]));
    expect(utf16ToUtf8([0xdc00])).toEqual(Buffer.from([0xed, 0xb0, 0x80]));
  });
});

describe('8.3 names', () => {
  it('applies the NT lower-case flags to base and extension separately', () => {
    expect(shortName(entry8_3('README  TXT')).toString()).toBe('README.TXT');
    expect(shortName(entry8_3('README  TXT', 0x08)).toString()).toBe('readme.TXT');
    expect(shortName(entry8_3('README  TXT', 0x18)).toString()).toBe('readme.txt');
    expect(shortName(entry8_3('MAKEFILE   ', 0x18)).toString()).toBe('makefile');
  });
  it('reads a leading 0x05 as 0xE5 and high bytes as code page 437', () => {
    const e = entry8_3('XABC    TXT');
    e[0] = 0x05;
    expect(shortName(e).toString()).toBe('σABC.TXT');
    e[0] = 0x81;
    expect(shortName(e).toString()).toBe('üABC.TXT');
  });
});

describe('VFAT long-name runs', () => {
  const short = entry8_3('LONGFI~1TXT');
  it('assembles a run of several parts whose checksum matches the 8.3 entry', () => {
    const c = new LongNameCollector();
    for (const e of lfnEntries('Long File Name with spaces 😀.txt', short)) c.add(e);
    expect(utf16ToUtf8(c.take(short)!).toString()).toBe('Long File Name with spaces 😀.txt');
  });
  it('drops a run whose checksum belongs to another 8.3 name (an orphan)', () => {
    const c = new LongNameCollector();
    for (const e of lfnEntries('Long File Name.txt', entry8_3('OTHER   TXT'))) c.add(e);
    expect(c.take(short)).toBeUndefined();
  });
  it('drops a run with a missing part', () => {
    const c = new LongNameCollector();
    const parts = lfnEntries('A name that needs three parts of thirteen.txt', short);
    expect(parts.length).toBe(4);
    c.add(parts[0]!);
    c.add(parts[2]!);
    c.add(parts[3]!);
    expect(c.take(short)).toBeUndefined();
  });
});
