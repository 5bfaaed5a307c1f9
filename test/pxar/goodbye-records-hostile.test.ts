/**
 * Goodbye records whose offset or size do not fit their directory (here: values at or above
 * 2^53, which a number cannot hold exactly) are refused with a FormatError naming the record,
 * both through a listing and through a lookup; never a wrong entry or a crash.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.js';
import { BufferReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { GOODBYE_ITEM_SIZE, HEADER_SIZE } from '../../src/pxar/format.js';
import { pxarDir } from '../helpers/paths.js';

const original = readFileSync(join(pxarDir, 'archive-v1.pxar'));

/** The archive with field `field` (8: offset, 16: size) of the root's first goodbye record set to `value`. */
function patched(field: 8 | 16, value: bigint): Buffer {
  const b = Buffer.from(original);
  const tail = b.length - GOODBYE_ITEM_SIZE;
  const tableSize = Number(b.readBigUInt64LE(tail + 16));
  const firstRecord = b.length - tableSize + HEADER_SIZE;
  b.writeBigUInt64LE(value, firstRecord + field);
  return b;
}

async function listRoot(archive: Buffer): Promise<unknown> {
  const acc = await PxarAccessor.open(new BufferReadAt('hostile.pxar', archive));
  return acc.readdir(acc.root()).catch((e: unknown) => e);
}

describe('hostile goodbye records', () => {
  for (const value of [1n << 53n, (1n << 64n) - 1n]) {
    it(`offset ${value}: refused as pointing outside the directory`, async () => {
      const e = await listRoot(patched(8, value));
      expect(e).toBeInstanceOf(FormatError);
      expect((e as Error).message).toMatch(new RegExp(`goodbye record offset ${value} points outside its directory`));
      expect((e as Error).message).toContain('hostile.pxar');
    });
  }

  it('a subdirectory record whose size is 2^64-1: refused as not fitting its parent', async () => {
    const acc = await PxarAccessor.open(new BufferReadAt('clean.pxar', original));
    const children = await acc.readdir(acc.root());
    // Which child the first record describes: find a patch that hits a directory record.
    const table = (() => {
      const tail = original.length - GOODBYE_ITEM_SIZE;
      const tableSize = Number(original.readBigUInt64LE(tail + 16));
      return original.length - tableSize + HEADER_SIZE;
    })();
    const goodbyeStart = table - HEADER_SIZE;
    const count = (original.length - GOODBYE_ITEM_SIZE - table) / GOODBYE_ITEM_SIZE;
    let hit = false;
    for (let i = 0; i < count && !hit; i++) {
      const pos = goodbyeStart - Number(original.readBigUInt64LE(table + i * GOODBYE_ITEM_SIZE + 8));
      const child = children.find((c) => c.filenameOffset === pos);
      if (child?.kind !== 'directory') continue;
      const b = Buffer.from(original);
      b.writeBigUInt64LE((1n << 64n) - 1n, table + i * GOODBYE_ITEM_SIZE + 16);
      const e = await listRoot(b);
      expect(e).toBeInstanceOf(FormatError);
      expect((e as Error).message).toMatch(/goodbye record size 18446744073709551615 of directory .* does not fit its parent/);
      hit = true;
    }
    expect(hit).toBe(true);
  });
});
