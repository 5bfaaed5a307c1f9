/**
 * ProgressiveRead: pieces read by several lanes, published as one growing prefix, in order;
 * failures reach `done` (and `filled` turns -1) only once every request has settled.
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ProgressiveRead } from '../../src/io/progressive-read.js';

const PIECE = 8192;

/** A FileHandle stand-in over `bytes`: reads finish in a shuffled order; `failAt` fails the read at that offset. */
function fakeHandle(bytes: Buffer, opts: { failAt?: number } = {}): { fh: FileHandle; closed: () => boolean; inFlight: () => number } {
  let closed = false;
  let inFlight = 0;
  let n = 0;
  const fh = {
    read: async (buf: Buffer, offset: number, length: number, position: number) => {
      inFlight++;
      await new Promise((r) => setTimeout(r, (n++ * 7) % 5)); // out-of-order completions
      inFlight--;
      if (position === opts.failAt) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      const got = position >= bytes.length ? 0 : bytes.copy(buf, offset, position, Math.min(bytes.length, position + length));
      return { bytesRead: got, buffer: buf };
    },
    close: async () => {
      closed = true;
    },
  } as unknown as FileHandle;
  return { fh, closed: () => closed, inFlight: () => inFlight };
}

describe('ProgressiveRead', () => {
  it('fills the buffer and publishes one growing prefix of bytes that are really there', async () => {
    const bytes = randomBytes(10 * PIECE + 123);
    const buf = Buffer.alloc(11 * PIECE);
    const h = fakeHandle(bytes);
    const r = new ProgressiveRead(h.fh, buf, bytes.length, { pieceBytes: PIECE, lanes: 3, wrapError: (e) => e as Error });
    await r.started;
    expect(Atomics.load(r.filled, 0)).toBeGreaterThanOrEqual(PIECE);
    // Whenever it is looked at, the published prefix holds the file's bytes and never shrinks.
    let finished = false;
    void r.done.then(() => (finished = true));
    const seen: number[] = [];
    while (!finished) {
      const n = Atomics.load(r.filled, 0);
      expect(buf.subarray(0, n).equals(bytes.subarray(0, n))).toBe(true);
      seen.push(n);
      await new Promise((res) => setImmediate(res));
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
    expect(buf.subarray(0, bytes.length).equals(bytes)).toBe(true);
    expect(Atomics.load(r.filled, 0)).toBe(bytes.length);
    expect(h.closed()).toBe(true);
  });

  it('tells every follower of each new span, in order, from the start to the end', async () => {
    const bytes = randomBytes(10 * PIECE + 123);
    const buf = Buffer.alloc(11 * PIECE);
    const r = new ProgressiveRead(fakeHandle(bytes).fh, buf, bytes.length, { pieceBytes: PIECE, lanes: 3, wrapError: (e) => e as Error });
    await r.started;
    const spans: [number, number][] = [];
    r.follow((s, e) => {
      expect(buf.subarray(s, e).equals(bytes.subarray(s, e))).toBe(true);
      spans.push([s, e]);
    });
    await r.done;
    expect(spans[0]![0]).toBe(0);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBe(spans[i - 1]![1]);
    expect(spans.at(-1)![1]).toBe(bytes.length);
  });

  it('a failed piece turns filled to -1 and rejects done with the wrapped error, after every request settled', async () => {
    const bytes = randomBytes(12 * PIECE);
    const h = fakeHandle(bytes, { failAt: 5 * PIECE });
    const r = new ProgressiveRead(h.fh, Buffer.alloc(bytes.length), bytes.length, {
      pieceBytes: PIECE,
      lanes: 4,
      wrapError: (e) => new Error(`chunk x: ${(e as Error).message}`),
    });
    await r.started; // the first piece was fine
    await expect(r.done).rejects.toThrow('chunk x: EIO: i/o error, read');
    expect(Atomics.load(r.filled, 0)).toBe(-1);
    expect(h.inFlight()).toBe(0);
    expect(h.closed()).toBe(true);
  });

  it('a failure before the first piece rejects started too', async () => {
    const bytes = randomBytes(3 * PIECE);
    const h = fakeHandle(bytes, { failAt: 0 });
    const r = new ProgressiveRead(h.fh, Buffer.alloc(bytes.length), bytes.length, { pieceBytes: PIECE, lanes: 1, wrapError: (e) => e as Error });
    await expect(r.started).rejects.toThrow('EIO');
    expect(h.inFlight()).toBe(0);
  });

  it('a file shorter than its stat said is an error, not a hang', async () => {
    const bytes = randomBytes(2 * PIECE);
    const h = fakeHandle(bytes);
    const r = new ProgressiveRead(h.fh, Buffer.alloc(4 * PIECE), 4 * PIECE, { pieceBytes: PIECE, lanes: 2, wrapError: (e) => e as Error });
    await expect(r.done).rejects.toThrow(/file ended at byte/);
  });
});
