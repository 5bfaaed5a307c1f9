import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { BufferReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import { RICH_V1, SPLIT_V2_META, SPLIT_V2_PAYLOAD, UNIFIED_V1 } from './spec-examples.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const B = (s: string): Buffer => Buffer.from(s);

async function all(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

describe('spec §15 worked examples', () => {
  it('the dumps are the published bytes', () => {
    expect(sha(UNIFIED_V1)).toBe('200881cf5383dbe4e1bca6087d86c63affa922af7489e523a26147ee089da5a9');
    expect(sha(SPLIT_V2_META)).toBe('edbf4eab01f2faf4973ba843135a1c54c29e0a1c7d26603440ae9d154c81c6a8');
    expect(sha(SPLIT_V2_PAYLOAD)).toBe('edba01d6030ab961191ef0e8c93228d705f70ffdb6ee152762fb4a5c51992c2c');
    expect(sha(RICH_V1)).toBe('f67b047ddf101628cfa972ec111f4f0eff3700bdc381511c9dbf9ce0dfdacf67');
  });

  it('§15.1 unified archive: root and a.txt', async () => {
    const acc = await PxarAccessor.open(new BufferReadAt('15.1.pxar', UNIFIED_V1));
    expect(acc.version).toBe(1);
    const root = acc.root();
    expect(root.metadata!.stat).toEqual({ mode: 0o40755, flags: 0, uid: 0, gid: 0, mtimeSecs: 1700000000, mtimeNanos: 0 });
    const a = await acc.lookupPath('/a.txt');
    expect(a!.kind).toBe('file');
    expect(a!.contentOffset).toBe(0x96);
    expect(a!.size).toBe(5);
    expect(a!.metadata!.stat.mode).toBe(0o100644);
    expect((await acc.read(a!, 0, 100)).toString()).toBe('hello');
    expect((await acc.read(a!, 3, 100)).toString()).toBe('lo');
    expect((await acc.read(a!, 5, 100)).length).toBe(0);
    expect((await acc.readdir(root)).map((e) => e.name.toString())).toEqual(['a.txt']);
  });

  it('§15.2 split archive, with and without a prelude', async () => {
    const prelude = Buffer.concat([Buffer.from('1b777b9f9dd709e31300000000000000', 'hex'), B('PRE')]);
    const withPrelude = Buffer.concat([SPLIT_V2_META.subarray(0, 0x18), prelude, SPLIT_V2_META.subarray(0x18)]);
    withPrelude.writeBigUInt64LE(209n, withPrelude.length - 16);
    for (const [meta, pre] of [
      [SPLIT_V2_META, undefined],
      [withPrelude, 'PRE'],
    ] as const) {
      const m = new BufferReadAt('15.2.mpxar', meta);
      const p = new BufferReadAt('15.2.ppxar', SPLIT_V2_PAYLOAD);
      const acc = await PxarAccessor.open(m, p);
      expect(acc.version).toBe(2);
      expect(acc.prelude?.toString()).toBe(pre);
      const a = await acc.lookupPath('a.txt');
      expect(a!.payloadOffset).toBe(16);
      expect((await acc.read(a!, 0, 5)).toString()).toBe('hello');
      const seq = await PxarSequentialDecoder.open(m, p);
      expect(seq.prelude?.toString()).toBe(pre);
      const names: string[] = [];
      for await (const e of seq.entries()) {
        names.push(e.path.toString());
        if (e.kind === 'file') expect((await all(seq.stream(e))).toString()).toBe('hello');
      }
      expect(names).toEqual(['/', '/a.txt']);
    }
  });

  it('§15.3 rich example: lookup ranges, hardlink, xattr, negative mtime, symlink', async () => {
    const acc = await PxarAccessor.open(new BufferReadAt('15.3.pxar', RICH_V1));
    const names = (await acc.readdir(acc.root())).map((e) => e.name.toString());
    expect([...names].sort()).toEqual(['a.txt', 'd', 'h', 's']);
    const x = await acc.lookupPath('d/x');
    expect(x!.entryOffset).toBe(271);
    expect(x!.end).toBe(345);
    expect(x!.metadata!.stat).toEqual({ mode: 0o100600, flags: 0, uid: 1000, gid: 1000, mtimeSecs: -1, mtimeNanos: 999999999 });
    expect((await acc.read(x!, 0, 10)).toString()).toBe('hi');
    const d = await acc.lookupPath('/d');
    expect(d!.metadata!.stat.mode).toBe(0o40700);
    expect(d!.metadata!.stat.mtimeNanos).toBe(5);
    expect(d!.metadata!.xattrs).toEqual([{ name: B('user.k'), value: B('v') }]);
    const h = await acc.lookupPath('h');
    expect(h!.kind).toBe('hardlink');
    expect(h!.hardlink!.offset).toBe(353);
    expect(h!.hardlink!.target.toString()).toBe('a.txt');
    const t = await acc.resolve(h!);
    expect(t.contentOffset).toBe(150);
    expect(t.size).toBe(5);
    expect((await acc.read(h!, 0, 5)).toString()).toBe('hello');
    const s = await acc.lookupPath('s');
    expect(s!.symlinkTarget!.toString()).toBe('a.txt');
    expect(s!.metadata!.stat.mode).toBe(0o120777);
    expect(await acc.lookupPath('nope')).toBeUndefined();
    expect(await acc.lookupPath('a.txt/x')).toBeUndefined();

    const seq = await PxarSequentialDecoder.open(new BufferReadAt('15.3.pxar', RICH_V1));
    const order: string[] = [];
    for await (const e of seq.entries()) order.push(`${e.kind}:${e.path.toString()}`);
    expect(order).toEqual(['directory:/', 'file:/a.txt', 'directory:/d', 'file:/d/x', 'hardlink:/h', 'symlink:/s']);
  });
});
