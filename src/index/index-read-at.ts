/**
 * Random access to the archive stream an index describes: `readAt(offset, length)` fetches only
 * the chunks overlapping the range (through the shared, verifying ChunkReader) and copies out
 * exactly the requested bytes. Nothing unverified is ever returned.
 */
import type { BlobCryptMode } from '../blob/data-blob.js';
import { stableCopy, type ChunkHold, type ChunkReader } from '../chunks/chunk-reader.js';
import { FormatError, IoError, LimitError, PbsfsError, rewrapError } from '../errors.js';
import { heldForever, type ChunkedReadAt, type ChunkObserver, type HeldBytes, type ReadAt } from '../io/read-at.js';
import type { ChunkIndex } from './chunk-index.js';
import type { DamageReport } from './damage-report.js';

/** How many chunks one multi-chunk read fetches at a time (bounds memory for large reads). */
const READ_AHEAD = 4;

/** One read returns at most this much (the result is one buffer); stream larger ranges. */
export const MAX_READ_BYTES = 1024 * 1024 * 1024;

/** A readHeld() over more chunks than this copies instead of pinning them all. */
const MAX_HELD_CHUNKS = 16;

interface ReadRange {
  start: number;
  end: number;
  first: number;
  last: number;
}

/** Streams whose forget() progress is remembered (see IndexReadAt.forget). */
const FORGET_STREAMS = 16;

/** Chunks fetched ahead (into the cache) once reads look sequential. */
const SEQUENTIAL_READ_AHEAD = 2;

export interface IndexReadAtOptions {
  /**
   * Opt-in (`--allow-damaged`): an unreadable chunk reads as zeros of its exact length and is
   * recorded here instead of failing the read.
   */
  damage?: DamageReport;
  /** Server file name of the archive for the damage report (default: the last part of `name`). */
  archive?: string;
}

/**
 * Which failures of one chunk count as damage that `--allow-damaged` may zero-fill: the chunk's
 * own bytes are bad or gone (missing file, digest/CRC/GCM mismatch, undecodable or oversized
 * blob), or the disk failed reading it (EIO). Everything else still fails the read: errors that
 * are not PbsfsErrors are bugs, and other I/O errors (EACCES, EMFILE, ENOMEM, ...) say nothing
 * about this chunk and would turn a whole archive into zeros.
 */
function isChunkDamage(e: unknown): e is PbsfsError {
  if (!(e instanceof PbsfsError)) return false;
  switch (e.kind) {
    case 'integrity':
    case 'crypto':
    case 'format':
    case 'not-found':
    case 'limit':
      return true;
    case 'io':
      return e instanceof IoError && e.syscallCode === 'EIO';
    default:
      return false;
  }
}

/** Told of every verified chunk plaintext a reader obtains: chunk number, stream offset, bytes. */
export type { ChunkObserver } from '../io/read-at.js';

function stableHold(data: Buffer): ChunkHold {
  return { data, stable: true, release: () => undefined };
}

/** Zeros standing in for a damaged chunk (--allow-damaged). */
function zeros(n: number): ChunkHold {
  return stableHold(Buffer.alloc(n));
}

export class IndexReadAt implements ChunkedReadAt {
  readonly name: string;
  readonly size: number;
  /** Last chunk touched by readAt, to detect sequential access. */
  private lastChunk = -2;
  /** forget(): range start -> first chunk not yet dropped, for the most recent streams. */
  private readonly forgetResume = new Map<number, number>();

  private readonly damage: DamageReport | undefined;
  private readonly archive: string;
  private readonly observers: ChunkObserver[] = [];

  constructor(
    readonly index: ChunkIndex,
    private readonly reader: ChunkReader,
    /** What the manifest says the chunks must be: 'encrypt' or 'none' (sign-only = none). */
    readonly cryptMode: BlobCryptMode,
    name?: string,
    opts: IndexReadAtOptions = {},
  ) {
    this.name = name ?? index.name;
    this.size = index.size;
    this.damage = opts.damage;
    this.archive = opts.archive ?? this.name.slice(this.name.lastIndexOf('/') + 1);
  }

  /**
   * The verified plaintext of chunk i, lent until release() (shared with the cache: read-only).
   * With a damage report, an unreadable chunk (see isChunkDamage) is recorded and reads as zeros
   * of its exact length; the zeros are a fresh buffer, never put in the chunk cache (which holds
   * verified plaintext only). A chunk already recorded is not fetched again.
   */
  async holdChunk(i: number): Promise<ChunkHold> {
    const { start, end } = this.index.chunkRange(i);
    if (this.damage?.has(this.name, i)) return zeros(end - start);
    const digest = this.index.digest(i);
    try {
      const h = await this.reader.hold({ digest, expectedSize: end - start, cryptMode: this.cryptMode });
      try {
        for (const o of this.observers) o(i, start, h.data);
      } catch (e) {
        h.release(); // a failing observer must not leave the chunk pinned
        throw e;
      }
      return h;
    } catch (e) {
      if (this.damage !== undefined && isChunkDamage(e)) {
        this.damage.record(this.name, this.archive, i, start, end, digest.toString('hex'), e);
        return zeros(end - start);
      }
      throw this.wrap(e, i, digest, start);
    }
  }

  /** Chunk i's verified plaintext in memory that stays valid (see holdChunk). */
  async chunk(i: number): Promise<Buffer> {
    return stableCopy(await this.holdChunk(i));
  }

  /**
   * Calls `observer` with every verified chunk plaintext this reader obtains from now on (from
   * the store or the cache; never zeros standing in for a damaged chunk). Observers run
   * synchronously, must not modify the bytes, and must copy what they keep.
   */
  chunkAt(offset: number): number {
    return this.index.chunkAt(offset);
  }

  chunkRange(i: number): { start: number; end: number } {
    return this.index.chunkRange(i);
  }

  observeChunks(observer: ChunkObserver): void {
    this.observers.push(observer);
  }

  /**
   * Chunk i's verified plaintext if the chunk cache holds it right now (no fetch), else
   * undefined. Valid only until the caller next waits for anything (see ChunkReader.peek).
   */
  peekChunk(i: number): Buffer | undefined {
    if (i < 0 || i >= this.index.count) return undefined;
    const { start, end } = this.index.chunkRange(i);
    return this.reader.peek({ digest: this.index.digest(i), expectedSize: end - start, cryptMode: this.cryptMode });
  }

  /**
   * True when some byte of [offset, offset + length) was read as zeros because its chunk is
   * damaged (only with a damage report, and only for chunks already read). Lets a decoder accept
   * zeros where it expects a header it would otherwise refuse.
   */
  zeroFilled(offset: number, length: number): boolean {
    if (this.damage === undefined || this.damage.count === 0 || length <= 0) return false;
    return this.damage.overlapping(this.name, offset, offset + length).length > 0;
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    const r = this.range(offset, length);
    if (r === undefined) return Buffer.alloc(0);
    if (r.first !== r.last) return this.copyRange(r);
    // Within one chunk (most metadata reads): a view of the cached plaintext when it lives in
    // ordinary memory (no copy, no new allocation), a copy of arena memory.
    const c = this.index.chunkRange(r.first);
    return stableCopy(await this.holdChunk(r.first), r.start - c.start, r.end - c.start);
  }

  /**
   * ReadAt.readHeld: views of the cached plaintext of every chunk the range touches, lent until
   * release() (no copy: a FUSE reply hands them to the kernel as they are).
   */
  async readHeld(offset: number, length: number): Promise<HeldBytes> {
    const r = this.range(offset, length);
    if (r === undefined) return heldForever(Buffer.alloc(0));
    // A huge range would pin many chunks at once: copy it through a bounded window instead.
    if (r.last - r.first >= MAX_HELD_CHUNKS) return heldForever(await this.copyRange(r));
    const settled = await Promise.allSettled(Array.from({ length: r.last - r.first + 1 }, (_, k) => this.holdChunk(r.first + k)));
    const holds = settled.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
    const failed = settled.find((x) => x.status === 'rejected');
    if (failed !== undefined) {
      for (const h of holds) h.release();
      throw failed.reason;
    }
    const parts = holds.map((h, k) => {
      const c = this.index.chunkRange(r.first + k);
      return h.data.subarray(Math.max(r.start, c.start) - c.start, Math.min(r.end, c.end) - c.start);
    });
    return { parts, length: r.end - r.start, release: () => holds.forEach((h) => h.release()) };
  }

  /**
   * [start, end) of a read, clipped to the stream, and its first and last chunk; undefined when
   * empty. Also notices sequential access and fetches ahead.
   */
  private range(offset: number, length: number): ReadRange | undefined {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new FormatError(`bad read range: offset ${offset}, length ${length}`, { file: this.name });
    }
    const start = Math.min(offset, this.size);
    const end = Math.min(this.size, start + length);
    if (end <= start) return undefined;
    if (end - start > MAX_READ_BYTES) {
      throw new LimitError(`read of ${end - start} bytes exceeds the ${MAX_READ_BYTES}-byte limit for one read`, {
        file: this.name,
        offset,
      });
    }
    const first = this.index.chunkAt(start);
    const last = this.index.chunkAt(end - 1);
    // Sequential access (a stream copy, `cat`, a FUSE reader): fetch the next chunks ahead so
    // their I/O overlaps with this read.
    // Only a step into a new chunk right after the last one counts: reads staying inside one
    // chunk already triggered it on entering, and random readers (a FUSE mount's, which detects
    // sequential reads per open file itself) rarely land exactly there.
    if (first === this.lastChunk + 1 || (first === this.lastChunk && last > first)) this.readAhead(last + 1);
    this.lastChunk = last;
    return { start, end, first, last };
  }

  /** The bytes of a range copied into one new buffer, up to READ_AHEAD chunks fetched at once. */
  private async copyRange(r: ReadRange): Promise<Buffer> {
    const out = Buffer.allocUnsafe(r.end - r.start);
    const pending: Promise<ChunkHold>[] = [];
    let next = r.first;
    const fill = (): void => {
      while (next <= r.last && pending.length < READ_AHEAD) {
        const p = this.holdChunk(next++);
        // A later chunk may fail while an earlier one is still awaited: mark it handled now (the
        // await below still sees the failure), or Node aborts on an unhandled rejection.
        p.catch(() => undefined);
        pending.push(p);
      }
    };
    fill();
    try {
      for (let i = r.first; i <= r.last; i++) {
        const h = await pending.shift()!;
        fill();
        const c = this.index.chunkRange(i);
        const from = Math.max(r.start, c.start);
        const to = Math.min(r.end, c.end);
        h.data.copy(out, from - r.start, from - c.start, to - c.start);
        h.release();
      }
    } catch (e) {
      // Chunks fetched ahead are no longer wanted: give back those that arrive, and keep their
      // failures from going unhandled.
      for (const p of pending) p.then((h) => h.release(), () => undefined);
      throw e;
    }
    return out;
  }

  /** ReadAt.prefetch: starts fetching the chunks under the range (at most 8) into the cache. */
  prefetch(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0 || offset >= this.size) return;
    const first = this.index.chunkAt(offset);
    this.prefetchChunks(first, Math.min(first + 8, this.index.chunkAt(Math.min(this.size, offset + length) - 1) + 1));
  }

  /**
   * ReadAt.forget: drops the cached chunks lying wholly inside the range (a chunk shared with
   * bytes outside it may still be wanted by whoever reads those).
   */
  forget(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0 || offset >= this.size) return;
    const end = Math.min(this.size, offset + length);
    // A streaming reader asks again and again from the start of its file, each time a little
    // further: resume where the last call from the same start stopped.
    let i = this.forgetResume.get(offset) ?? this.index.chunkAt(offset);
    for (; i < this.index.count; i++) {
      const r = this.index.chunkRange(i);
      if (r.end > end) break;
      if (r.start >= offset) this.reader.forget({ digest: this.index.digest(i), expectedSize: r.end - r.start, cryptMode: this.cryptMode });
    }
    this.forgetResume.delete(offset);
    if (this.forgetResume.size >= FORGET_STREAMS) this.forgetResume.delete(this.forgetResume.keys().next().value!);
    this.forgetResume.set(offset, i);
  }

  private readAhead(from: number): void {
    this.prefetchChunks(from, from + SEQUENTIAL_READ_AHEAD);
  }

  /** Hints chunks [from, to) (clipped to the index) to the chunk reader. */
  private prefetchChunks(from: number, to: number): void {
    to = Math.min(this.index.count, to);
    for (let i = from; i < to; i++) {
      const { start, end } = this.index.chunkRange(i);
      this.reader.prefetch({ digest: this.index.digest(i), expectedSize: end - start, cryptMode: this.cryptMode });
    }
  }

  private wrap(e: unknown, i: number, digest: Buffer, start: number): unknown {
    if (!(e instanceof PbsfsError)) return e;
    const problem = `chunk ${i} (digest ${digest.toString('hex')}): ${e.message}`;
    return rewrapError(e, problem, { file: this.name, offset: start, cause: e }) ?? e;
  }
}
