/**
 * VFAT long names: a run of entries (attribute 0x0F) before the 8.3 entry they belong to, last
 * part first, each with 13 UTF-16 units, its ordinal and the checksum of the 8.3 name. A run
 * that is broken (a missing ordinal, a changed checksum) or whose checksum does not match the
 * 8.3 entry after it is an orphan left by a writer that did not know long names: it is dropped
 * and the 8.3 name is used, as Windows and Linux do.
 */
import { u16s, untilNul } from './utf16.js';

export const ATTR_LONG_NAME = 0x0f;
const LAST = 0x40;
const MAX_PARTS = 20; // 20 * 13 = 260 units hold the longest name, 255

/** The checksum of an 8.3 name (the 11 name bytes) that each long-name entry repeats. */
export function shortNameChecksum(name11: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = ((((sum & 1) << 7) | (sum >> 1)) + name11[i]!) & 0xff;
  return sum;
}

function units(entry: Buffer): number[] {
  return [...u16s(entry, 1, 5), ...u16s(entry, 14, 6), ...u16s(entry, 28, 2)];
}

export class LongNameCollector {
  private parts: number[][] = [];
  private next = 0;
  private checksum = -1;

  reset(): void {
    this.parts = [];
    this.next = 0;
    this.checksum = -1;
  }

  /** Takes one long-name entry (32 bytes). */
  add(entry: Buffer): void {
    const ord = entry[0]!;
    const seq = ord & 0x1f;
    if ((ord & LAST) !== 0) {
      this.reset();
      if (seq < 1 || seq > MAX_PARTS || entry.readUInt16LE(26) !== 0) return;
      this.parts = new Array<number[]>(seq);
      this.parts[seq - 1] = units(entry);
      this.next = seq - 1;
      this.checksum = entry[13]!;
      return;
    }
    if (this.checksum < 0 || seq !== this.next || seq === 0 || entry[13] !== this.checksum) {
      this.reset();
      return;
    }
    this.parts[seq - 1] = units(entry);
    this.next = seq - 1;
  }

  /** The long name (UTF-16 units) for the 8.3 entry that follows, if the run is whole and matches. */
  take(shortEntry: Buffer): number[] | undefined {
    const whole = this.checksum >= 0 && this.next === 0 && this.checksum === shortNameChecksum(shortEntry.subarray(0, 11));
    const name = whole ? untilNul(this.parts.flat()) : undefined;
    this.reset();
    if (name === undefined || name.length === 0 || name.length > 255) return undefined;
    return name;
  }
}
