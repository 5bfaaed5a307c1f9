import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileReadAt, type ReadAt } from '../../src/io/read-at.js';
import { PxarSequentialDecoder, type SequentialEntry } from '../../src/pxar/sequential.js';
import { pxarDir } from '../helpers/paths.js';
import { expectEntryMatches, loadListing } from './listing.js';

for (const which of ['v1', 'v2'] as const) {
  describe(`sequential decoding of archive-${which}`, () => {
    const files: FileReadAt[] = [];
    let archive: ReadAt;
    let payload: ReadAt | undefined;
    beforeAll(async () => {
      if (which === 'v1') {
        archive = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
        files.push(archive as FileReadAt);
      } else {
        archive = await FileReadAt.open(join(pxarDir, 'archive-v2.mpxar'));
        payload = await FileReadAt.open(join(pxarDir, 'archive-v2.ppxar'));
        files.push(archive as FileReadAt, payload as FileReadAt);
      }
    });
    afterAll(async () => {
      for (const f of files) await f.close();
    });

    for (const blockSize of [4096, 1024 * 1024]) {
      it(`yields exactly the listing, in order, field by field (window ${blockSize})`, async () => {
        const dec = await PxarSequentialDecoder.open(archive, payload, { blockSize });
        expect(dec.version).toBe(which === 'v1' ? 1 : 2);
        const listing = loadListing(which);
        const got: SequentialEntry[] = [];
        for await (const e of dec.entries()) got.push(e);
        expect(got.length).toBe(listing.length);
        for (let i = 0; i < listing.length; i++) {
          const e = got[i]!;
          let contents: Buffer | undefined;
          if (e.kind === 'file') {
            const parts: Buffer[] = [];
            for await (const b of dec.stream(e)) parts.push(b);
            contents = Buffer.concat(parts);
          }
          expectEntryMatches(listing[i]!, e, contents, e.path);
        }
        // Directory ends are filled in at their GOODBYE; the root ends at the archive end.
        expect(got[0]!.end).toBe(archive.size);
        for (const d of got.filter((x) => x.kind === 'directory')) expect(d.end).toBeGreaterThan(d.entryOffset);
      });
    }
  });
}
