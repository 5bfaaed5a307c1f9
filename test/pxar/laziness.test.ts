import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import type { PxarEntry } from '../../src/pxar/types.js';
import { pxarDir } from '../helpers/paths.js';
import { CountingReadAt } from './counting.js';
import { loadListing, pathBytes } from './listing.js';

/** Read-ahead slack the accessor may read past an entry's last item (its per-entry window). */
const SLACK = 512;

describe('lookups read only the directories on their path', () => {
  const opened: FileReadAt[] = [];
  let v1: FileReadAt;
  let meta: FileReadAt;
  let payload: FileReadAt;
  beforeAll(async () => {
    v1 = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
    meta = await FileReadAt.open(join(pxarDir, 'archive-v2.mpxar'));
    payload = await FileReadAt.open(join(pxarDir, 'archive-v2.ppxar'));
    opened.push(v1, meta, payload);
  });
  afterAll(async () => {
    for (const f of opened) await f.close();
  });

  it('every byte read for a lookup lies in the root directory record or a directory on the path', async () => {
    const listing = loadListing('v1');
    // Ground truth from an independent accessor: the range of every entry on each path.
    const truth = await PxarAccessor.open(v1);
    for (const exp of listing.filter((e) => e.path.split('/').length >= 3)) {
      const counting = new CountingReadAt(v1);
      const acc = await PxarAccessor.open(counting);
      counting.reset();
      const path = pathBytes(exp);
      const found = await acc.lookupPath(path);
      expect(found, exp.path).toBeDefined();

      // Allowed: the root's GOODBYE item, and [FILENAME, end + slack) of each entry on the path.
      const rootDir = await truth.openDir(truth.root());
      const allowed: [number, number][] = [[rootDir.goodbyeStart, v1.size]];
      const comps = path.toString('latin1').split('/').filter((c) => c !== '');
      let cur: PxarEntry = truth.root();
      for (const c of comps) {
        cur = (await truth.lookup(cur, Buffer.from(c, 'latin1')))!;
        const end = cur.kind === 'directory' ? cur.end : Math.max(cur.end, cur.filenameOffset + SLACK);
        allowed.push([cur.filenameOffset, end]);
      }
      for (const r of counting.reads) {
        const ok = allowed.some(([a, b]) => r.offset >= a && r.offset + r.length <= b);
        expect(ok, `${exp.path}: read [${r.offset}, +${r.length}) outside ${JSON.stringify(allowed)}`).toBe(true);
      }
      // Never the bulk data of the big files.
      expect(counting.bytes, exp.path).toBeLessThan(64 * 1024);
    }
  });

  it('a split-archive lookup never touches the payload stream; reading the file touches only its bytes', async () => {
    const m = new CountingReadAt(meta);
    const p = new CountingReadAt(payload);
    const acc = await PxarAccessor.open(m, p);
    // Opening and browsing never touch the payload stream.
    expect(p.reads).toEqual([]);
    m.reset();
    const e = await acc.lookupPath('/nested/a/b/c/d/deep.txt');
    expect(e?.kind).toBe('file');
    expect(p.reads).toEqual([]);
    expect(m.bytes).toBeLessThan(8 * 1024);
    await acc.read(e!, 0, 1 << 20);
    // The stream's start and tail markers (first use only), the PAYLOAD header, the data.
    expect(p.reads).toEqual([
      { offset: 0, length: 16 },
      { offset: payload.size - 16, length: 16 },
      { offset: e!.payloadOffset!, length: 16 },
      { offset: e!.payloadOffset! + 16, length: e!.size },
    ]);
    p.reset();
    const other = await acc.lookupPath('/hello.txt');
    await acc.read(other!, 0, 100);
    expect(p.reads).toEqual([
      { offset: other!.payloadOffset!, length: 16 },
      { offset: other!.payloadOffset! + 16, length: other!.size },
    ]);
  });

  it('listing a directory reads no file contents', async () => {
    const c = new CountingReadAt(v1);
    const acc = await PxarAccessor.open(c);
    c.reset();
    const entries = await acc.readdir(acc.root());
    expect(entries.length).toBeGreaterThan(5);
    const big = entries.filter((e) => e.kind === 'file' && e.size >= 64 * 1024);
    expect(big.length).toBeGreaterThan(0);
    for (const r of c.reads) {
      for (const b of big) {
        // May touch a window's worth at the start of the data (read-ahead), never the bulk.
        const overlap = Math.min(r.offset + r.length, b.contentOffset! + b.size) - Math.max(r.offset, b.contentOffset!);
        expect(overlap).toBeLessThanOrEqual(16 * 1024);
      }
    }
    expect(c.bytes).toBeLessThan(200 * 1024);
  });
});
