/**
 * zstdFrameSpans: frame boundaries from the headers alone, and every way a buffer can fail to be
 * whole frames (named after the reason it must give).
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ZstdFrameProblem, zstdFrameSpans } from '../../native-shims/zstd-frames.js';
import { availableZstdBackends, zstdCompress } from '../../native-shims/zstd.js';

const magic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** A frame built by hand: single segment, 1-byte content size, a raw block then an RLE block. */
function handFrame(opts: { checksum?: boolean; reservedBit?: boolean; blockType?: number } = {}): Buffer {
  const descriptor = 0x20 | (opts.checksum ? 0x04 : 0) | (opts.reservedBit ? 0x08 : 0);
  const raw = Buffer.from('hello');
  const rawHeader = (raw.length << 3) | ((opts.blockType ?? 0) << 1); // not last
  const rleHeader = (5 << 3) | (1 << 1) | 1; // RLE, last, 5 bytes of one value
  return Buffer.concat([
    magic,
    Buffer.from([descriptor, 10]),
    Buffer.from([rawHeader & 0xff, (rawHeader >> 8) & 0xff, rawHeader >> 16]),
    raw,
    Buffer.from([rleHeader & 0xff, (rleHeader >> 8) & 0xff, rleHeader >> 16, 0x21]),
    opts.checksum ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0),
  ]);
}

function skippable(payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(0x184d2a53, 0);
  head.writeUInt32LE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

function reason(r: ReturnType<typeof zstdFrameSpans>): string | undefined {
  return r instanceof ZstdFrameProblem ? r.reason : undefined;
}

describe('zstdFrameSpans', () => {
  const a = zstdCompress(Buffer.from(randomBytes(3000).toString('hex')), 1);
  const b = zstdCompress(Buffer.alloc(70_000, 5), 3); // RLE blocks
  const two = Buffer.concat([a, b]);

  it('finds each frame of real encoder output', () => {
    expect(zstdFrameSpans(a)).toEqual([{ start: 0, end: a.length, skippable: false }]);
    expect(zstdFrameSpans(two)).toEqual([
      { start: 0, end: a.length, skippable: false },
      { start: a.length, end: two.length, skippable: false },
    ]);
  });

  it('steps over skippable frames', () => {
    const s = skippable(Buffer.from('not zstd at all'));
    const buf = Buffer.concat([s, a, s]);
    expect(zstdFrameSpans(buf)).toEqual([
      { start: 0, end: s.length, skippable: true },
      { start: s.length, end: s.length + a.length, skippable: false },
      { start: s.length + a.length, end: buf.length, skippable: true },
    ]);
  });

  it('reads content checksums, RLE blocks and the header fields of a hand-made frame', () => {
    for (const checksum of [false, true]) {
      const f = handFrame({ checksum });
      expect(zstdFrameSpans(f)).toEqual([{ start: 0, end: f.length, skippable: false }]);
    }
  });

  it('every cut inside a frame is "truncated frame"; cuts between frames are whole', () => {
    for (const buf of [two, handFrame({ checksum: true }), Buffer.concat([skippable(Buffer.alloc(20)), a])]) {
      const whole = new Set((zstdFrameSpans(buf) as { end: number }[]).map((s) => s.end));
      for (let cut = 0; cut < buf.length; cut++) {
        const r = zstdFrameSpans(buf.subarray(0, cut));
        if (whole.has(cut)) expect(reason(r), `cut ${cut}`).toBeUndefined();
        else expect(reason(r), `cut ${cut}`).toBe('truncated frame');
      }
    }
  });

  it('names what is wrong with input that is not zstd', () => {
    expect(reason(zstdFrameSpans(new Uint8Array(0)))).toBe('truncated frame');
    expect(reason(zstdFrameSpans(Buffer.from('plain text, not a frame')))).toBe('unknown frame descriptor');
    expect(reason(zstdFrameSpans(Buffer.concat([a, Buffer.from('trailing junk')])))).toBe('unknown frame descriptor');
    expect(reason(zstdFrameSpans(handFrame({ reservedBit: true })))).toBe('reserved frame header bit set');
    expect(reason(zstdFrameSpans(handFrame({ blockType: 3 })))).toBe('reserved block type');
  });

  it('a huge declared size does not read past the buffer', () => {
    const lie = Buffer.concat([magic, Buffer.from([0x20, 10, 0xf8, 0xff, 0xff])]); // raw block of 2^21 - 1 bytes
    expect(reason(zstdFrameSpans(lie))).toBe('truncated frame');
    const s = Buffer.alloc(8);
    s.writeUInt32LE(0x184d2a50, 0);
    s.writeUInt32LE(0xffffffff, 4);
    expect(reason(zstdFrameSpans(s))).toBe('truncated frame');
  });

  it('agrees with every backend on a hand-made frame (raw then RLE block)', () => {
    const f = handFrame();
    for (const backend of availableZstdBackends()) {
      expect(backend.decompress(f, 100).toString(), backend.name).toBe('hello!!!!!');
    }
  });
});
