/**
 * Where each zstd frame of a buffer begins and ends, read from the frame and block headers alone
 * (RFC 8878, section 3.1), without decoding anything.
 *
 * Why: the zstd of `node:zlib` in Node 22 (22.23 tested) decodes only the first frame of its
 * input and, given a truncated frame, returns what it decoded so far without an error (Node 24
 * fails it). Walking the frames first lets that backend decode them one by one and refuse a
 * buffer that ends inside one, as the addon does.
 */

const FRAME_MAGIC = 0xfd2fb528;
/** Skippable frames carry any of 16 magics, 0x184D2A50 to 0x184D2A5F; decoders step over them. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

export interface ZstdFrameSpan {
  start: number;
  end: number;
  /** A skippable frame: no content, decoders step over it. */
  skippable: boolean;
}

/** Why a buffer is not a sequence of whole frames (worded like the decoder's own errors). */
export class ZstdFrameProblem {
  constructor(readonly reason: string) {}
}

/** The frames of `src` in order; a ZstdFrameProblem when it is empty, cut short or not zstd. */
export function zstdFrameSpans(src: Uint8Array): ZstdFrameSpan[] | ZstdFrameProblem {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const spans: ZstdFrameSpan[] = [];
  const truncated = new ZstdFrameProblem('truncated frame');
  let at = 0;
  if (src.length === 0) return truncated;
  while (at < src.length) {
    if (src.length - at < 4) return truncated;
    const magic = view.getUint32(at, true);
    if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) {
      if (src.length - at < 8) return truncated;
      const end = at + 8 + view.getUint32(at + 4, true);
      if (end > src.length) return truncated;
      spans.push({ start: at, end, skippable: true });
      at = end;
      continue;
    }
    if (magic !== FRAME_MAGIC) return new ZstdFrameProblem('unknown frame descriptor');
    const start = at;
    at += 4;
    if (at >= src.length) return truncated;
    const descriptor = src[at]!;
    at += 1;
    if ((descriptor & 0x08) !== 0) return new ZstdFrameProblem('reserved frame header bit set');
    const fcsFlag = descriptor >>> 6;
    const singleSegment = (descriptor & 0x20) !== 0;
    const checksum = (descriptor & 0x04) !== 0;
    const dictIdBytes = [0, 1, 2, 4][descriptor & 0x03]!;
    const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
    at += (singleSegment ? 0 : 1) + dictIdBytes + fcsBytes;
    for (;;) {
      if (src.length - at < 3) return truncated;
      const header = src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16);
      at += 3;
      const last = (header & 1) !== 0;
      const type = (header >>> 1) & 3;
      const size = header >>> 3;
      if (type === 3) return new ZstdFrameProblem('reserved block type');
      at += type === 1 ? 1 : size; // an RLE block stores its one byte
      if (at > src.length) return truncated;
      if (last) break;
    }
    if (checksum) at += 4;
    if (at > src.length) return truncated;
    spans.push({ start, end: at, skippable: false });
  }
  return spans;
}
