/**
 * `PBSFS_DECODE_THREADS=N`: how many worker threads decode chunks (0 = on the main thread), one
 * setting for every command that decodes many chunks (`cat`, `verify`, `mount`).
 */
import { availableParallelism } from 'node:os';
import { UsageError } from '../errors.js';

/**
 * The thread count from the environment, else `fallback(cores)`. A value that is not a number
 * from 0 to 16 is a usage error when `strict` (the mount, which runs for long), else ignored.
 */
export function decodeThreadsSetting(fallback: (cores: number) => number, strict = false): number {
  const v = process.env.PBSFS_DECODE_THREADS;
  const valid = v !== undefined && /^\d+$/.test(v) && Number(v) <= 16;
  if (valid) return Number(v);
  if (v !== undefined && strict) throw new UsageError(`PBSFS_DECODE_THREADS must be 0..16, got ${JSON.stringify(v)}`);
  return fallback(availableParallelism());
}
