/**
 * `--cache-size` bounds all of a mount's caches together: decoded chunks, metadata harvested
 * from unified archives, and the small reads of direct-I/O files.
 */
import { describe, expect, it } from 'vitest';
import { cacheBudget, readaheadWithin } from '../../src/cli/commands/mount.js';

const MiB = 1024 * 1024;

describe('cacheBudget', () => {
  it.each([1 * MiB, 32 * MiB, 128 * MiB, 1024 * MiB, 128 * MiB + 7])('%d bytes are shared out without exceeding them', (total) => {
    const b = cacheBudget(total);
    expect(b.chunks + b.harvest + b.smallReads).toBe(total);
    expect(b.harvest).toBe(Math.floor(total / 4));
    expect(b.smallReads).toBeLessThanOrEqual(16 * MiB);
    expect(b.chunks).toBeGreaterThanOrEqual(total / 2);
    // A listing's read-ahead stays well inside the chunk cache it fills.
    expect(b.listingPrefetch).toBeLessThanOrEqual(b.chunks / 4);
    expect(b.listingPrefetch).toBeLessThanOrEqual(32 * MiB);
  });

  it('the default 128 MiB: 80 MiB of chunks, 32 MiB of harvest, 16 MiB of small reads; listings read 20 MiB ahead', () => {
    expect(cacheBudget(128 * MiB)).toEqual({ chunks: 80 * MiB, harvest: 32 * MiB, smallReads: 16 * MiB, listingPrefetch: 20 * MiB });
  });
});

describe('readaheadWithin', () => {
  const MiB = 1024 * 1024;
  it('keeps the read-ahead within half of what the chunk cache holds, at least one chunk', () => {
    expect(readaheadWithin(4, cacheBudget(128 * MiB).chunks)).toBe(4); // 80 MiB: room for 10
    expect(readaheadWithin(4, cacheBudget(32 * MiB).chunks)).toBe(2); // 20 MiB
    expect(readaheadWithin(4, cacheBudget(8 * MiB).chunks)).toBe(1);
    expect(readaheadWithin(0, cacheBudget(128 * MiB).chunks)).toBe(0); // off stays off
    expect(readaheadWithin(16, 1024 * MiB)).toBe(16);
  });
});
