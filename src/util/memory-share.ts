/**
 * The default size of a mount's caches, taken from the machine: a share of the memory it has
 * available, within bounds. A fixed 128 MiB kept a random reader of small files in a unified
 * archive thrashing (each file's chunk evicted before the next file in it was read: ten times
 * more chunks fetched than the files touch), while an admin box usually has gigabytes free.
 */
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';

export const MIN_DEFAULT_CACHE_BYTES = 128 * 1024 * 1024;
export const MAX_DEFAULT_CACHE_BYTES = 1024 * 1024 * 1024;
/** The share of available memory a mount takes by default. */
export const DEFAULT_CACHE_SHARE = 1 / 8;

/**
 * MemAvailable from /proc/meminfo (what can be allocated without swapping: free memory plus
 * reclaimable caches), or os.freemem() where that is missing.
 */
export function availableMemoryBytes(meminfo?: string): number {
  let text = meminfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/meminfo', 'latin1');
    } catch {
      return freemem();
    }
  }
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(text);
  return m !== null ? Number(m[1]) * 1024 : freemem();
}

/** `share` of the available memory, rounded down to whole MiB, within [min, max]. */
export function defaultCacheBytes(available = availableMemoryBytes()): number {
  const mib = 1024 * 1024;
  const share = Math.floor((available * DEFAULT_CACHE_SHARE) / mib) * mib;
  return Math.min(MAX_DEFAULT_CACHE_BYTES, Math.max(MIN_DEFAULT_CACHE_BYTES, share));
}
