import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { COLLECT_EVERY_BYTES, DecodeGarbage } from '../../src/chunks/decode-garbage.js';

describe('DecodeGarbage', () => {
  it('collects the young generation once per COLLECT_EVERY_BYTES of output, not per call', () => {
    const calls: string[] = [];
    const g = new DecodeGarbage((o) => calls.push(o.type));
    g.produce(COLLECT_EVERY_BYTES / 4);
    g.produce(COLLECT_EVERY_BYTES / 4);
    expect(calls).toEqual([]);
    g.produce(COLLECT_EVERY_BYTES / 2);
    expect(calls).toEqual(['minor']);
    g.produce(COLLECT_EVERY_BYTES - 1);
    expect(calls).toEqual(['minor']);
    g.produce(1);
    expect(calls).toEqual(['minor', 'minor']);
    expect(g.collections).toBe(2);
  });

  it('raises the mmap threshold with one full collection', () => {
    const calls: string[] = [];
    new DecodeGarbage((o) => calls.push(o.type)).raiseMmapThreshold();
    expect(calls).toEqual(['major']);
  });

  it('does nothing where no collector is available', () => {
    const g = new DecodeGarbage(undefined);
    expect(g.active).toBe(false);
    g.raiseMmapThreshold();
    g.produce(10 * COLLECT_EVERY_BYTES);
    expect(g.collections).toBe(0);
  });

  it('turns itself off when the collector throws', () => {
    let calls = 0;
    const g = new DecodeGarbage(() => {
      calls++;
      throw new TypeError('unsupported option');
    });
    g.produce(COLLECT_EVERY_BYTES);
    g.produce(COLLECT_EVERY_BYTES);
    expect(calls).toBe(1);
    expect(g.active).toBe(false);
    expect(g.collections).toBe(0);
  });

  it('gets the real collector on this runtime without leaving gc exposed to later contexts', () => {
    const g = DecodeGarbage.forThisThread();
    expect(g.active).toBe(true);
    g.raiseMmapThreshold();
    g.produce(COLLECT_EVERY_BYTES);
    expect(g.collections).toBe(1);
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});
