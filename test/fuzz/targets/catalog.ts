/** Catalogs (.pcat1, decoded): open, walk everything (bounded), look every listed path up again. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { CatalogReader, CatalogWriter } from '../../../src/catalog/index.js';
import { isPbsfsError } from '../../../src/errors.js';
import type { FuzzTarget, Seed } from '../framework.js';
import { vectorsDir } from '../paths.js';
import { check, filesBelow, rel } from './common.js';

const MAX_ITEMS = 20_000;

type Tree = { name: Uint8Array; kind: number; children: Tree[]; size: number; mtime: number };
const nameArb = fc.oneof(fc.uint8Array({ minLength: 0, maxLength: 12 }), fc.constantFrom('a', 'b', '.', '..', 'x/y').map((s) => Buffer.from(s)));
const leafArb = fc.record({
  name: nameArb,
  kind: fc.integer({ min: 2, max: 7 }),
  children: fc.constant([] as Tree[]),
  size: fc.oneof(fc.nat(), fc.constant(2 ** 53)),
  mtime: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
});
const treeArb: fc.Arbitrary<Tree> = fc.letrec<{ t: Tree }>((tie) => ({
  t: fc.oneof(
    { maxDepth: 5, depthIdentifier: 'cat' },
    leafArb,
    fc.record({
      name: nameArb,
      kind: fc.constant(0),
      children: fc.array(tie('t'), { maxLength: 4, depthIdentifier: 'cat' }),
      size: fc.constant(0),
      mtime: fc.constant(0),
    }),
  ),
})).t;

function writeTree(w: CatalogWriter, t: Tree): void {
  switch (t.kind) {
    case 0:
    case 1:
      w.startDirectory(t.name);
      for (const c of t.children) writeTree(w, c);
      w.endDirectory();
      return;
    case 2:
      return w.addFile(t.name, t.size, t.mtime);
    case 3:
      return w.addSymlink(t.name);
    case 4:
      return w.addHardlink(t.name);
    case 5:
      return w.addBlockDevice(t.name);
    case 6:
      return w.addCharDevice(t.name);
    default:
      return w.addFile(t.name, 0, 0);
  }
}

export const catalogTarget: FuzzTarget = {
  name: 'catalog',
  description: 'catalog reader (open, walk, lookupPath)',
  async prepare() {
    const seeds: Seed[] = filesBelow(join(vectorsDir, 'datastore', 'manifests'), (n) => n.endsWith('.pcat1')).map((p) => {
      const data = readFileSync(p);
      return { name: rel(p), data };
    });
    const structured = fc.array(treeArb, { maxLength: 4 }).map((roots) => {
      const w = new CatalogWriter();
      try {
        w.startDirectory('root.pxar.didx');
        for (const r of roots) writeTree(w, r);
        w.endDirectory();
        return w.finish();
      } catch {
        return Buffer.alloc(0); // the writer refused the names (not what is fuzzed here)
      }
    });
    return {
      seeds,
      structured,
      async decode(input) {
        const reader = await CatalogReader.fromBuffer(input, 'fuzz/catalog.pcat1');
        let n = 0;
        const paths: Buffer[] = [];
        for await (const item of reader.walk()) {
          if (paths.length < 64) paths.push(Buffer.from(item.path));
          if (++n >= MAX_ITEMS) break;
        }
        for (const p of paths) {
          // Damaged catalogs may hide a listed path (a name with '/', a duplicate): typed errors only.
          try {
            const e = await reader.lookupPath(p);
            check(e !== undefined, 'lookupPath returned nothing');
          } catch (err) {
            if (!isPbsfsError(err)) throw err;
          }
        }
        await reader.readDir(reader.root());
      },
    };
  },
};
