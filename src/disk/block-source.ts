/**
 * Block sources: the ReadAt a volume or filesystem reader works on. A disk image is the decoded
 * stream behind its fixed index (IndexReadAt, which fetches and verifies only the chunks a read
 * touches); a partition or logical volume is a slice of the image, or of a partition (LVM on a
 * partition), checked against its parent when it is made and clipped on every read.
 */
import { FormatError, LimitError } from '../errors.js';
import type { HeldBytes, ReadAt } from '../io/read-at.js';

/** Where a disk structure lies, for messages: "drive-scsi0.img.fidx (part/2)". */
export function volumeName(image: string, volume: string): string {
  return `${image} (${volume})`;
}

/** Bytes [start, start + size) of `parent` as a stream of its own. */
export class SliceReadAt implements ReadAt {
  readonly name: string;

  constructor(
    private readonly parent: ReadAt,
    readonly start: number,
    readonly size: number,
    name: string,
  ) {
    this.name = name;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 0 || start + size > parent.size) {
      throw new FormatError(`volume [${start}..${start + size}) lies outside its container (size ${parent.size})`, {
        file: name,
        offset: start,
      });
    }
  }

  /** [offset, offset + length) clipped to this slice, in the parent's coordinates. */
  private clip(offset: number, length: number): [number, number] {
    const from = Math.max(0, Math.min(offset, this.size));
    const to = Math.min(this.size, from + Math.max(0, length));
    return [this.start + from, to - from];
  }

  readAt(offset: number, length: number): Promise<Buffer> {
    const [o, n] = this.clip(offset, length);
    return this.parent.readAt(o, n);
  }

  readHeld(offset: number, length: number): Promise<HeldBytes> {
    const [o, n] = this.clip(offset, length);
    if (this.parent.readHeld) return this.parent.readHeld(o, n);
    return this.parent.readAt(o, n).then((b) => ({ parts: [b], length: b.length, release: () => undefined }));
  }

  prefetch(offset: number, length: number): void {
    const [o, n] = this.clip(offset, length);
    this.parent.prefetch?.(o, n);
  }

  forget(offset: number, length: number): void {
    const [o, n] = this.clip(offset, length);
    this.parent.forget?.(o, n);
  }

  zeroFilled(offset: number, length: number): boolean {
    const [o, n] = this.clip(offset, length);
    return this.parent.zeroFilled?.(o, n) ?? false;
  }
}

/** One piece of a concatenated stream: `length` bytes of `src` from `offset`. */
export interface Extent {
  src: ReadAt;
  offset: number;
  length: number;
}

/** Most pieces one concatenated volume may have (an LV's segments times its stripes). */
export const MAX_EXTENTS = 1 << 20;

/**
 * Pieces of other sources laid end to end (a linear or striped logical volume): a read is split
 * at piece boundaries, each piece read from its own source.
 */
export class ConcatReadAt implements ReadAt {
  readonly size: number;
  /** Start of each piece in this stream, ascending (for binary search). */
  private readonly starts: number[];

  constructor(
    readonly name: string,
    private readonly extents: readonly Extent[],
  ) {
    if (extents.length > MAX_EXTENTS) throw new LimitError(`volume has ${extents.length} pieces (at most ${MAX_EXTENTS})`, { file: name });
    let pos = 0;
    this.starts = [];
    for (const e of extents) {
      if (!Number.isSafeInteger(e.offset) || !Number.isSafeInteger(e.length) || e.offset < 0 || e.length <= 0 || e.offset + e.length > e.src.size) {
        throw new FormatError(`volume piece [${e.offset}..${e.offset + e.length}) lies outside ${e.src.name} (size ${e.src.size})`, {
          file: name,
          offset: pos,
        });
      }
      this.starts.push(pos);
      pos += e.length;
    }
    this.size = pos;
  }

  private pieceAt(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private pieces(offset: number, length: number): { e: Extent; from: number; n: number }[] {
    const out: { e: Extent; from: number; n: number }[] = [];
    let pos = Math.max(0, Math.min(offset, this.size));
    const end = Math.min(this.size, pos + Math.max(0, length));
    if (pos >= end) return out;
    for (let i = this.pieceAt(pos); pos < end && i < this.extents.length; i++) {
      const e = this.extents[i]!;
      const from = pos - this.starts[i]!;
      const n = Math.min(e.length - from, end - pos);
      out.push({ e, from: e.offset + from, n });
      pos += n;
    }
    return out;
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    const parts = this.pieces(offset, length);
    const bufs = await Promise.all(parts.map((p) => p.e.src.readAt(p.from, p.n)));
    for (let i = 0; i < bufs.length; i++) {
      // A short read inside a piece would shift every later byte: refuse it.
      if (bufs[i]!.length !== parts[i]!.n) throw new FormatError(`short read inside a volume piece of ${parts[i]!.e.src.name}`, { file: this.name, offset });
    }
    return bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
  }

  prefetch(offset: number, length: number): void {
    for (const p of this.pieces(offset, length)) p.e.src.prefetch?.(p.from, p.n);
  }

  forget(offset: number, length: number): void {
    for (const p of this.pieces(offset, length)) p.e.src.forget?.(p.from, p.n);
  }
}

/**
 * RAID-0 style striping (an LVM "striped" segment with two or more stripes): the stream is rows
 * of `stripeBytes` from each stripe in turn; stripe i's row r lies at stripes[i] offset
 * r * stripeBytes. Computed per read, so a large volume needs no table of pieces.
 */
export class StripedReadAt implements ReadAt {
  constructor(
    readonly name: string,
    private readonly stripes: readonly ReadAt[],
    private readonly stripeBytes: number,
    readonly size: number,
  ) {
    const rows = Math.ceil(size / (stripeBytes * stripes.length));
    if (stripes.length < 1 || !Number.isSafeInteger(stripeBytes) || stripeBytes <= 0) {
      throw new FormatError(`striped volume with ${stripes.length} stripes of ${stripeBytes} bytes`, { file: name });
    }
    for (const s of stripes) {
      if (rows * stripeBytes > s.size) throw new FormatError(`stripe ${s.name} is shorter (${s.size} bytes) than the volume needs`, { file: name });
    }
  }

  private pieces(offset: number, length: number): { src: ReadAt; from: number; n: number }[] {
    const out: { src: ReadAt; from: number; n: number }[] = [];
    let pos = Math.max(0, Math.min(offset, this.size));
    const end = Math.min(this.size, pos + Math.max(0, length));
    const k = this.stripes.length;
    while (pos < end) {
      const unit = Math.floor(pos / this.stripeBytes);
      const within = pos - unit * this.stripeBytes;
      const n = Math.min(this.stripeBytes - within, end - pos);
      const row = Math.floor(unit / k);
      out.push({ src: this.stripes[unit % k]!, from: row * this.stripeBytes + within, n });
      pos += n;
    }
    return out;
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    const parts = this.pieces(offset, length);
    const bufs = await Promise.all(parts.map((p) => p.src.readAt(p.from, p.n)));
    for (let i = 0; i < bufs.length; i++) {
      if (bufs[i]!.length !== parts[i]!.n) throw new FormatError(`short read inside stripe ${parts[i]!.src.name}`, { file: this.name, offset });
    }
    return bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
  }

  prefetch(offset: number, length: number): void {
    for (const p of this.pieces(offset, Math.min(length, 64 * 1024 * 1024))) p.src.prefetch?.(p.from, p.n);
  }

  forget(offset: number, length: number): void {
    for (const p of this.pieces(offset, Math.min(length, 64 * 1024 * 1024))) p.src.forget?.(p.from, p.n);
  }
}
