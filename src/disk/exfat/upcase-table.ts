/**
 * The exFAT up-case table: the upper-case form of every UTF-16 unit, which name hashes (and
 * Windows' case-insensitive comparison) use. It is stored compressed: 0xFFFF followed by a count
 * means that many units map to themselves. Its checksum is verified when it is loaded.
 */
import { FormatError, IntegrityError } from '../../errors.js';

/** The table checksum (a 32-bit rotate-and-add over its bytes). */
export function tableChecksum(data: Buffer): number {
  let sum = 0;
  for (const b of data) sum = (((sum & 1) !== 0 ? 0x80000000 : 0) + (sum >>> 1) + b) >>> 0;
  return sum;
}

export class UpcaseTable {
  private constructor(private readonly map: Uint16Array) {}

  /** Decodes the table bytes; `where` names its position for errors. */
  static decode(data: Buffer, checksum: number, file: string, offset: number): UpcaseTable {
    const sum = tableChecksum(data);
    if (sum !== checksum) {
      throw new IntegrityError(`exFAT up-case table checksum mismatch: computed 0x${sum.toString(16)}, its entry says 0x${checksum.toString(16)}`, { file, offset });
    }
    if (data.length % 2 !== 0) throw new FormatError(`exFAT up-case table of ${data.length} bytes (an odd length)`, { file, offset });
    const map = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) map[i] = i;
    let unit = 0;
    for (let i = 0; i + 1 < data.length && unit < 65536; i += 2) {
      const v = data.readUInt16LE(i);
      if (v === 0xffff && i + 3 < data.length) {
        unit += data.readUInt16LE(i + 2); // an identity run
        i += 2;
      } else {
        map[unit++] = v;
      }
    }
    return new UpcaseTable(map);
  }

  upcase(unit: number): number {
    return this.map[unit]!;
  }

  /** The NameHash of the stream extension entry: over the up-cased name, low byte first. */
  nameHash(units: readonly number[]): number {
    let hash = 0;
    for (const u of units) {
      const c = this.upcase(u);
      hash = (((hash & 1) !== 0 ? 0x8000 : 0) + (hash >>> 1) + (c & 0xff)) & 0xffff;
      hash = (((hash & 1) !== 0 ? 0x8000 : 0) + (hash >>> 1) + (c >>> 8)) & 0xffff;
    }
    return hash;
  }
}
