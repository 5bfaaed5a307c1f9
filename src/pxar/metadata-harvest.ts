/**
 * Metadata harvesting for unified (single-stream) pxar archives.
 *
 * Why: in a unified archive the metadata of a directory's entries lies between the contents of
 * its files, so listing a large tree decodes nearly every chunk of it, and walking the tree
 * (a parent's listing, then each child's) decodes most of them twice once they have left the
 * chunk cache: the benchmark's first `find` over 100k small files decoded 855 MB to list 430 MB
 * of chunks. Each decoded chunk already holds all the metadata it carries; this keeps it.
 *
 * How: walks over the archive's items in stream order, fed by every verified chunk the index
 * reader obtains (and by chunks still in the cache). They keep every item except file contents
 * (a PAYLOAD keeps its 16-byte header; items over 1 MiB are skipped) as byte ranges of the
 * stream, copied out of the chunk. A walk moves only forward and only through chunks the reader
 * obtained for its own reasons, so harvesting costs no extra fetch. The first walk starts at
 * offset 0. When a walk waits for a chunk that has left the cache while the parser already reads
 * items further on (a listing of a directory whose children lie chunks apart), a new walk starts
 * at such an item and the old one waits, up to there, for its chunk to come by again. A walk
 * whose bytes do not parse, or the whole harvest once the budget is used up, stops; reads of
 * what is not harvested go to the chunks as before.
 *
 * Safety: what is kept are the exact, verified bytes of the stream at their offsets; the walk's
 * parsing decides only what to keep, never what a reader gets. The accessor parses and checks
 * harvested bytes exactly as it would have parsed them from the chunks.
 */
import { heldForever, type ChunkedReadAt, type HeldBytes, type ReadAt } from '../io/read-at.js';
import { HEADER_SIZE, PXAR } from './format.js';

/** Items larger than this are not kept (large xattrs, huge goodbye tables). */
const MAX_KEPT_ITEM = 1024 * 1024;
/** Walks waiting at once (each is a few numbers); beyond this the oldest is given up. */
const MAX_WALKS = 256;
const PAYLOAD_LO = Number(PXAR.PAYLOAD & 0xffffffffn);
const PAYLOAD_HI = Number(PXAR.PAYLOAD >> 32n);

/** Bytes of harvested metadata one mount (or process) may keep, over all its archives. */
export class HarvestBudget {
  used = 0;
  constructor(readonly maxBytes: number) {}
  take(n: number): boolean {
    if (this.used + n > this.maxBytes) return false;
    this.used += n;
    return true;
  }
}

/** One walk over the items of [its start, limit). */
class Walk {
  /** Position of the next item header to parse. */
  next: number;
  /** A kept item cut by a chunk end: its bytes [keepFrom, keepTo) still to be stored. */
  keepFrom = 0;
  keepTo = 0;
  /** An item header cut by a chunk end: its first bytes, from headPos. */
  head: Buffer | undefined;
  headPos = 0;
  done = false;
  constructor(
    start: number,
    /** Where the next walk's region begins (nothing at or past it is kept by this one). */
    public limit: number,
  ) {
    this.next = start;
  }

  /** The offset the walk needs next: the chunk holding it is the one it waits for. */
  wanted(): number {
    if (this.keepTo > this.keepFrom) return this.keepFrom;
    if (this.head !== undefined) return this.headPos + this.head.length;
    return this.next;
  }
}

/** Stream bytes [at, at + (to - from)) found at src[from, to) (offsets, not views: a walk over
 * a 100,000-entry tree made one view per item otherwise). */
type Piece = { at: number; src: Buffer; from: number; to: number };

/** A ReadAt over a chunked stream (an index's) that serves harvested metadata from memory. */
export class HarvestingReadAt implements ReadAt {
  readonly name: string;
  readonly size: number;
  /** Kept ranges sorted by start, disjoint (adjacent ones are joined on read). */
  private readonly starts: number[] = [];
  private readonly bufs: Buffer[] = [];
  /** Walks under way, by region (disjoint, sorted by position). */
  private walks: Walk[];
  private stopped = false;
  private kept = 0;
  /** Reads served from harvested bytes (tests, statistics). */
  hits = 0;
  /** Walks started at a hinted item because the one before it waits for a chunk. */
  restarts = 0;

  constructor(
    private readonly inner: ChunkedReadAt,
    private readonly budget: HarvestBudget,
  ) {
    this.name = inner.name;
    this.size = inner.size;
    this.walks = [new Walk(0, inner.size)];
    inner.observeChunks((_i, start, data) => this.onChunk(start, data));
  }

  /** Bytes harvested so far. */
  get harvestedBytes(): number {
    return this.kept;
  }

  /** True once nothing more will be harvested (the stream is walked, or harvesting stopped). */
  get finished(): boolean {
    return this.stopped || this.walks.length === 0;
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    const held = this.held(offset, length, length);
    if (held !== undefined) {
      this.hits++;
      return held;
    }
    return this.inner.readAt(offset, length);
  }

  async readHeld(offset: number, length: number): Promise<HeldBytes> {
    const held = this.held(offset, length, length);
    if (held !== undefined) {
      this.hits++;
      return heldForever(held);
    }
    return this.inner.readHeld(offset, length);
  }

  readSome(offset: number, min: number, max: number): Buffer | undefined {
    const held = this.held(offset, min, max);
    if (held !== undefined) this.hits++;
    return held;
  }

  prefetch(offset: number, length: number): void {
    // Harvested ranges need no chunk: hinting one would decode it again for nothing.
    if (this.held(offset, length, length) !== undefined) return;
    this.inner.prefetch(offset, length);
  }

  forget(offset: number, length: number): void {
    this.inner.forget(offset, length);
  }

  zeroFilled(offset: number, length: number): boolean {
    return this.inner.zeroFilled(offset, length);
  }

  /**
   * A parser found an item starting at `offset`. If the walk whose region holds it waits for a
   * chunk that is not cached (and is not the chunk of `offset`), a new walk starts at `offset`;
   * the old one keeps its place and ends there.
   */
  itemStartHint(offset: number): void {
    if (this.stopped || !Number.isSafeInteger(offset) || offset <= 0 || offset >= this.size) return;
    const k = this.walkAt(offset);
    if (k < 0) return;
    const w = this.walks[k]!;
    const at = w.wanted();
    if (at >= offset) return;
    const index = this.inner;
    const mine = index.chunkAt(at);
    const theirs = index.chunkAt(offset);
    if (mine === theirs || this.inner.peekChunk(mine) !== undefined) return;
    const fresh = new Walk(offset, w.limit);
    w.limit = offset;
    this.walks.splice(k + 1, 0, fresh);
    this.restarts++;
    if (this.walks.length > MAX_WALKS) this.walks.shift();
    const cached = this.inner.peekChunk(theirs);
    if (cached !== undefined) this.onChunk(index.chunkRange(theirs).start, cached);
  }

  /** The walk whose region [wanted, limit) holds `offset`, or -1. */
  private walkAt(offset: number): number {
    for (let k = this.walks.length - 1; k >= 0; k--) {
      const w = this.walks[k]!;
      if (w.wanted() <= offset) return offset < w.limit ? k : -1;
    }
    return -1;
  }

  /** [offset, offset + n) with min <= n <= max (clipped to the stream) from kept bytes, or undefined. */
  private held(offset: number, min: number, max: number): Buffer | undefined {
    const starts = this.starts;
    if (starts.length === 0 || !(offset >= 0) || offset < starts[0]!) return undefined;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    const buf = this.bufs[lo]!;
    const from = offset - starts[lo]!;
    if (from >= buf.length) return undefined;
    const need = Math.min(min, this.size - offset);
    const want = Math.min(max, this.size - offset);
    if (buf.length - from >= need) return buf.subarray(from, from + Math.min(buf.length - from, want));
    // The range runs on into the next kept ranges: join them if they are contiguous.
    const parts = [buf.subarray(from)];
    let got = buf.length - from;
    let at = starts[lo]! + buf.length;
    for (let k = lo + 1; k < starts.length && starts[k] === at && got < want; k++) {
      const b = this.bufs[k]!;
      const n = Math.min(b.length, want - got);
      parts.push(b.subarray(0, n));
      got += n;
      at += b.length;
    }
    return got >= need ? Buffer.concat(parts, got) : undefined;
  }

  private onChunk(start: number, data: Buffer): void {
    // Called for every chunk the index reader hands out (each read of file contents too).
    if (this.stopped || this.walks.length === 0) return;
    const index = this.inner;
    for (const w of [...this.walks]) {
      let from = start;
      let bytes = data;
      // Walk this chunk, then catch up through the chunks after it that the cache still holds
      // (fetched ahead, or read earlier while the walk was behind). Each step is a later chunk.
      for (;;) {
        if (w.done || this.stopped) break;
        const before = w.wanted();
        this.walk(w, from, bytes);
        const at = w.wanted();
        if (at >= w.limit || at >= this.size) {
          w.done = true;
          break;
        }
        if (at === before && (at < from || at >= from + bytes.length)) break; // not this chunk's walk
        const r = index.chunkRange(index.chunkAt(at));
        if (r.start <= from) break; // still in this chunk: it could not go on
        const cached = this.inner.peekChunk(index.chunkAt(at));
        if (cached === undefined) break;
        from = r.start;
        bytes = cached;
      }
    }
    if (this.walks.some((w) => w.done)) this.walks = this.walks.filter((w) => !w.done);
  }

  /** Advances walk `w` through the chunk [start, start + data.length) if it holds its next step. */
  private walk(w: Walk, start: number, data: Buffer): void {
    const end = Math.min(start + data.length, w.limit);
    const at = w.wanted();
    if (at < start || at >= end) return;
    const pieces: Piece[] = [];
    // 1. The rest of an item cut by the previous chunk's end.
    if (w.keepTo > w.keepFrom) {
      const to = Math.min(w.keepTo, end);
      pieces.push({ at: w.keepFrom, src: data, from: w.keepFrom - start, to: to - start });
      w.keepFrom = to;
      if (to === end) return this.store(pieces);
    }
    // 2. A header cut by the previous chunk's end.
    if (w.head !== undefined) {
      const missing = HEADER_SIZE - w.head.length;
      const have = Math.min(missing, end - start);
      const head = Buffer.concat([w.head, data.subarray(0, have)]);
      if (have < missing) {
        w.head = head;
        return this.store(pieces);
      }
      w.head = undefined;
      this.item(w, w.headPos, head, 0, start, end, data, pieces);
    }
    // 3. Items starting in this chunk.
    while (!w.done && w.keepTo <= w.keepFrom && w.next >= start && w.next < end) {
      const pos = w.next;
      if (pos + HEADER_SIZE > end) {
        if (end < start + data.length) {
          w.done = true; // a header across this walk's limit: the next walk has it
          break;
        }
        w.head = Buffer.from(data.subarray(pos - start));
        w.headPos = pos;
        break;
      }
      this.item(w, pos, data, pos - start, start, end, data, pieces);
    }
    this.store(pieces);
  }

  /** One item whose 16 header bytes are header[at, at + 16), at `pos`; decides what of it to keep. */
  private item(w: Walk, pos: number, header: Buffer, at: number, start: number, end: number, data: Buffer, pieces: Piece[]): void {
    const lo = header.readUInt32LE(at + 8);
    const hi = header.readUInt32LE(at + 12);
    const size = hi * 0x1_0000_0000 + lo;
    if (hi >= 0x200000 || size < HEADER_SIZE || pos + size > this.size) {
      // Not an item this walk can follow (damaged stream, a wrong hint, not pxar): it ends.
      w.done = true;
      return;
    }
    const payload = header.readUInt32LE(at) === PAYLOAD_LO && header.readUInt32LE(at + 4) === PAYLOAD_HI;
    w.next = pos + size;
    if (!payload && size > MAX_KEPT_ITEM) return;
    // Nothing at or past the walk's limit: the walk after it keeps that.
    const keepEnd = Math.min(payload ? pos + HEADER_SIZE : pos + size, w.limit);
    // The header began in the previous chunk: keep its first bytes from the copy.
    if (pos < start) pieces.push({ at: pos, src: header, from: at, to: at + Math.min(start, keepEnd) - pos });
    const from = Math.max(pos, start);
    const to = Math.min(keepEnd, end);
    if (to > from) pieces.push({ at: from, src: data, from: from - start, to: to - start });
    if (keepEnd > end) {
      w.keepFrom = end;
      w.keepTo = keepEnd;
    }
  }

  /**
   * Copies the pieces out of the chunk (the chunk itself must not be kept alive), one range per
   * run of contiguous pieces, in place among the ranges kept so far. Runs are not merged across
   * chunks (that would copy a long run again for every chunk it spans); held() joins adjacent
   * ranges when a read straddles them.
   */
  private store(pieces: Piece[]): void {
    let k = 0;
    while (k < pieces.length) {
      let j = k + 1;
      let endAt = pieces[k]!.at + pieces[k]!.to - pieces[k]!.from;
      while (j < pieces.length && pieces[j]!.at === endAt) endAt += pieces[j]!.to - pieces[j++]!.from;
      const at = pieces[k]!.at;
      const n = endAt - at;
      if (n > 0) {
        if (!this.budget.take(n)) {
          this.stopped = true;
          this.walks = [];
          return;
        }
        this.kept += n;
        const buf = Buffer.allocUnsafe(n);
        for (let i = k, off = 0; i < j; i++) off += pieces[i]!.src.copy(buf, off, pieces[i]!.from, pieces[i]!.to);
        const starts = this.starts;
        if (starts.length === 0 || starts[starts.length - 1]! < at) {
          starts.push(at);
          this.bufs.push(buf);
        } else {
          // A later walk stored first: insert in order.
          let lo = 0;
          let hi = starts.length;
          while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (starts[mid]! < at) lo = mid + 1;
            else hi = mid;
          }
          starts.splice(lo, 0, at);
          this.bufs.splice(lo, 0, buf);
        }
      }
      k = j;
    }
  }
}
