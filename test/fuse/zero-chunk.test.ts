import { describe, expect, it } from 'vitest';
import { pinZeroChunks } from '../../src/cli/commands/mount.js';
import type { ChunkDecodeJob } from '../../src/chunks/chunk-decoder.js';

const job = (d: number): ChunkDecodeJob => ({
  digest: Buffer.alloc(32, d),
  expectedSize: 4 * 1024 * 1024,
  cryptMode: 'encrypt',
  name: `chunk-${d}`,
});

describe('pinZeroChunks', () => {
  it('decodes an all-zero chunk once and then serves it for identical stored bytes', async () => {
    let calls = 0;
    const zeros = Buffer.alloc(4 * 1024 * 1024);
    const dec = pinZeroChunks(() => {
      calls++;
      return zeros;
    });
    const raw = Buffer.alloc(191, 7);
    expect(await dec(raw, job(1))).toBe(zeros);
    // Later requests get the pinned copy (the first plaintext may be arena memory, reused later).
    const pinned = await dec(Buffer.from(raw), job(1));
    expect(pinned).not.toBe(zeros);
    expect(pinned.equals(zeros)).toBe(true);
    zeros[123] = 1; // what the first decode returned changes: the pinned copy does not
    expect(await dec(Buffer.from(raw), job(1))).toBe(pinned);
    expect(pinned.every((b) => b === 0)).toBe(true);
    expect(calls).toBe(1);
    // Different stored bytes under the same digest are decoded (and verified) again.
    const other = Buffer.from(raw);
    other[5] = 0;
    await dec(other, job(1));
    expect(calls).toBe(2);
  });

  it('does not pin chunks with data, and passes decode errors through', async () => {
    let calls = 0;
    const data = Buffer.alloc(1024 * 1024, 1);
    const dec = pinZeroChunks(() => {
      calls++;
      return data;
    });
    await dec(Buffer.alloc(100), job(2));
    await dec(Buffer.alloc(100), job(2));
    expect(calls).toBe(2);
    const failing = pinZeroChunks(() => {
      throw new Error('tag mismatch');
    });
    await expect(failing(Buffer.alloc(10), job(3))).rejects.toThrow(/tag mismatch/);
  });
});
