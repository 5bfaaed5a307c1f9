/**
 * ListingReadAhead: prepares the next directory of a walk only once the walk has followed a
 * prediction, never for a single listing, and forgets a read-ahead that failed.
 */
import { describe, expect, it } from 'vitest';
import { ListingReadAhead } from '../../src/vfs/listing-readahead.js';
import type { VfsDirEntry } from '../../src/vfs/types.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

function harness(fail = new Set<number>()) {
  const asked: number[] = [];
  const ra = new ListingReadAhead(async (id) => {
    asked.push(id);
    if (fail.has(id)) throw new Error(`cannot list ${id}`);
    return [{ name: Buffer.from(`in-${id}`), node: { kind: 'file' } } as unknown as VfsDirEntry];
  });
  return { ra, asked };
}

// A tree: 1 (root) holds directories 10 and 20; 10 holds 11 and 12; 20 holds nothing.
describe('ListingReadAhead', () => {
  it('a single listing prepares nothing', async () => {
    const { ra, asked } = harness();
    ra.listed(1, [10, 20]);
    await turn();
    expect(asked).toEqual([]);
    expect(ra.take(10)).toBeUndefined();
  });

  it('a depth-first walk gets the next directory prepared: first child, next sibling, then up', async () => {
    const { ra, asked } = harness();
    ra.listed(1, [10, 20]); // predicts 10
    ra.listed(10, [11, 12]); // was predicted: prepares its first child, 11
    await turn();
    expect(asked).toEqual([11]);
    const p = ra.take(11);
    expect(p).toBeDefined();
    expect((await p!)[0]!.name.toString()).toBe('in-11');
    expect(ra.take(11)).toBeUndefined(); // taken once
    ra.listed(11, []); // no subdirectories: the next sibling, 12
    await turn();
    expect(asked).toEqual([11, 12]);
    expect(ra.take(12)).toBeDefined();
    ra.listed(12, []); // last of its parent: the directory after the parent, 20
    await turn();
    expect(asked).toEqual([11, 12, 20]);
    expect(ra.take(20)).toBeDefined();
    ra.listed(20, []); // the last directory of the tree: nothing after it
    await turn();
    expect(asked).toEqual([11, 12, 20]);
    expect(ra.counters).toEqual({ prepared: 3, used: 3 });
  });

  it('a walk that leaves the prediction stops the read-ahead until it follows one again', async () => {
    const { ra, asked } = harness();
    ra.listed(1, [10, 20]);
    ra.listed(20, []); // predicted was 10: not a walk in that order
    await turn();
    expect(asked).toEqual([]);
  });

  it('a read-ahead that fails is forgotten, so the walker lists (and reports) it itself', async () => {
    const { ra, asked } = harness(new Set([11]));
    ra.listed(1, [10, 20]);
    ra.listed(10, [11, 12]);
    await turn();
    expect(asked).toEqual([11]);
    await turn();
    expect(ra.take(11)).toBeUndefined();
  });
});
