/**
 * The header-only hardlink scan (vfs nlink) must count exactly what a full decode of every entry
 * finds, on both vector archives, and must refuse malformed streams with a typed error.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PbsfsError } from '../../src/errors.js';
import { BufferReadAt } from '../../src/io/read-at.js';
import { scanHardlinkCounts } from '../../src/pxar/hardlink-scan.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import { pxarDir } from '../helpers/paths.js';

async function decodedCounts(buf: Buffer): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  const dec = await PxarSequentialDecoder.open(new BufferReadAt('archive', buf));
  for await (const e of dec.entries()) {
    if (e.hardlink !== undefined) counts.set(e.hardlink.targetFilenameOffset, (counts.get(e.hardlink.targetFilenameOffset) ?? 0) + 1);
  }
  return counts;
}

describe('header-only hardlink scan', () => {
  for (const file of ['archive-v1.pxar', 'archive-v2.mpxar']) {
    const buf = readFileSync(join(pxarDir, file));

    it(`${file}: counts equal a full decode`, async () => {
      const want = await decodedCounts(buf);
      expect(want.size).toBeGreaterThan(0); // the vectors do contain hardlinks
      expect(await scanHardlinkCounts(new BufferReadAt(file, buf))).toEqual(want);
    });

    it(`${file}: truncated or mutated streams give a typed error naming the archive, or counts`, async () => {
      await expect(scanHardlinkCounts(new BufferReadAt(file, buf.subarray(0, buf.length - 7)))).rejects.toThrow(/archive|stream|item/);
      await fc.assert(
        fc.asyncProperty(fc.nat(buf.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(buf.length), async (at, byte, cut) => {
          const m = Buffer.from(buf.subarray(0, Math.max(16, cut)));
          if (at < m.length) m[at] = byte;
          try {
            const counts = await scanHardlinkCounts(new BufferReadAt(file, m));
            for (const [target, n] of counts) expect(target >= 0 && target < m.length && n >= 1).toBe(true);
          } catch (e) {
            expect(e).toBeInstanceOf(PbsfsError);
            expect((e as PbsfsError).message).toContain(file);
          }
        }),
        { numRuns: 300 },
      );
    });
  }
});
