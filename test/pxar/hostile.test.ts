import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError, LimitError, PbsfsError } from '../../src/errors.js';
import { BufferReadAt, type ReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { PXAR } from '../../src/pxar/format.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import type { PxarEntry } from '../../src/pxar/types.js';
import { pxarDir } from '../helpers/paths.js';
import { buildV1, type Node } from './build.js';
import { RICH_V1 } from './spec-examples.js';

const V1 = readFileSync(join(pxarDir, 'archive-v1.pxar'));
const META = readFileSync(join(pxarDir, 'archive-v2.mpxar'));
const PAYLOAD = readFileSync(join(pxarDir, 'archive-v2.ppxar'));

/** Opens, lists every directory, resolves every hardlink and reads every file. */
async function walkAccessor(archive: ReadAt, payload?: ReadAt): Promise<number> {
  const acc = await PxarAccessor.open(archive, payload);
  const stack: PxarEntry[] = [acc.root()];
  let n = 0;
  while (stack.length > 0) {
    const d = stack.pop()!;
    for (const e of await acc.readdir(d)) {
      n++;
      if (e.kind === 'directory') stack.push(e);
      if (e.kind === 'file' || e.kind === 'hardlink') for await (const _ of acc.stream(e)) void _;
      await acc.lookup(d, e.name);
    }
  }
  return n;
}

async function walkSequential(archive: ReadAt, payload?: ReadAt): Promise<number> {
  const dec = await PxarSequentialDecoder.open(archive, payload, { blockSize: 4096 });
  let n = 0;
  for await (const e of dec.entries()) {
    n++;
    if (e.kind === 'file') for await (const _ of dec.stream(e)) void _;
  }
  return n;
}

/** Either succeeds or fails with a typed error that names the archive; nothing else. */
async function typedOrOk(p: Promise<unknown>, name: string | RegExp): Promise<'ok' | PbsfsError> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (!(e instanceof PbsfsError)) throw new Error(`untyped error escaped: ${String(e)}`, { cause: e });
    if (typeof name === 'string') expect(e.message).toContain(name);
    else expect(e.message).toMatch(name);
    return e;
  }
}

function mutate(buf: Buffer, f: (b: Buffer) => void): Buffer {
  const b = Buffer.from(buf);
  f(b);
  return b;
}

describe('hostile pxar input', () => {
  it('the intact vectors walk cleanly (baseline)', async () => {
    expect(await walkAccessor(new BufferReadAt('v1', V1))).toBe(53);
    expect(await walkSequential(new BufferReadAt('v1', V1))).toBe(54);
    expect(await walkAccessor(new BufferReadAt('m', META), new BufferReadAt('p', PAYLOAD))).toBe(53);
  });

  it('rejects every truncation of the metadata archive with a typed error', async () => {
    const p = new BufferReadAt('trunc.ppxar', PAYLOAD);
    for (let cut = 0; cut < META.length; cut += 17) {
      const a = new BufferReadAt('trunc.mpxar', META.subarray(0, cut));
      const r1 = await typedOrOk(walkAccessor(a, p), 'trunc.mpxar');
      expect(r1, `accessor, cut ${cut}`).toBeInstanceOf(PbsfsError);
      const r2 = await typedOrOk(walkSequential(a, p), 'trunc.mpxar');
      expect(r2, `sequential, cut ${cut}`).toBeInstanceOf(PbsfsError);
    }
  });

  it('rejects truncations of the unified archive and of the payload stream', async () => {
    const step = Math.floor(V1.length / 150);
    for (let cut = 1; cut < V1.length; cut += step) {
      const a = new BufferReadAt('trunc.pxar', V1.subarray(0, cut));
      expect(await typedOrOk(walkAccessor(a), 'trunc.pxar'), `cut ${cut}`).toBeInstanceOf(PbsfsError);
      expect(await typedOrOk(walkSequential(a), 'trunc.pxar'), `cut ${cut}`).toBeInstanceOf(PbsfsError);
    }
    const m = new BufferReadAt('m.mpxar', META);
    for (let cut = 0; cut < PAYLOAD.length; cut += Math.floor(PAYLOAD.length / 40)) {
      const p = new BufferReadAt('cut.ppxar', PAYLOAD.subarray(0, cut));
      expect(await typedOrOk(walkAccessor(m, p), 'ppxar'), `cut ${cut}`).toBeInstanceOf(PbsfsError);
    }
  });

  it('survives random byte corruption of the metadata archive (typed error or success, never a crash)', async () => {
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const p = new BufferReadAt('p.ppxar', PAYLOAD);
    let failures = 0;
    for (let i = 0; i < 200; i++) {
      const bad = mutate(META, (b) => {
        for (let k = 0; k < 1 + rnd(4); k++) {
          const at = rnd(b.length);
          b[at] = b[at]! ^ (1 << rnd(8));
        }
      });
      const a = new BufferReadAt('flip.mpxar', bad);
      if ((await typedOrOk(walkAccessor(a, p), /flip\.mpxar|p\.ppxar/)) !== 'ok') failures++;
      if ((await typedOrOk(walkSequential(a, p), /flip\.mpxar|p\.ppxar/)) !== 'ok') failures++;
    }
    expect(failures).toBeGreaterThan(0);
  });

  it('rejects flipped goodbye offsets and sizes', async () => {
    // §15.3 root table records start at 0x239; each is hash, offset, size.
    for (const [at, value] of [
      [0x239 + 8, 0xffffffffn], // record offset outside the directory
      [0x239 + 8, 0n], // offset 0: the goodbye itself
      [0x239 + 8, 0x10n], // not a FILENAME
      [0x281 + 16, 0xffffn], // directory record size beyond the parent
      [0x299 + 16, 0x1000n], // tail size larger than the archive
      [0x299 + 16, 0x89n], // tail size not 16 + 24n
      [0x299 + 8, 0x999n], // tail offset before the archive start
      [0x299 + 8, 0x10n], // tail offset disagrees with the root entry
      [0x299, 0n], // no tail marker
    ] as const) {
      const bad = mutate(RICH_V1, (b) => b.writeBigUInt64LE(value, at));
      const r = await typedOrOk(walkAccessor(new BufferReadAt('gb.pxar', bad)), 'gb.pxar');
      expect(r, `patch at 0x${at.toString(16)}`).toBeInstanceOf(FormatError);
      // The sequential decoder checks the tails (not the records, which it does not use).
      if (at >= 0x299) {
        const s = await typedOrOk(walkSequential(new BufferReadAt('gb.pxar', bad)), 'gb.pxar');
        expect(s, `sequential, patch at 0x${at.toString(16)}`).toBeInstanceOf(FormatError);
      }
    }
    // A record whose hash does not match its name: lookups cannot find it, listings refuse it.
    const wrongHash = mutate(RICH_V1, (b) => b.writeBigUInt64LE(0x1234n, 0x239));
    const acc = await PxarAccessor.open(new BufferReadAt('hash.pxar', wrongHash));
    expect(await acc.lookupPath('a.txt')).toBeUndefined();
    await expect(acc.readdir(acc.root())).rejects.toThrow(/hash/);
    // The sub-directory's tail pointing at the wrong entry.
    const bad = mutate(RICH_V1, (b) => b.writeBigUInt64LE(0x10n, 0x181 + 8));
    expect(await typedOrOk(walkAccessor(new BufferReadAt('gb.pxar', bad)), 'gb.pxar')).toBeInstanceOf(FormatError);
    expect(await typedOrOk(walkSequential(new BufferReadAt('gb.pxar', bad)), 'gb.pxar')).toBeInstanceOf(FormatError);
  });

  it('rejects bad names: empty, ".", "..", "/", NUL, missing terminator', async () => {
    for (const name of ['', '.', '..', 'a/b', 'a\0b']) {
      const tree: Node & { kind: 'dir' } = { kind: 'dir', name: '', children: [{ kind: 'file', name, data: 'x' }] };
      const a = new BufferReadAt('names.pxar', buildV1(tree));
      const r1 = await typedOrOk(walkAccessor(a), 'names.pxar');
      expect(r1, JSON.stringify(name)).toBeInstanceOf(FormatError);
      const r2 = await typedOrOk(walkSequential(a), 'names.pxar');
      expect(r2, JSON.stringify(name)).toBeInstanceOf(FormatError);
      expect((r2 as FormatError).message).toMatch(/at offset \d+/);
    }
    // "a.txt\0" -> "a.txtX": no terminating zero.
    const bad = mutate(RICH_V1, (b) => (b[0x4d] = 0x58));
    expect(await typedOrOk(walkSequential(new BufferReadAt('nz.pxar', bad)), 'nz.pxar')).toBeInstanceOf(FormatError);
    expect(await typedOrOk(walkAccessor(new BufferReadAt('nz.pxar', bad)), 'nz.pxar')).toBeInstanceOf(FormatError);
  });

  it('rejects hardlinks to themselves, outside the archive, or to a non-file', async () => {
    // §15.3: HARDLINK of "h" at 0x1ab, its offset u64 at 0x1bb; FILENAME "h" at 0x199.
    for (const [value, what] of [
      [0n, /itself/],
      [0x199n + 1n, /before the start/],
      [0x199n - 0x9bn, /directory, not a regular file/], // FILENAME "d"
      [0x199n - 0xfdn + 0x10n, /FILENAME|unknown type/], // into the middle of an item
    ] as const) {
      const bad = mutate(RICH_V1, (b) => b.writeBigUInt64LE(value, 0x1bb));
      const r = await typedOrOk(walkAccessor(new BufferReadAt('hl.pxar', bad)), 'hl.pxar');
      expect(r, String(value)).toBeInstanceOf(FormatError);
      expect((r as FormatError).message).toMatch(what);
    }
  });

  it('rejects payload references outside the payload stream or at a wrong header', async () => {
    // First PAYLOAD_REF in the metadata stream.
    const refType = Buffer.alloc(8);
    refType.writeBigUInt64LE(PXAR.PAYLOAD_REF);
    const at = META.indexOf(refType) + 16;
    expect(at).toBeGreaterThan(16);
    for (const [off, size, what] of [
      [BigInt(PAYLOAD.length), 11n, /outside the payload stream/],
      [BigInt(PAYLOAD.length - 20), 11n, /outside the payload stream/],
      [0n, 11n, /PAYLOAD_START_MARKER instead of a PAYLOAD/],
      [16n, 12n, /does not match/],
      [1n << 60n, 1n, /too large/],
    ] as const) {
      const bad = mutate(META, (b) => {
        b.writeBigUInt64LE(off, at);
        b.writeBigUInt64LE(size, at + 8);
      });
      const r = await typedOrOk(walkAccessor(new BufferReadAt('ref.mpxar', bad), new BufferReadAt('ref.ppxar', PAYLOAD)), /ref\.mpxar/);
      expect(r, `${off}`).toBeInstanceOf(FormatError);
      expect((r as FormatError).message).toMatch(what);
    }
    // A payload stream without its start marker.
    const noStart = mutate(PAYLOAD, (b) => b.fill(0, 0, 8));
    const r = await typedOrOk(walkAccessor(new BufferReadAt('m.mpxar', META), new BufferReadAt('x.ppxar', noStart)), 'x.ppxar');
    expect(r).toBeInstanceOf(FormatError);
    expect((r as FormatError).message).toMatch(/PAYLOAD_START_MARKER/);
    const noTail = mutate(PAYLOAD, (b) => b.fill(0, b.length - 16, b.length - 8));
    expect(await typedOrOk(walkSequential(new BufferReadAt('m.mpxar', META), new BufferReadAt('y.ppxar', noTail)), 'y.ppxar')).toBeInstanceOf(
      FormatError,
    );
  });

  it('caps absurd nesting without recursion or hangs', async () => {
    let tree: Node & { kind: 'dir' } = { kind: 'dir', name: 'leaf', children: [{ kind: 'file', name: 'f', data: 'deep' }] };
    for (let i = 0; i < 1500; i++) tree = { kind: 'dir', name: 'd', children: [tree] };
    const root = { kind: 'dir' as const, name: '', children: [tree] };
    const a = new BufferReadAt('deep.pxar', buildV1(root));
    const r = await typedOrOk(walkSequential(a), 'deep.pxar');
    expect(r).toBeInstanceOf(LimitError);
    const acc = await PxarAccessor.open(a);
    const deepPath = `${'d/'.repeat(1501)}leaf/f`;
    await expect(acc.lookupPath(deepPath)).rejects.toBeInstanceOf(LimitError);
    // Within the cap the same archive works: 1000 levels.
    const okPath = `${'d/'.repeat(1000)}`;
    expect((await acc.lookupPath(okPath))?.kind).toBe('directory');
  });

  it('refuses goodbye tables beyond the configured size', async () => {
    const tree: Node & { kind: 'dir' } = {
      kind: 'dir',
      name: '',
      children: Array.from({ length: 50 }, (_, i) => ({ kind: 'file' as const, name: `f${i}`, data: '' })),
    };
    const a = new BufferReadAt('big.pxar', buildV1(tree));
    await expect(PxarAccessor.open(a, undefined, { maxTableEntries: 10 })).rejects.toBeInstanceOf(LimitError);
  });
});
