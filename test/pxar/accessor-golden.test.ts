import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import type { PxarEntry } from '../../src/pxar/types.js';
import { pxarDir } from '../helpers/paths.js';
import { expectEntryMatches, loadListing, pathBytes } from './listing.js';

async function readAll(acc: PxarAccessor, e: PxarEntry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of acc.stream(e)) parts.push(b);
  return Buffer.concat(parts);
}

for (const which of ['v1', 'v2'] as const) {
  describe(`random access over archive-${which}`, () => {
    const files: FileReadAt[] = [];
    let acc: PxarAccessor;
    beforeAll(async () => {
      if (which === 'v1') {
        const a = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
        files.push(a);
        acc = await PxarAccessor.open(a);
      } else {
        const m = await FileReadAt.open(join(pxarDir, 'archive-v2.mpxar'));
        const p = await FileReadAt.open(join(pxarDir, 'archive-v2.ppxar'));
        files.push(m, p);
        acc = await PxarAccessor.open(m, p);
      }
    });
    afterAll(async () => {
      for (const f of files) await f.close();
    });

    it('reports the format version', () => {
      expect(acc.version).toBe(which === 'v1' ? 1 : 2);
    });

    it('looks up every listed path and matches it field by field', async () => {
      const listing = loadListing(which);
      expect(listing.length).toBeGreaterThan(10);
      for (const exp of listing) {
        const path = pathBytes(exp);
        const e = await acc.lookupPath(path);
        expect(e, exp.path).toBeDefined();
        const contents = e!.kind === 'file' ? await readAll(acc, e!) : undefined;
        expectEntryMatches(exp, e!, contents, path);
        if (e!.kind === 'hardlink') {
          const t = await acc.resolve(e!);
          expect(t.kind).toBe('file');
          const target = await acc.lookupPath(e!.hardlink!.target);
          expect(target?.filenameOffset, exp.path).toBe(t.filenameOffset);
        }
      }
    });

    it('lists every directory with the listed children, in name order', async () => {
      const listing = loadListing(which);
      for (const exp of listing.filter((x) => x.kind === 'directory')) {
        const dirPath = pathBytes(exp);
        const prefix = dirPath.length === 1 ? dirPath : Buffer.concat([dirPath, Buffer.from('/')]);
        const expected = listing
          .map((x) => pathBytes(x))
          .filter((p) => p.length > prefix.length && p.subarray(0, prefix.length).equals(prefix) && !p.subarray(prefix.length).includes(0x2f))
          .map((p) => p.subarray(prefix.length).toString('hex'));
        const dir = await acc.lookupPath(dirPath);
        const kids = await acc.readdir(dir!);
        expect(kids.map((k) => k.name.toString('hex')), exp.path).toEqual(expected);
      }
    });
  });
}
