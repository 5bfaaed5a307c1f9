/**
 * Reading a file into memory in pieces, with the bytes read so far published as they land, so a
 * consumer (a decode worker) can start on the front of a chunk while its end is still on disk.
 *
 * Why: a cold 4 MiB chunk takes about as long to read as to decrypt and hash; done one after the
 * other, a random 4 KiB read of a cold chunk waits for both.
 *
 * Progress lives in shared memory (an Int32Array over a SharedArrayBuffer) so worker threads
 * can wait on it with Atomics.wait without a message round trip per piece. Pieces are read by
 * a few concurrent lanes (the disk serves a queue faster than one request at a time) and may
 * finish out of order; only the contiguous prefix counts as filled.
 */
import type { FileHandle } from 'node:fs/promises';

const PAGE = 4096;

export interface ProgressiveReadOptions {
  /** Bytes per read request; a multiple of the page size (O_DIRECT). */
  pieceBytes: number;
  /** Read requests in flight at once. */
  lanes: number;
  /** Turns a failure into the error `done` rejects with (e.g. one naming the file). */
  wrapError: (e: unknown) => Error;
}

function noop(): void {}

/**
 * Reads `size` bytes of `fh` into `buf` (page-aligned, at least `size` rounded up to pages
 * long). The file handle is closed once every read has settled.
 */
export class ProgressiveRead {
  /** Index 0: bytes read from the start, in order; -1 once a read failed. */
  readonly filled = new Int32Array(new SharedArrayBuffer(4));
  /** Resolves when every byte is read; rejects with the (wrapped) read error. Settles only after all requests have. */
  readonly done: Promise<void>;
  /** Resolves once the first piece is in memory (or the read is over); rejects like `done` if it fails first. */
  readonly started: Promise<void>;
  private readonly followers: ((start: number, end: number) => void)[] = [];
  private readonly pieceDone: Uint8Array;
  private prefixPieces = 0;
  private nextPiece = 0;
  private failure: Error | undefined;
  private markStarted: (() => void) | undefined;

  constructor(
    private readonly fh: FileHandle,
    private readonly buf: Buffer,
    private readonly size: number,
    private readonly opts: ProgressiveReadOptions,
  ) {
    if (opts.pieceBytes % PAGE !== 0 || opts.pieceBytes <= 0) throw new RangeError(`piece size must be a positive multiple of ${PAGE}`);
    if (buf.length < Math.ceil(size / PAGE) * PAGE) throw new RangeError('buffer is smaller than the file rounded to pages');
    const pieces = Math.ceil(size / opts.pieceBytes);
    this.pieceDone = new Uint8Array(pieces);
    let startedOk!: () => void;
    let startedFail!: (e: Error) => void;
    this.started = new Promise<void>((resolve, reject) => {
      startedOk = resolve;
      startedFail = reject;
    });
    this.markStarted = startedOk;
    const lanes = Array.from({ length: Math.max(1, Math.min(opts.lanes, pieces)) }, () => this.lane());
    this.done = Promise.allSettled(lanes).then(async () => {
      await this.fh.close().catch(noop);
      if (this.failure !== undefined) {
        startedFail(this.failure);
        throw this.failure;
      }
      this.markStarted?.();
    });
    // Nobody may be listening when it fails; whoever awaits later still sees the rejection.
    this.done.catch(noop);
    this.started.catch(noop);
    if (pieces === 0) this.markStarted();
  }

  /** See ArrivingChunk.follow. */
  follow(fn: (start: number, end: number) => void): void {
    const now = Atomics.load(this.filled, 0);
    if (now > 0) fn(0, now);
    this.followers.push(fn);
  }

  private async lane(): Promise<void> {
    const pieceBytes = this.opts.pieceBytes;
    while (this.failure === undefined && this.nextPiece < this.pieceDone.length) {
      const i = this.nextPiece++;
      const start = i * pieceBytes;
      const end = Math.min(this.size, start + pieceBytes);
      try {
        await this.readSpan(start, end);
      } catch (e) {
        this.fail(e);
        return;
      }
      this.pieceDone[i] = 1;
      this.advance();
    }
  }

  /** Reads [start, end) of the file; O_DIRECT moves whole pages, so ask for the span rounded up. */
  private async readSpan(start: number, end: number): Promise<void> {
    const want = Math.ceil(end / PAGE) * PAGE;
    let pos = start;
    while (pos < end) {
      const { bytesRead } = await this.fh.read(this.buf, pos, want - pos, pos);
      if (bytesRead === 0) throw Object.assign(new Error(`file ended at byte ${pos}, expected ${this.size}`), { code: 'EIO' });
      pos += bytesRead;
      // A short read that stops off a page boundary cannot be continued with O_DIRECT.
      if (pos < end && pos % PAGE !== 0) throw Object.assign(new Error('short unaligned O_DIRECT read'), { code: 'EINVAL' });
    }
  }

  private advance(): void {
    if (this.failure !== undefined) return; // filled stays -1
    const before = this.prefixPieces;
    while (this.prefixPieces < this.pieceDone.length && this.pieceDone[this.prefixPieces] === 1) this.prefixPieces++;
    if (this.prefixPieces === before) return;
    const from = Atomics.load(this.filled, 0);
    const to = Math.min(this.size, this.prefixPieces * this.opts.pieceBytes);
    Atomics.store(this.filled, 0, to);
    Atomics.notify(this.filled, 0);
    try {
      for (const f of this.followers) f(from, to);
    } catch (e) {
      this.fail(e);
    }
    if (this.markStarted !== undefined) {
      this.markStarted();
      this.markStarted = undefined;
    }
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = this.opts.wrapError(e);
    Atomics.store(this.filled, 0, -1);
    Atomics.notify(this.filled, 0);
  }
}
