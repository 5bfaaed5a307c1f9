/**
 * pxar archives: the random-access accessor (metadata stream; readdir, lookup, hardlinks, file
 * reads over the whole tree), the sequential decoder, and a hostile payload stream (.ppxar)
 * behind the valid vector metadata stream (.mpxar). Every walk is bounded in entries and bytes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { isPbsfsError } from '../../../src/errors.js';
import { BufferReadAt, type ReadAt } from '../../../src/io/read-at.js';
import { PxarAccessor } from '../../../src/pxar/accessor.js';
import { PxarSequentialDecoder } from '../../../src/pxar/sequential.js';
import type { PxarEntry } from '../../../src/pxar/types.js';
import { buildV1, type Node } from '../../pxar/build.js';
import type { FuzzTarget, Seed } from '../framework.js';
import { pxarDir } from '../paths.js';
import { check } from './common.js';

const MAX_ENTRIES = 4000;
const MAX_READ = 64 * 1024;
const MAX_BYTES = 4 * 1024 * 1024;

/** Item boundaries of a valid archive (from our own sequential decoder), as mutation hot spots. */
async function hotSpots(meta: Buffer, payload?: Buffer): Promise<number[]> {
  const hot = new Set<number>([0, 16, meta.length - 24, meta.length - 16, meta.length - 8]);
  const dec = await PxarSequentialDecoder.open(
    new BufferReadAt('seed', meta),
    payload ? new BufferReadAt('seed.ppxar', payload) : undefined,
  );
  for await (const e of dec.entries()) {
    for (const p of [e.filenameOffset, e.entryOffset, e.entryOffset + 8, e.end - 8, e.end - 16, e.end - 24, e.end - 40]) if (p >= 0) hot.add(p);
    if (e.contentOffset !== undefined) hot.add(e.contentOffset - 8);
  }
  return [...hot].filter((p) => p >= 0 && p < meta.length).sort((a, b) => a - b);
}

/** Payload header offsets of the split vector archive, from the upstream listing. */
function payloadHotSpots(): number[] {
  const listing = JSON.parse(readFileSync(join(pxarDir, 'archive-v2.listing.json'), 'utf8')) as { payload_offset?: number; size?: number }[];
  const hot = new Set<number>([0, 8]);
  for (const e of listing) {
    if (e.payload_offset === undefined) continue;
    for (const d of [0, 8, 16]) hot.add(e.payload_offset + d);
    if (e.size !== undefined) hot.add(e.payload_offset + 16 + e.size);
  }
  return [...hot].sort((a, b) => a - b);
}

interface Budget {
  entries: number;
  bytes: number;
}

async function readFile(read: (e: PxarEntry, off: number, len: number) => Promise<Buffer>, e: PxarEntry, b: Budget): Promise<void> {
  const want = Math.min(e.size, MAX_READ);
  if (b.bytes + want > MAX_BYTES) return;
  b.bytes += want;
  const head = await read(e, 0, want);
  check(head.length <= want, `read returned ${head.length} bytes for ${want} asked`);
  if (e.size > MAX_READ) {
    const tail = await read(e, e.size - 1024, 4096);
    check(tail.length <= 1024, `read past the end returned ${tail.length} bytes`);
  }
}

/** Breadth-first walk: readdir, lookup of each listed name, hardlink resolution, file reads. */
async function walkAccessor(acc: PxarAccessor): Promise<void> {
  const b: Budget = { entries: 0, bytes: 0 };
  const queue: PxarEntry[] = [acc.root()];
  while (queue.length > 0) {
    const dir = queue.shift()!;
    const kids = await acc.readdir(dir);
    for (const k of kids) {
      if (++b.entries > MAX_ENTRIES) return;
      const again = await acc.lookup(dir, k.name);
      if (again !== undefined) check(again.name.equals(k.name), 'lookup returned an entry with another name');
      if (k.kind === 'directory') queue.push(k);
      else if (k.kind === 'file' || k.kind === 'hardlink') {
        try {
          const target = await acc.resolve(k);
          check(target.kind === 'file', `hardlink resolved to a ${target.kind}`);
          await readFile((e, o, l) => acc.read(e, o, l), target, b);
        } catch (e) {
          if (!isPbsfsError(e)) throw e; // keep walking: one bad file must not hide the rest
        }
      }
    }
  }
  await acc.lookupPath('/a/b/../c').catch((e: unknown) => {
    if (!isPbsfsError(e)) throw e;
  });
}

async function walkSequential(dec: PxarSequentialDecoder): Promise<void> {
  const b: Budget = { entries: 0, bytes: 0 };
  for await (const e of dec.entries()) {
    if (++b.entries > MAX_ENTRIES) return;
    if (e.kind === 'file') await readFile((x, o, l) => dec.read(x, o, l), e, b);
  }
}

async function both(meta: ReadAt, payload?: ReadAt): Promise<void> {
  let first: unknown;
  try {
    await walkAccessor(await PxarAccessor.open(meta, payload, { cacheEntries: 256, cacheTableBytes: 1 << 20 }));
  } catch (e) {
    first = e;
  }
  await walkSequential(await PxarSequentialDecoder.open(meta, payload, { blockSize: 64 * 1024 }));
  if (first !== undefined) throw first;
}

type TreeNode = Node;
const pxName = fc.oneof(
  fc.constantFrom('a', 'b', 'c', 'dir', '.hidden', 'x'.repeat(255), 'é', 'a b'),
  fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => Buffer.from(b.map((c) => (c === 0 || c === 0x2f ? 0x41 : c)))),
);
const treeArb: fc.Arbitrary<TreeNode> = fc.letrec<{ n: TreeNode }>((tie) => ({
  n: fc.oneof(
    { depthIdentifier: 'px', maxDepth: 4 },
    fc.record({ kind: fc.constant('file' as const), name: pxName, data: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) }),
    fc.record({ kind: fc.constant('symlink' as const), name: pxName, target: fc.constantFrom('/etc', '../x', 'a') }),
    fc.record({ kind: fc.constant('dir' as const), name: pxName, children: fc.array(tie('n'), { maxLength: 5, depthIdentifier: 'px' }) }),
  ),
})).n;
const archiveArb = fc
  .array(treeArb, { maxLength: 6 })
  .map((children) => buildV1({ kind: 'dir', name: '', children }));

async function metaSeeds(): Promise<Seed[]> {
  const v1 = readFileSync(join(pxarDir, 'archive-v1.pxar'));
  const v2 = readFileSync(join(pxarDir, 'archive-v2.mpxar'));
  return [
    { name: 'pxar/archive-v1.pxar', data: v1, hot: await hotSpots(v1), weight: 1 },
    { name: 'pxar/archive-v2.mpxar', data: v2, hot: await hotSpots(v2, readFileSync(join(pxarDir, 'archive-v2.ppxar'))), weight: 2 },
  ];
}

export const pxarAccessorTarget: FuzzTarget = {
  name: 'pxar-accessor',
  description: 'pxar random access: whole-tree readdir/lookup/read (metadata stream)',
  async prepare() {
    return {
      seeds: await metaSeeds(),
      structured: archiveArb,
      maxInputBytes: 16 * 1024 * 1024,
      async decode(input) {
        const acc = await PxarAccessor.open(new BufferReadAt('fuzz/archive.pxar', input), undefined, { cacheEntries: 256, cacheTableBytes: 1 << 20 });
        await walkAccessor(acc);
      },
    };
  },
};

export const pxarSequentialTarget: FuzzTarget = {
  name: 'pxar-sequential',
  description: 'pxar sequential decoder: every entry, file heads read',
  async prepare() {
    return {
      seeds: await metaSeeds(),
      structured: archiveArb,
      maxInputBytes: 16 * 1024 * 1024,
      async decode(input) {
        await walkSequential(await PxarSequentialDecoder.open(new BufferReadAt('fuzz/archive.pxar', input), undefined, { blockSize: 64 * 1024 }));
      },
    };
  },
};

export const pxarPayloadTarget: FuzzTarget = {
  name: 'pxar-payload',
  description: 'split pxar: hostile .ppxar behind the valid vector .mpxar (accessor and sequential)',
  async prepare() {
    const meta = readFileSync(join(pxarDir, 'archive-v2.mpxar'));
    const payload = readFileSync(join(pxarDir, 'archive-v2.ppxar'));
    const metaAt = new BufferReadAt('archive-v2.mpxar', meta);
    return {
      seeds: [{ name: 'pxar/archive-v2.ppxar', data: payload, hot: payloadHotSpots() }],
      maxInputBytes: 16 * 1024 * 1024,
      async decode(input) {
        await both(metaAt, new BufferReadAt('fuzz/archive.ppxar', input));
      },
    };
  },
};
