/**
 * zstd for the read path and the writer, from native libzstd: a pure-JS codec is ~10x slower
 * and is never used here.
 *
 * Two backends: the `zstd-napi` addon (N-API, so one build serves Node 20, 22 and 24) and, on
 * Node >= 22.15, the zstd in `node:zlib`. The addon is preferred wherever it loads, because only
 * it decodes into memory we give it, in steps: chunks then land in reused (already resident)
 * pages, and the pipelined decoder hashes each step while the next is decoded. `node:zlib`
 * returns fresh memory for every call (copied afterwards) and reports once per frame, which
 * made it markedly slower into the chunk cache (docs/performance.md).
 * `node:zlib` is the fallback when the addon did not build; PBSFS_ZSTD=zlib or =napi forces one.
 *
 * The backend is chosen once, lazily, so commands that never touch compressed data do not load
 * a native module.
 */
import * as zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { ZstdFrameProblem, zstdFrameSpans } from './zstd-frames.js';

export class ZstdError extends Error {}
/** Thrown when the decoded output would exceed the caller's limit (a decompression bomb). */
export class ZstdLimitError extends ZstdError {}

export interface ZstdBackend {
  readonly name: 'zstd-napi' | 'node:zlib';
  /** Decompress all frames; throw ZstdLimitError beyond maxOutput bytes. */
  decompress(src: Uint8Array, maxOutput: number, expectedSize?: number): Buffer;
  /**
   * Decompress all frames into `dst`; returns the bytes written; ZstdLimitError if they do not
   * fit. With `progress`, reports the bytes written so far every `progress.step` bytes or so.
   */
  decompressInto(src: Uint8Array, dst: Uint8Array, progress?: DecompressProgress): number;
  compress(src: Uint8Array, level: number): Buffer;
}

/** See zstdDecompressInto. */
export interface DecompressProgress {
  /** Output bytes per report (the backend may report less often: node:zlib once per frame). */
  step: number;
  /** Called with the bytes written so far, growing. */
  report(written: number): void;
}

// Types of the parts of `node:zlib` zstd (Node >= 22.15) and `zstd-napi` we use; @types/node 20
// does not declare them.
interface ZlibZstd {
  zstdDecompressSync(buf: Uint8Array, opts: { maxOutputLength?: number; info: true }): { buffer: Buffer; engine: { bytesWritten: number } };
  zstdCompressSync(buf: Uint8Array, opts?: { params?: Record<number, number> }): Buffer;
  constants: { ZSTD_c_compressionLevel: number };
}
interface ZstdNapiBinding {
  DCtx: new () => {
    decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number];
    reset(directive: number): void;
  };
  compress(dst: Uint8Array, src: Uint8Array, level: number): number;
  compressBound(size: number): number;
  ResetDirective: { sessionOnly: number };
}

function zlibBackend(z: ZlibZstd): ZstdBackend {
  /**
   * Decodes the frames of `src` one call each (see zstd-frames.ts for why), handing each
   * frame's output to `take`; refuses output beyond `limit` bytes in all.
   */
  function eachFrame(src: Uint8Array, limit: number, take: (out: Buffer, before: number) => void): number {
    const spans = zstdFrameSpans(src);
    if (spans instanceof ZstdFrameProblem) throw new ZstdError(`zstd: ${spans.reason}`);
    let total = 0;
    for (const span of spans) {
      if (span.skippable) continue;
      const room = limit - total;
      let out: Buffer;
      try {
        // maxOutputLength must be at least 1; an empty frame still fits in no room.
        const r = z.zstdDecompressSync(src.subarray(span.start, span.end), { maxOutputLength: Math.max(1, room), info: true });
        if (r.engine.bytesWritten !== span.end - span.start) throw new ZstdError('zstd: frame not decoded to its end');
        out = r.buffer;
      } catch (e) {
        if (e instanceof ZstdError) throw e;
        if (e instanceof RangeError || (e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
          throw new ZstdLimitError(`zstd output exceeds ${limit} bytes`);
        }
        throw new ZstdError(`zstd: ${(e as Error).message}`);
      }
      if (out.length > room) throw new ZstdLimitError(`zstd output exceeds ${limit} bytes`);
      take(out, total);
      total += out.length;
    }
    return total;
  }
  return {
    name: 'node:zlib',
    decompress(src, maxOutput) {
      const parts: Buffer[] = [];
      const total = eachFrame(src, maxOutput, (out) => parts.push(out));
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
    },
    decompressInto(src, dst, progress) {
      // node:zlib cannot write into given memory: each frame is decoded, then copied.
      return eachFrame(src, dst.length, (out, before) => {
        dst.set(out, before);
        if (out.length > 0) progress?.report(before + out.length);
      });
    },
    compress(src, level) {
      return z.zstdCompressSync(src, { params: { [z.constants.ZSTD_c_compressionLevel]: level } });
    },
  };
}

function napiBackend(b: ZstdNapiBinding): ZstdBackend {
  let dctx: InstanceType<ZstdNapiBinding['DCtx']> | undefined;
  const spare = new Uint8Array(1);
  return {
    name: 'zstd-napi',
    decompressInto(src, dst, progress) {
      dctx ??= new b.DCtx();
      dctx.reset(b.ResetDirective.sessionOnly);
      let written = 0;
      let read = 0;
      // Without progress, room for everything at once; with it, `step` bytes of room per call.
      const step = progress !== undefined ? Math.max(1, progress.step) : dst.length;
      try {
        for (;;) {
          const full = written === dst.length;
          // Once `dst` is full, one spare byte tells whether the frames hold more.
          const [ret, w, r] = dctx.decompressStream(full ? spare : dst.subarray(written, Math.min(dst.length, written + step)), src.subarray(read));
          if (full && w > 0) throw new ZstdLimitError(`zstd output exceeds ${dst.length} bytes`);
          written += w;
          read += r;
          if (w > 0) progress?.report(written);
          // ret === 0: a frame ended and is fully flushed; more frames may follow.
          if (ret === 0 && read === src.length) return written;
          if (w === 0 && r === 0) throw new ZstdError(read === src.length ? 'zstd: truncated frame' : 'zstd: decoder made no progress');
        }
      } catch (e) {
        // The session reset at the start of the next call clears any error state (see below).
        if (e instanceof ZstdError) throw e;
        throw new ZstdError(`zstd: ${(e as Error).message}`);
      }
    },
    decompress(src, maxOutput, expectedSize) {
      dctx ??= new b.DCtx();
      dctx.reset(b.ResetDirective.sessionOnly);
      // Decode straight into one buffer; when the caller knows the size (chunks: the index says
      // it) one pass suffices. One spare byte lets us notice output beyond the limit.
      let cap = Math.min(maxOutput + 1, Math.max(expectedSize !== undefined ? expectedSize + 1 : src.length * 4, 64 * 1024));
      let out = Buffer.allocUnsafe(cap);
      let written = 0;
      let read = 0;
      try {
        for (;;) {
          if (written === out.length) {
            if (out.length > maxOutput) throw new ZstdLimitError(`zstd output exceeds ${maxOutput} bytes`);
            cap = Math.min(maxOutput + 1, out.length * 2);
            const bigger = Buffer.allocUnsafe(cap);
            out.copy(bigger, 0, 0, written);
            out = bigger;
          }
          const [ret, w, r] = dctx.decompressStream(out.subarray(written), src.subarray(read));
          written += w;
          read += r;
          if (written > maxOutput) throw new ZstdLimitError(`zstd output exceeds ${maxOutput} bytes`);
          // ret === 0: a frame ended and is fully flushed; more frames may follow.
          if (ret === 0 && read === src.length) break;
          if (written < out.length && read === src.length) throw new ZstdError('zstd: truncated frame');
          if (w === 0 && r === 0 && written < out.length) throw new ZstdError('zstd: decoder made no progress');
        }
      } catch (e) {
        // Keep the context: the session reset at the start of the next call clears any error
        // state (zstd documents reset_session_only for that). Dropping it instead leaked about
        // 30 KiB of native memory per failed call (zstd-napi contexts are not freed by the GC).
        if (e instanceof ZstdError) throw e;
        throw new ZstdError(`zstd: ${(e as Error).message}`);
      }
      return out.subarray(0, written);
    },
    compress(src, level) {
      const dst = Buffer.allocUnsafe(b.compressBound(src.length));
      const n = b.compress(dst, src, level);
      return dst.subarray(0, n);
    },
  };
}

let backend: ZstdBackend | undefined;

/** The addon's backend, or why it did not load. */
function tryNapi(): ZstdBackend | Error {
  try {
    return napiBackend(createRequire(import.meta.url)('zstd-napi/binding') as ZstdNapiBinding);
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** The node:zlib backend, where this Node has zstd (>= 22.15). */
function tryZlib(): ZstdBackend | undefined {
  const z = zlib as unknown as Partial<ZlibZstd>;
  return typeof z.zstdDecompressSync === 'function' ? zlibBackend(z as ZlibZstd) : undefined;
}

function loadBackend(): ZstdBackend {
  if (backend) return backend;
  const forced = process.env.PBSFS_ZSTD || undefined;
  if (forced !== undefined && forced !== 'zlib' && forced !== 'napi') throw new ZstdError(`PBSFS_ZSTD must be "zlib" or "napi", not "${forced}"`);
  if (forced === 'zlib') {
    backend = tryZlib();
    if (backend === undefined) throw new ZstdError(`PBSFS_ZSTD=zlib, but this Node (${process.version}) has no zstd in node:zlib (it needs 22.15 or newer)`);
    return backend;
  }
  const napi = tryNapi();
  if (!(napi instanceof Error)) return (backend = napi);
  const fallback = forced === 'napi' ? undefined : tryZlib();
  if (fallback !== undefined) return (backend = fallback);
  throw new ZstdError(
    `no zstd implementation: the zstd-napi addon did not load (${napi.message})${forced === 'napi' ? '' : ` and this Node (${process.version}) has no zstd in node:zlib`}; run scripts/setup.sh`,
  );
}

/**
 * Every backend this runtime can load, each usable on its own (tests run the same cases through
 * all of them; the read path uses zstdBackendName()'s).
 */
export function availableZstdBackends(): ZstdBackend[] {
  const found: ZstdBackend[] = [];
  const napi = tryNapi();
  if (!(napi instanceof Error)) found.push(napi);
  const z = tryZlib();
  if (z !== undefined) found.push(z);
  return found;
}

export function zstdBackendName(): string {
  return loadBackend().name;
}

/**
 * Decompresses every zstd frame in `src`. Frames without a content size are fine.
 * @param maxOutput refuse output beyond this many bytes (decompression bomb guard)
 * @param expectedSize a hint for the output buffer size, when the caller knows it
 */
export function zstdDecompress(src: Uint8Array, maxOutput: number, expectedSize?: number): Buffer {
  return loadBackend().decompress(src, maxOutput, expectedSize);
}

/**
 * Decompresses every zstd frame in `src` into `dst` (no new memory); returns the bytes written.
 * Throws ZstdLimitError when the output would not fit in `dst`.
 */
export function zstdDecompressInto(src: Uint8Array, dst: Uint8Array, progress?: DecompressProgress): number {
  return loadBackend().decompressInto(src, dst, progress);
}

export function zstdCompress(src: Uint8Array, level = 1): Buffer {
  return loadBackend().compress(src, level);
}
