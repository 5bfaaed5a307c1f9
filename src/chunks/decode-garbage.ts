/**
 * Keeps a decode thread's garbage small: its output buffers are collected every few MiB
 * instead of when V8 gets round to it.
 *
 * Why: OpenSSL hands back every 64 KiB decryption step as a new buffer (see
 * DECRYPT_STEP_BYTES), and the thread allocates nearly nothing else, so V8 collects them only
 * when their external memory has grown by tens of MiB. The decrypting thread's malloc arena then
 * held tens of MiB of dead buffers, and glibc handed them back to the OS at each collection, so
 * the next ones faulted in fresh pages.
 *
 * A young-generation collection after each chunk frees them while they are few, and raising
 * glibc's dynamic mmap threshold (it rises to the size of any large mmapped block freed) stops
 * it from returning the freed memory to the OS each time. Together they cut the faults, the
 * peak RSS and the CPU of a stream; a collection alone, without the threshold, left glibc
 * trimming and refaulting (docs/performance.md).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = (opts: { type: 'minor' | 'major' }) => void;

/** Bytes a thread may produce between collections. */
export const COLLECT_EVERY_BYTES = 2 * 1024 * 1024;

/**
 * Freed once at start-up: glibc then serves blocks up to this size from its arenas, and trims an
 * arena only once twice this much lies free at its top. With 4 MiB one late sweep of two chunks'
 * garbage was enough to trim again and the fault counts swung widely between runs; 8 and 16 MiB
 * held them low, at the same peak RSS.
 */
const MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024;

/**
 * V8's collector, exposed for this thread only: the flag is process-wide, so it is switched
 * back off at once, and only the fresh context made meanwhile sees `gc`. Undefined where the
 * runtime refuses (the thread then keeps V8's own pace).
 */
function exposeCollector(): Collect | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as Collect) : undefined;
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

export class DecodeGarbage {
  private produced = 0;
  /** Collections run so far (for tests and stats). */
  collections = 0;

  /** `collect` undefined: collections are off (the runtime keeps its own pace). */
  constructor(private collect: Collect | undefined) {}

  /** With V8's own collector, where the runtime lets this thread have it. */
  static forThisThread(): DecodeGarbage {
    return new DecodeGarbage(exposeCollector());
  }

  /** Whether collections can run on this thread. */
  get active(): boolean {
    return this.collect !== undefined;
  }

  /** Raises glibc's mmap threshold (see the module comment); call once per process or thread. */
  raiseMmapThreshold(): void {
    if (!this.collect) return;
    let block: Buffer | undefined = Buffer.allocUnsafeSlow(MMAP_THRESHOLD_BYTES);
    block[0] = 1; // touched, so it is surely a block of its own
    block = undefined;
    this.run('major');
  }

  /** Notes `bytes` of output buffers made; collects the young generation every COLLECT_EVERY_BYTES. */
  produce(bytes: number): void {
    if (!this.collect) return;
    this.produced += bytes;
    if (this.produced < COLLECT_EVERY_BYTES) return;
    this.produced = 0;
    if (this.run('minor')) this.collections++;
  }

  /** A runtime whose collector rejects the call only loses the tuning, never a decode. */
  private run(type: 'minor' | 'major'): boolean {
    try {
      this.collect?.({ type });
      return this.collect !== undefined;
    } catch {
      this.collect = undefined;
      return false;
    }
  }
}
