/**
 * A ChunkDecoder that runs decoding (CRC, AES-GCM, zstd, SHA-256) on a few worker threads, so
 * the main thread keeps serving reads while chunks decode in parallel. Opt-in: pass
 * `pool.decoder` to a ChunkReader. Workers are unref'd (they never keep the process alive) and
 * errors come back as the same typed errors the in-process decoder throws.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  CryptoError,
  FormatError,
  IntegrityError,
  IoError,
  LimitError,
  NotFoundError,
  UnsupportedError,
  UsageError,
  type ErrorKind,
  type PbsfsError,
} from '../errors.js';
import { inlineChunkDecoder, type ChunkDecoder, type ChunkDecodeJob, type PipelinedDecoder } from './chunk-decoder.js';
import { pipelinedDecode, type StagePost } from './pipelined-decode.js';
import type { DecodeRequestMessage, DecodeResponseMessage, WorkerReadyMessage, WorkerRequestMessage } from './worker-protocol.js';

const ERROR_CLASSES: Record<ErrorKind, new (problem: string) => PbsfsError> = {
  format: FormatError,
  integrity: IntegrityError,
  crypto: CryptoError,
  'not-found': NotFoundError,
  usage: UsageError,
  unsupported: UnsupportedError,
  io: IoError,
  limit: LimitError,
};

type OkResponse = Extract<DecodeResponseMessage, { ok: true }>;

interface Pending {
  resolve: (m: OkResponse) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  /** The worker has loaded its modules and answers requests. */
  ready: boolean;
}

export interface WorkerPoolOptions {
  /** Worker count; default: available cores - 1, at least 1, at most 4. */
  threads?: number;
  /** The compiled worker script (default: decode-worker.js next to this module). */
  workerUrl?: URL;
  /**
   * Decode on the calling thread while no worker has started yet (and skip pipelining until both
   * have), instead of queueing behind their start-up.
   * For the first requests a fresh mount answers, that start-up would be most of the wait.
   */
  inlineUntilReady?: boolean;
}

export class WorkerPoolDecoder {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;
  private readonly inlineUntilReady: boolean;

  constructor(opts: WorkerPoolOptions = {}) {
    const n = opts.threads ?? Math.max(1, Math.min(4, availableParallelism() - 1));
    const url = opts.workerUrl ?? new URL('./decode-worker.js', import.meta.url);
    this.inlineUntilReady = opts.inlineUntilReady ?? false;
    for (let i = 0; i < n; i++) this.slots.push(this.spawn(url));
    if (n >= 2) {
      const decrypting = this.slots[0]!;
      const hashing = this.slots[1]!;
      const stages: { decrypt: StagePost; digest: StagePost } = {
        decrypt: (msg) => this.send(decrypting, msg),
        digest: (msg) => this.send(hashing, msg),
      };
      // Compressed chunks only while both threads are idle: one chunk then waits for its decode
      // (a cold file being opened), and splitting it over both threads shortens that wait. With
      // more in flight (a stream, a listing reading ahead) two chunks decoded whole, one per
      // thread, go faster (docs/performance.md).
      const idle = (): boolean => decrypting.pending.size === 0 && hashing.pending.size === 0;
      this.pipelined = (lease, job, dest) =>
        this.closed || (this.inlineUntilReady && !(decrypting.ready && hashing.ready)) ? undefined : pipelinedDecode(lease, job, dest, stages, idle());
    }
  }

  private spawn(url: URL): Slot {
    const slot: Slot = { worker: undefined as unknown as Worker, pending: new Map(), ready: false };
    this.start(slot, url);
    return slot;
  }

  /** (Re)starts the worker of a slot; a crashed worker fails its jobs and is replaced. */
  private start(slot: Slot, url: URL): void {
    const worker = new Worker(url);
    slot.worker = worker;
    slot.ready = false;
    worker.unref();
    worker.on('message', (m: DecodeResponseMessage | WorkerReadyMessage) => {
      if ('ready' in m) {
        slot.ready = true;
        if (this.slots.every((s) => s.ready)) for (const w of this.readyWaiters.splice(0)) w();
        return;
      }
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      if (slot.pending.size === 0) worker.unref();
      if (m.ok) p.resolve(m);
      else p.reject(this.rebuildError(m));
    });
    const failAll = (e: Error): void => {
      for (const p of slot.pending.values()) p.reject(e);
      slot.pending.clear();
    };
    worker.on('error', (e) => failAll(e instanceof Error ? e : new Error(String(e))));
    worker.on('exit', (code) => {
      failAll(new Error(`chunk decode worker exited (code ${code})`));
      if (!this.closed && slot.worker === worker) this.start(slot, url);
    });
  }

  private rebuildError(m: Extract<DecodeResponseMessage, { ok: false }>): Error {
    if (m.kind === 'bug') return new Error(`chunk decode worker: ${m.message}`);
    const Cls = ERROR_CLASSES[m.kind];
    // The message already names the file; keep `file` for callers that inspect it.
    const e = new Cls(m.message);
    (e as { file: string | undefined }).file = m.file;
    return e;
  }

  /** The decoder to give to a ChunkReader. */
  readonly decoder: ChunkDecoder = async (raw: Buffer, job: ChunkDecodeJob, dest?: Buffer): Promise<Buffer> => {
    // Least busy worker (of those started, when decoding inline is allowed meanwhile).
    let slot: Slot | undefined;
    for (const s of this.slots) {
      if (this.inlineUntilReady && !s.ready) continue;
      if (slot === undefined || s.pending.size < slot.pending.size) slot = s;
    }
    if (slot === undefined) return inlineChunkDecoder(raw, job, dest);
    const msg: DecodeRequestMessage = {
      type: 'decode',
      id: 0,
      raw,
      digest: job.digest,
      expectedSize: job.expectedSize,
      cryptMode: job.cryptMode,
      name: job.name,
      ...(job.crypt ? { key: job.crypt.encKey } : {}),
      // Only shared memory can be written by the worker; other memory would arrive as a copy.
      ...(dest !== undefined && dest.buffer instanceof SharedArrayBuffer ? { dest } : {}),
    };
    // Move large raw buffers that own their memory instead of copying them (the reader does not
    // use `raw` after decoding).
    // Shared memory (a store's pooled read buffer) is shared with the worker, never moved.
    const ab = raw.buffer;
    const transfer = ab instanceof ArrayBuffer && raw.length >= 65536 && raw.byteOffset === 0 && ab.byteLength === raw.length ? [ab] : [];
    const m = await this.send(slot, msg, transfer);
    if ('intoDest' in m && msg.dest !== undefined) return dest!;
    if (!('plain' in m)) throw new Error('chunk decode worker: unexpected answer to a decode');
    return Buffer.from(m.plain.buffer, m.plain.byteOffset, m.plain.byteLength);
  };

  /**
   * The pipelined decoder to give to a ChunkReader (ChunkReaderOptions.pipelined), or undefined
   * with fewer than two threads. The first worker always decrypts and the second always hashes:
   * a hashing stage only ever waits on a decrypting stage queued on the other thread, never on
   * one behind itself, so stages cannot deadlock.
   */
  readonly pipelined: PipelinedDecoder | undefined;

  /** Workers that have started and take requests. */
  get readyWorkers(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  private readonly readyWaiters: (() => void)[] = [];

  /** Settles once every worker has started (at once if they have; never fails). */
  whenReady(): Promise<void> {
    if (this.closed || this.slots.every((s) => s.ready)) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private send(slot: Slot, msg: WorkerRequestMessage, transfer: ArrayBuffer[] = []): Promise<OkResponse> {
    if (this.closed) return Promise.reject(new Error('chunk decode pool is closed'));
    const id = this.nextId++;
    msg.id = id;
    return new Promise<OkResponse>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      if (slot.pending.size === 1) slot.worker.ref(); // keep the process alive while work is queued
      try {
        slot.worker.postMessage(msg, transfer);
      } catch {
        slot.worker.postMessage(msg); // untransferable memory: copy
      }
    });
  }

  /** Stops the workers; pending decodes fail. Resolves when they are gone (at most ~2 s). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.readyWaiters.splice(0)) w();
    // A timer holds the event loop open meanwhile: the termination of a worker alone does not
    // reliably do so, and a process awaiting close() at top level could end mid-await (exit 13).
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 2000);
    });
    try {
      await Promise.race([Promise.all(this.slots.map((s) => s.worker.terminate())), limit]);
    } finally {
      clearTimeout(timer);
    }
  }
}
