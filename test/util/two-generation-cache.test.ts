import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TwoGenerationCache } from '../../src/util/two-generation-cache.js';

describe('TwoGenerationCache', () => {
  it('never holds more than its bound, and a hit keeps an entry through the next turnover', () => {
    const c = new TwoGenerationCache<number, string>(4);
    for (let i = 0; i < 4; i++) c.set(i, `v${i}`);
    expect(c.size).toBe(4);
    expect(c.get(0)).toBe('v0'); // old generation hit: moved back to the young one
    c.set(10, 'v10');
    c.set(11, 'v11');
    expect(c.size).toBeLessThanOrEqual(4);
    expect(c.get(0)).toBe('v0');
    expect(c.get(3)).toBeUndefined(); // not used since two turnovers ago
  });

  it('answers like a map for what it holds, within its bound, under random use', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 20 }), fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 30 })), { maxLength: 300 }), (max, ops) => {
        const c = new TwoGenerationCache<number, number>(max);
        const truth = new Map<number, number>();
        let version = 0;
        for (const [isSet, k] of ops) {
          if (isSet) {
            truth.set(k, ++version);
            c.set(k, version);
          } else {
            const got = c.get(k);
            if (got !== undefined) expect(got).toBe(truth.get(k));
          }
          expect(c.size).toBeLessThanOrEqual(max);
        }
        // The entry set last is always there.
        const last = [...ops].reverse().find(([isSet]) => isSet);
        if (last !== undefined) expect(c.get(last[1])).toBe(truth.get(last[1]));
      }),
    );
  });
});
