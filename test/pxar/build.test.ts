import { describe, expect, it } from 'vitest';
import { BufferReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { bstPermutation, buildV1 } from './build.js';
import { pxarHash } from '../../src/pxar/siphash.js';
import { RICH_V1, UNIFIED_V1 } from './spec-examples.js';

describe('test encoder', () => {
  it('produces the spec BST permutations', () => {
    expect(bstPermutation(4)).toEqual([2, 1, 3, 0]);
    expect(bstPermutation(10)).toEqual([6, 3, 8, 1, 5, 7, 9, 0, 2, 4]);
    expect(bstPermutation(17)).toEqual([9, 5, 13, 3, 7, 11, 15, 1, 4, 6, 8, 10, 12, 14, 16, 0, 2]);
  });
  it('reproduces §15.1 byte for byte', () => {
    const b = buildV1({ kind: 'dir', name: '', children: [{ kind: 'file', name: 'a.txt', data: 'hello' }] });
    expect(b.equals(UNIFIED_V1)).toBe(true);
    expect(RICH_V1.length).toBe(689);
  });
  it('handles hash collisions: a name is found wherever it sits among equal hashes', async () => {
    const names = Array.from({ length: 9 }, (_, i) => `f${i}`);
    for (const target of names) {
      // Every record claims the target's hash, so the lookup must compare names over all of them.
      const b = buildV1(
        { kind: 'dir', name: '', children: names.map((n) => ({ kind: 'file' as const, name: n, data: n })) },
        () => pxarHash(Buffer.from(target)),
      );
      const acc = await PxarAccessor.open(new BufferReadAt('collide.pxar', b));
      const e = await acc.lookupPath(target);
      expect(e?.name.toString(), target).toBe(target);
      expect((await acc.read(e!, 0, 10)).toString()).toBe(target);
      expect(await acc.lookupPath('f9')).toBeUndefined();
      // Simulated collisions put hashes on names that do not produce them: listings refuse that.
      await expect(acc.readdir(acc.root())).rejects.toThrow(/hash does not match/);
    }
  });
});
