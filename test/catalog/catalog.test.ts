import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  CATALOG_MAGIC,
  CatalogReader,
  CatalogWriter,
  MAX_CATALOG_DEPTH,
  decodeVi64,
  decodeVu64,
  encodeVi64,
  encodeVu64,
  type CatalogEntry,
} from '../../src/catalog/index.js';
import { FormatError, LimitError, NotFoundError, PbsfsError, UsageError } from '../../src/errors.js';
import { upstreamDir, vectorsDir } from '../helpers/paths.js';

interface VarintVector {
  value: string;
  hex: string;
}
const catalogVectors = JSON.parse(readFileSync(join(upstreamDir, 'catalog-vectors.json'), 'utf8')) as {
  varint_u64: VarintVector[];
  varint_i64: VarintVector[];
  catalog_example: { writer_calls: string[]; hex: string; length: number };
};

interface ListingItem {
  path: string;
  path_hex: string;
  type: string;
  start?: number;
  size?: number;
  mtime?: number;
}
interface CatalogFileExpect {
  archive_sha256: string;
  archive_size: number;
  catalog_listing: ListingItem[];
  catalog_plain_copy: string;
}
const datastoreExpected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as {
  snapshots: { path: string; files: Record<string, Partial<CatalogFileExpect>> }[];
};
const vectorCatalogs = datastoreExpected.snapshots
  .filter((s) => s.files['catalog.pcat1.didx']?.catalog_listing !== undefined)
  .map((s) => ({ snapshot: s.path, ...(s.files['catalog.pcat1.didx'] as CatalogFileExpect) }));

const NAME = 'test.pcat1';

function toListing(items: { path: Buffer; entry: CatalogEntry }[]): ListingItem[] {
  return items.map(({ path, entry }) => {
    const o: ListingItem = { path: path.toString('utf8'), path_hex: path.toString('hex'), type: entry.type };
    if (entry.type === 'd') o.start = entry.start;
    if (entry.type === 'f') {
      o.size = entry.size;
      o.mtime = entry.mtime;
    }
    return o;
  });
}

function normalise(l: ListingItem[]): Omit<ListingItem, 'path'>[] {
  return l.map(({ path_hex, type, start, size, mtime }) => ({
    path_hex,
    type,
    ...(start !== undefined ? { start } : {}),
    ...(size !== undefined ? { size, mtime } : {}),
  }));
}

/** Replays a pre-order listing (stored order) as writer calls, the way a client walk would. */
function rebuild(listing: ListingItem[]): Buffer {
  const w = new CatalogWriter();
  const open: string[] = []; // hex paths of open directories
  for (const item of listing) {
    const bytes = Buffer.from(item.path_hex, 'hex');
    const slash = bytes.lastIndexOf(0x2f);
    const parent = slash < 0 ? '' : bytes.subarray(0, slash).toString('hex');
    const name = slash < 0 ? bytes : bytes.subarray(slash + 1);
    while ((open[open.length - 1] ?? '') !== parent) {
      w.endDirectory();
      open.pop();
    }
    switch (item.type) {
      case 'd':
        w.startDirectory(name);
        open.push(item.path_hex);
        break;
      case 'f':
        w.addFile(name, item.size!, item.mtime!);
        break;
      case 'l':
        w.addSymlink(name);
        break;
      case 'h':
        w.addHardlink(name);
        break;
      case 'b':
        w.addBlockDevice(name);
        break;
      case 'c':
        w.addCharDevice(name);
        break;
      case 'p':
        w.addFifo(name);
        break;
      case 's':
        w.addSocket(name);
        break;
      default:
        throw new Error(`unknown type ${item.type}`);
    }
  }
  while (open.length > 0) {
    w.endDirectory();
    open.pop();
  }
  return w.finish();
}

async function listBytes(data: Buffer): Promise<ListingItem[]> {
  const r = await CatalogReader.fromBuffer(data, NAME);
  return toListing(await r.list());
}

/** Builds a catalog from raw blocks: blocks[i] is written in order; the last is the root. */
function assemble(blocks: Buffer[]): Buffer {
  let pos = CATALOG_MAGIC.length;
  const parts: Buffer[] = [CATALOG_MAGIC];
  let rootAt = 0;
  for (const b of blocks) {
    rootAt = pos;
    parts.push(b);
    pos += b.length;
  }
  const t = Buffer.alloc(8);
  t.writeBigUInt64LE(BigInt(rootAt));
  parts.push(t);
  return Buffer.concat(parts);
}

function block(table: Buffer): Buffer {
  return Buffer.concat([encodeVu64(table.length), table]);
}

function entry(type: string, name: string, ...rest: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from(type), encodeVu64(Buffer.byteLength(name)), Buffer.from(name), ...rest]);
}

async function expectTyped(data: Buffer, kind: new (...a: never[]) => PbsfsError, pattern?: RegExp): Promise<void> {
  const p = listBytes(data);
  await expect(p).rejects.toBeInstanceOf(kind);
  await expect(p).rejects.toThrow(NAME);
  if (pattern) await expect(p).rejects.toThrow(pattern);
}

describe('catalog varints', () => {
  it('encodes and decodes the upstream vu64 vectors', () => {
    for (const v of catalogVectors.varint_u64) {
      expect(encodeVu64(BigInt(v.value)).toString('hex')).toBe(v.hex);
      const d = decodeVu64(Buffer.from(v.hex, 'hex'), 0);
      expect(d.value).toBe(BigInt(v.value));
      expect(d.length).toBe(v.hex.length / 2);
    }
  });

  it('encodes and decodes the upstream vi64 vectors', () => {
    for (const v of catalogVectors.varint_i64) {
      expect(encodeVi64(BigInt(v.value)).toString('hex')).toBe(v.hex);
      const d = decodeVi64(Buffer.from(v.hex, 'hex'), 0);
      expect(d.value).toBe(BigInt(v.value));
      expect(d.length).toBe(v.hex.length / 2);
    }
  });

  it('round-trips any 64-bit value', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => decodeVu64(encodeVu64(v), 0).value === v),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), (v) => decodeVi64(encodeVi64(v), 0).value === v),
    );
  });

  it('refuses truncated, unterminated and oversized encodings with the file and offset', () => {
    const ctx = { file: NAME };
    expect(() => decodeVu64(Buffer.from('8080', 'hex'), 0, ctx)).toThrow(FormatError);
    expect(() => decodeVu64(Buffer.from('8080', 'hex'), 0, ctx)).toThrow(/test\.pcat1 at offset 0: truncated/);
    expect(() => decodeVu64(Buffer.alloc(12, 0xff), 0, ctx)).toThrow(/no end marker/);
    // 10 bytes whose last group carries more than the 64th bit
    expect(() => decodeVu64(Buffer.from('ffffffffffffffffff02', 'hex'), 0, ctx)).toThrow(/exceeds 64 bits/);
    expect(() => decodeVi64(Buffer.alloc(12, 0xff), 0, ctx)).toThrow(/no end marker/);
    // 2^63 as a positive vi64 does not fit
    expect(() => decodeVi64(encodeVu64(1n << 63n), 0, ctx)).toThrow(/above 2\^63-1/);
    // magnitude 2^63 + 1, negative
    const tooNeg = Buffer.concat([encodeVu64((1n << 63n) + 1n).map((b, i, a) => (i === a.length - 1 ? b | 0x80 : b)), Buffer.of(0)]);
    expect(() => decodeVi64(Buffer.from(tooNeg), 0, ctx)).toThrow(/below -2\^63/);
    expect(() => decodeVi64(Buffer.from('80', 'hex'), 3, ctx, 100)).toThrow(/at offset 103/);
  });
});

describe('catalog writer', () => {
  it('reproduces the upstream worked example byte for byte', () => {
    const ex = catalogVectors.catalog_example;
    const w = new CatalogWriter();
    w.startDirectory('root.pxar.didx');
    w.addFile('hello.txt', 6, 1593179765);
    w.startDirectory('etc');
    w.addFile('hostname', 5, -1);
    w.addSymlink('link');
    w.endDirectory();
    w.addFifo('fifo');
    w.endDirectory();
    const out = w.finish();
    expect(ex.writer_calls).toHaveLength(9);
    expect(out.length).toBe(ex.length);
    expect(out.toString('hex')).toBe(ex.hex);
    expect(w.size).toBe(ex.length);
  });

  it('streams through onData with the same bytes', () => {
    const pieces: Buffer[] = [];
    const w = new CatalogWriter({ onData: (b) => pieces.push(Buffer.from(b)) });
    w.startDirectory('root.pxar.didx');
    w.addFile('hello.txt', 6, 1593179765);
    w.startDirectory('etc');
    w.addFile('hostname', 5, -1);
    w.addSymlink('link');
    w.endDirectory();
    w.addFifo('fifo');
    w.endDirectory();
    expect(w.finish().length).toBe(0);
    expect(Buffer.concat(pieces).toString('hex')).toBe(catalogVectors.catalog_example.hex);
  });

  it('writes an empty root as 01 00', () => {
    const out = new CatalogWriter().finish();
    expect(out.toString('hex')).toBe(CATALOG_MAGIC.toString('hex') + '0100' + '0800000000000000');
  });

  it('rebuilds every vector catalog byte for byte from its listing', () => {
    expect(vectorCatalogs.length).toBeGreaterThan(0);
    for (const c of vectorCatalogs) {
      const data = readFileSync(join(vectorsDir, 'datastore', c.catalog_plain_copy));
      expect(rebuild(c.catalog_listing).equals(data)).toBe(true);
    }
  });

  it('refuses misuse with usage errors', () => {
    const w = new CatalogWriter();
    expect(() => w.endDirectory()).toThrow(UsageError);
    expect(() => w.addFile('a/b', 1, 0)).toThrow(UsageError);
    expect(() => w.addFile('', 1, 0)).toThrow(UsageError);
    expect(() => w.addFile('x', -1, 0)).toThrow(UsageError);
    expect(() => w.addSymlink('a\0b')).toThrow(UsageError);
    expect(() => w.addSocket('x'.repeat(4096))).toThrow(UsageError);
    w.startDirectory('d');
    expect(() => w.finish()).toThrow(/1 directories still open/);
    w.endDirectory();
    w.finish();
    expect(() => w.addFifo('late')).toThrow(/already finished/);
  });
});

describe('catalog reader on the vector datastore', () => {
  it('lists each vector catalog exactly as upstream CatalogReader does', async () => {
    for (const c of vectorCatalogs) {
      const data = readFileSync(join(vectorsDir, 'datastore', c.catalog_plain_copy));
      expect(data.length).toBe(c.archive_size);
      expect(createHash('sha256').update(data).digest('hex')).toBe(c.archive_sha256);
      const listing = await listBytes(data);
      expect(normalise(listing)).toEqual(normalise(c.catalog_listing));
      expect(listing.map((l) => l.path)).toEqual(c.catalog_listing.map((l) => l.path));
    }
  });

  it('looks up paths, directories and missing names', async () => {
    const c = vectorCatalogs[0]!;
    const r = await CatalogReader.fromBuffer(readFileSync(join(vectorsDir, 'datastore', c.catalog_plain_copy)), NAME);
    const files = c.catalog_listing.filter((l) => l.type === 'f');
    for (const f of files) {
      const e = await r.lookupPath(Buffer.concat([Buffer.from('/'), Buffer.from(f.path_hex, 'hex')]));
      expect(e).toMatchObject({ type: 'f', size: f.size, mtime: f.mtime });
    }
    const dir = c.catalog_listing.find((l) => l.type === 'd' && l.path.includes('/'))!;
    expect(await r.lookupPath(dir.path + '/')).toMatchObject({ type: 'd', start: dir.start });
    expect(await r.lookupPath('/')).toMatchObject({ type: 'd', start: r.rootStart });
    await expect(r.lookupPath('/no-such-archive.didx')).rejects.toBeInstanceOf(NotFoundError);
    await expect(r.lookupPath(`/${files[0]!.path}/below-a-file`)).rejects.toThrow(/is not a directory/);
    const top = await r.readDir(r.root());
    expect(top.map((e) => e.name.toString())).toEqual(
      c.catalog_listing.filter((l) => !l.path.includes('/')).map((l) => l.path),
    );
  });

  it('never throws anything but a typed error on truncated or bit-flipped copies', async () => {
    const data = readFileSync(join(vectorsDir, 'datastore', vectorCatalogs[0]!.catalog_plain_copy));
    for (let len = 0; len < data.length; len++) {
      const cut = Buffer.from(data.subarray(0, len));
      await expect(listBytes(cut)).rejects.toBeInstanceOf(PbsfsError);
    }
    let failures = 0;
    for (let i = 0; i < data.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = Buffer.from(data);
        copy[i]! ^= 1 << bit;
        try {
          await listBytes(copy);
        } catch (e) {
          expect(e).toBeInstanceOf(PbsfsError);
          expect((e as Error).message).toContain(NAME);
          failures++;
        }
      }
    }
    expect(failures).toBeGreaterThan(0);
  });
});

describe('catalog reader on hostile input', () => {
  const emptyRoot = block(Buffer.of(0));

  it('checks magic, size and root offset', async () => {
    await expectTyped(Buffer.alloc(10), FormatError, /too small/);
    const good = assemble([emptyRoot]);
    const badMagic = Buffer.from(good);
    badMagic[0] = 0;
    await expectTyped(badMagic, FormatError, /not a catalog/);
    for (const root of [0n, 7n, BigInt(good.length - 8), 1n << 62n]) {
      const b = Buffer.from(good);
      b.writeBigUInt64LE(root, b.length - 8);
      await expectTyped(b, FormatError, /root offset/);
    }
    expect(await listBytes(good)).toEqual([]);
  });

  it('refuses an empty table, trailing bytes and tables past the data', async () => {
    await expectTyped(assemble([Buffer.of(0, 0)]), FormatError, /empty table/);
    await expectTyped(assemble([block(Buffer.of(0, 0x41))]), FormatError, /1 trailing bytes/);
    await expectTyped(assemble([Buffer.of(0x7f, 0)]), FormatError, /runs past the end/);
    await expectTyped(assemble([block(Buffer.concat([encodeVu64(1000n), entry('p', 'x')]))]), FormatError, /claims 1000 entries/);
    await expectTyped(assemble([block(Buffer.concat([encodeVu64(2n), entry('p', 'x'), Buffer.of(0x70)]))]), FormatError);
  });

  it('refuses bad entries: type, name length, names, sizes', async () => {
    await expectTyped(assemble([block(Buffer.concat([encodeVu64(1n), entry('z', 'x')]))]), FormatError, /unknown catalog entry type 0x7a/);
    const longName = Buffer.concat([encodeVu64(1n), Buffer.from('p'), encodeVu64(4096n), Buffer.alloc(4096, 0x61)]);
    await expectTyped(assemble([block(longName)]), FormatError, /too long/);
    const shortName = Buffer.concat([encodeVu64(1n), Buffer.from('p'), encodeVu64(5n), Buffer.from('ab')]);
    await expectTyped(assemble([block(shortName)]), FormatError, /past the end of the directory table/);
    for (const bad of ['a/b', '..', '.']) {
      await expectTyped(assemble([block(Buffer.concat([encodeVu64(1n), entry('p', bad)]))]), FormatError);
    }
    await expectTyped(assemble([block(Buffer.concat([encodeVu64(1n), entry('p', '')]))]), FormatError, /empty name/);
    const huge = Buffer.concat([encodeVu64(1n), entry('f', 'big', encodeVu64(1n << 60n), encodeVi64(0n))]);
    await expectTyped(assemble([block(huge)]), FormatError, /file size .* out of range/);
  });

  it('refuses directory pointers that do not go strictly backwards into the data', async () => {
    // back_offset 0 would point a block at itself
    await expectTyped(assemble([block(Buffer.concat([encodeVu64(1n), entry('d', 'self', encodeVu64(0n))]))]), FormatError, /points 0 bytes back/);
    await expectTyped(assemble([block(Buffer.concat([encodeVu64(1n), entry('d', 'far', encodeVu64(5000n))]))]), FormatError, /points 5000 bytes back/);
  });

  it('refuses two entries sharing one block (no exponential walks)', async () => {
    // Build a chain where every block has two entries pointing to the previous block.
    const blocks: Buffer[] = [block(Buffer.of(0))];
    let prevStart = 8;
    let pos = 8 + blocks[0]!.length;
    for (let i = 0; i < 40; i++) {
      const back = encodeVu64(BigInt(pos - prevStart));
      const b = block(Buffer.concat([encodeVu64(2n), entry('d', 'a', back), entry('d', 'b', back)]));
      blocks.push(b);
      prevStart = pos;
      pos += b.length;
    }
    await expectTyped(assemble(blocks), FormatError, /referenced twice/);
  });

  it('bounds the nesting depth', async () => {
    const w = new CatalogWriter();
    for (let i = 0; i <= MAX_CATALOG_DEPTH; i++) w.startDirectory('d');
    w.addFile('deep', 1, 0);
    for (let i = 0; i <= MAX_CATALOG_DEPTH; i++) w.endDirectory();
    await expectTyped(w.finish(), LimitError, /deeper than/);
  });

  it('round-trips random trees through writer and reader', async () => {
    type Node = { name: string; kind: 'f' | 'l' | 'h' | 'b' | 'c' | 'p' | 's'; size: number; mtime: number } | { name: string; kind: 'd'; children: Node[] };
    const nameArb = fc.stringMatching(/^[a-zA-Z0-9_. -]{1,12}$/).filter((s) => s !== '.' && s !== '..');
    const { tree } = fc.letrec<{ tree: Node; leaf: Node }>((tie) => ({
      leaf: fc.record({
        name: nameArb,
        kind: fc.constantFrom('f', 'l', 'h', 'b', 'c', 'p', 's') as fc.Arbitrary<'f'>,
        size: fc.nat(),
        mtime: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
      }),
      tree: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        tie('leaf'),
        fc.record({ name: nameArb, kind: fc.constant('d' as const), children: fc.array(tie('tree'), { maxLength: 5 }) }),
      ),
    }));
    await fc.assert(
      fc.asyncProperty(fc.array(tree, { maxLength: 6 }), async (nodes) => {
        const w = new CatalogWriter();
        const expected: ListingItem[] = [];
        const emit = (n: Node, prefix: string): void => {
          const path = prefix === '' ? n.name : `${prefix}/${n.name}`;
          if (n.kind === 'd') {
            expected.push({ path, path_hex: Buffer.from(path).toString('hex'), type: 'd' });
            w.startDirectory(n.name);
            for (const c of n.children) emit(c, path);
            w.endDirectory();
          } else {
            const item: ListingItem = { path, path_hex: Buffer.from(path).toString('hex'), type: n.kind };
            if (n.kind === 'f') {
              item.size = n.size;
              item.mtime = n.mtime;
              w.addFile(n.name, n.size, n.mtime);
            } else if (n.kind === 'l') w.addSymlink(n.name);
            else if (n.kind === 'h') w.addHardlink(n.name);
            else if (n.kind === 'b') w.addBlockDevice(n.name);
            else if (n.kind === 'c') w.addCharDevice(n.name);
            else if (n.kind === 'p') w.addFifo(n.name);
            else w.addSocket(n.name);
            expected.push(item);
          }
        };
        w.startDirectory('root.pxar.didx');
        expected.push({ path: 'root.pxar.didx', path_hex: Buffer.from('root.pxar.didx').toString('hex'), type: 'd' });
        for (const n of nodes) emit(n, 'root.pxar.didx');
        w.endDirectory();
        const got = await listBytes(w.finish());
        expect(got.map(({ start: _s, ...rest }) => rest)).toEqual(expected);
      }),
      { numRuns: 100 },
    );
  });
});
