import { describe, expect, it } from 'vitest';
import {
  MAX_DEFAULT_CACHE_BYTES,
  MIN_DEFAULT_CACHE_BYTES,
  availableMemoryBytes,
  defaultCacheBytes,
} from '../../src/util/memory-share.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('the default cache size of a mount', () => {
  it('is an eighth of the available memory, in whole MiB', () => {
    expect(defaultCacheBytes(4 * GiB)).toBe(512 * MiB);
    expect(defaultCacheBytes(3 * GiB + 5)).toBe(384 * MiB);
  });

  it('never goes below 128 MiB on a small machine nor above 1 GiB on a large one', () => {
    expect(defaultCacheBytes(256 * MiB)).toBe(MIN_DEFAULT_CACHE_BYTES);
    expect(defaultCacheBytes(0)).toBe(MIN_DEFAULT_CACHE_BYTES);
    expect(defaultCacheBytes(256 * GiB)).toBe(MAX_DEFAULT_CACHE_BYTES);
  });

  it('reads MemAvailable (free plus reclaimable memory), not MemFree', () => {
    const meminfo = 'MemTotal:       24000000 kB\nMemFree:          100000 kB\nMemAvailable:    8388608 kB\n';
    expect(availableMemoryBytes(meminfo)).toBe(8 * GiB);
  });

  it('on this machine lies within its bounds', () => {
    const bytes = defaultCacheBytes();
    expect(bytes).toBeGreaterThanOrEqual(MIN_DEFAULT_CACHE_BYTES);
    expect(bytes).toBeLessThanOrEqual(MAX_DEFAULT_CACHE_BYTES);
    expect(bytes % MiB).toBe(0);
  });
});
