/**
 * Host speed test, in the spirit of `proxmox-backup-client benchmark`: how fast this machine,
 * on one thread, does the work pbsfs does per chunk (hash, zstd, AES-256-GCM, chunk decode and
 * verify). Each test repeats one operation on a 4 MiB buffer for a bounded time, so the whole
 * run takes a few seconds, needs no datastore and no network.
 *
 * Speeds are bytes of plaintext per second. "MB/s" means 10^6 bytes per second, as upstream
 * prints it, so the figures line up with the reference numbers quoted below.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { CryptConfig, aesGcmDecrypt, aesGcmEncrypt } from '../crypto/crypt-config.js';
import { decodeBlob, encodeBlob } from '../blob/data-blob.js';
import { zstdBackendName, zstdCompress, zstdDecompress } from '../../native-shims/zstd.js';
import { UsageError, fromSystemError } from '../errors.js';

/** Which measurement a row is. The first five use upstream's JSON field names. */
export type BenchmarkId =
  | 'sha256'
  | 'compress'
  | 'decompress'
  | 'verify'
  | 'verify_encrypted'
  | 'aes256_gcm'
  | 'aes256_gcm_decrypt'
  | 'mount_read';

export interface BenchmarkRow {
  id: BenchmarkId;
  /** Human label; the rows upstream also has carry upstream's wording. */
  name: string;
  /** Plaintext bytes processed per second. */
  speed: number;
  /** Bytes processed and wall time spent, from which `speed` is computed. */
  bytes: number;
  seconds: number;
  /** The figure the PBS documentation prints for this row (bytes/s), when it has one. */
  reference?: number;
}

export interface CryptoBenchmarkOptions {
  /** Time budget per test in seconds (default 0.5). Each test runs at least one operation. */
  seconds?: number;
  /** Buffer size in bytes (default 4 MiB, the PBS fixed chunk size). */
  bufferSize?: number;
}

export interface CryptoBenchmarkResult {
  bufferSize: number;
  secondsPerTest: number;
  zstdBackend: string;
  rows: BenchmarkRow[];
}

export const DEFAULT_BUFFER_SIZE = 4 * 1024 * 1024;
export const DEFAULT_SECONDS = 0.5;
/** Refuse silly budgets from the command line (a typo like 500 would run for an hour). */
export const MAX_SECONDS = 60;

const MB = 1_000_000;

/**
 * Upstream reference figures, in MB/s: the example run printed in the Proxmox Backup Server
 * documentation (client manual, "Benchmarking" section, `proxmox-backup-client benchmark`).
 * The documentation states that its percentages compare with an AMD Ryzen 7 2700X; the client
 * source holds those baseline figures (`baseline`), which we keep alongside for context.
 */
export const UPSTREAM_REFERENCE = {
  source: 'Proxmox Backup Server documentation, client manual, "Benchmarking" (proxmox-backup-client benchmark example output)',
  docs: { sha256: 2066.73, compress: 775.11, decompress: 1233.35, verify: 783.43, aes256_gcm: 3688.27 },
  baselineCpu: 'AMD Ryzen 7 2700X',
  baseline: { sha256: 2022, compress: 752, decompress: 1198, verify: 758, aes256_gcm: 3645 },
} as const;

type ReferencedId = keyof typeof UPSTREAM_REFERENCE.docs;

export const ROW_NAMES: Record<BenchmarkId, string> = {
  sha256: 'SHA256 checksum computation speed',
  compress: 'ZStd level 1 compression speed',
  decompress: 'ZStd level 1 decompression speed',
  verify: 'Chunk verification speed',
  verify_encrypted: 'Encrypted chunk verification speed (decrypt + decompress + keyed digest)',
  aes256_gcm: 'AES256 GCM encryption speed',
  aes256_gcm_decrypt: 'AES256 GCM decryption speed',
  mount_read: 'Sequential read through the mount',
};

/**
 * The test data: a 4-byte little-endian counter (0, 1, 2, ...), the pattern upstream's benchmark
 * uses. It is not random, so zstd has real work to do, and the figures stay comparable.
 */
export function benchmarkData(size: number): Buffer {
  const buf = Buffer.alloc(size);
  const words = Math.floor(size / 4);
  for (let i = 0; i < words; i++) buf.writeUInt32LE(i, i * 4);
  return buf;
}

/**
 * Repeats `op` (which returns the plaintext bytes it handled) until `seconds` have passed,
 * at least once. Returns bytes and elapsed seconds.
 */
function timeLoop(seconds: number, op: () => number): { bytes: number; seconds: number } {
  const budget = BigInt(Math.round(seconds * 1e9));
  const start = process.hrtime.bigint();
  let bytes = 0;
  let elapsed = 0n;
  do {
    bytes += op();
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < budget);
  return { bytes, seconds: Number(elapsed) / 1e9 };
}

function row(id: BenchmarkId, m: { bytes: number; seconds: number }): BenchmarkRow {
  const r: BenchmarkRow = { id, name: ROW_NAMES[id], speed: m.bytes / m.seconds, bytes: m.bytes, seconds: m.seconds };
  const ref = (UPSTREAM_REFERENCE.docs as Record<string, number>)[id as ReferencedId];
  if (ref !== undefined) r.reference = ref * MB;
  return r;
}

function checkOptions(opts: CryptoBenchmarkOptions): { seconds: number; bufferSize: number } {
  const seconds = opts.seconds ?? DEFAULT_SECONDS;
  const bufferSize = opts.bufferSize ?? DEFAULT_BUFFER_SIZE;
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_SECONDS) {
    throw new UsageError(`the time per test must be more than 0 and at most ${MAX_SECONDS} seconds, got ${seconds}`);
  }
  if (!Number.isSafeInteger(bufferSize) || bufferSize < 4096 || bufferSize > 64 * 1024 * 1024) {
    throw new UsageError(`the buffer size must be between 4 KiB and 64 MiB, got ${bufferSize}`);
  }
  return { seconds, bufferSize };
}

/** Runs the CPU tests (single thread, synchronous; a few seconds with the defaults). */
export function runCryptoBenchmark(opts: CryptoBenchmarkOptions = {}): CryptoBenchmarkResult {
  const { seconds, bufferSize } = checkOptions(opts);
  const data = benchmarkData(bufferSize);
  const crypt = CryptConfig.fromKey(randomBytes(32));
  const rows: BenchmarkRow[] = [];

  rows.push(
    row(
      'sha256',
      timeLoop(seconds, () => {
        createHash('sha256').update(data).digest();
        return data.length;
      }),
    ),
  );

  rows.push(
    row(
      'compress',
      timeLoop(seconds, () => {
        zstdCompress(data, 1);
        return data.length;
      }),
    ),
  );

  const compressed = zstdCompress(data, 1);
  rows.push(
    row(
      'decompress',
      timeLoop(seconds, () => zstdDecompress(compressed, data.length, data.length).length),
    ),
  );

  // Chunk verification as a reader does it for an unencrypted chunk: CRC, decompress, check the
  // size and sha256 digest.
  const plainChunk = encodeBlob(data, { compress: true });
  const plainDigest = createHash('sha256').update(data).digest();
  rows.push(
    row(
      'verify',
      timeLoop(
        seconds,
        () =>
          decodeBlob(plainChunk, {
            name: 'benchmark chunk',
            expectedCryptMode: 'none',
            expectedDigest: plainDigest,
            expectedSize: data.length,
          }).length,
      ),
    ),
  );

  // The same for an encrypted chunk, the path every read of an encrypted snapshot takes.
  const encChunk = encodeBlob(data, { compress: true, crypt });
  const encDigest = crypt.computeDigest(data);
  rows.push(
    row(
      'verify_encrypted',
      timeLoop(
        seconds,
        () =>
          decodeBlob(encChunk, {
            name: 'benchmark chunk',
            crypt,
            expectedCryptMode: 'encrypt',
            expectedDigest: encDigest,
            expectedSize: data.length,
          }).length,
      ),
    ),
  );

  const iv = randomBytes(16);
  rows.push(
    row(
      'aes256_gcm',
      timeLoop(seconds, () => {
        aesGcmEncrypt(crypt.encKey, data, iv);
        return data.length;
      }),
    ),
  );

  const sealed = aesGcmEncrypt(crypt.encKey, data, iv);
  rows.push(
    row(
      'aes256_gcm_decrypt',
      timeLoop(seconds, () => aesGcmDecrypt(crypt.encKey, sealed.iv, sealed.tag, sealed.ciphertext).length),
    ),
  );

  return { bufferSize, secondsPerTest: seconds, zstdBackend: zstdBackendName(), rows };
}

/**
 * Sequential read of `path` (typically a large file inside a mounted snapshot) in `bufferSize`
 * pieces, for at most `seconds` or until the end of the file. What the page cache already holds
 * is read from memory; a fresh mount gives cold figures.
 */
export async function benchmarkSequentialRead(path: string, opts: CryptoBenchmarkOptions = {}): Promise<BenchmarkRow> {
  const { seconds, bufferSize } = checkOptions(opts);
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromSystemError(e, path, 'cannot open the file to read');
  }
  try {
    const buf = Buffer.allocUnsafe(bufferSize);
    const budget = BigInt(Math.round(seconds * 1e9));
    const start = process.hrtime.bigint();
    let bytes = 0;
    let elapsed = 0n;
    for (;;) {
      let n: number;
      try {
        n = (await fh.read(buf, 0, buf.length, bytes)).bytesRead;
      } catch (e) {
        throw fromSystemError(e, path, `read failed at offset ${bytes}`);
      }
      bytes += n;
      elapsed = process.hrtime.bigint() - start;
      if (n === 0 || elapsed >= budget) break;
    }
    if (bytes === 0) throw new UsageError(`${path} is empty: give a non-empty file to read`);
    return row('mount_read', { bytes, seconds: Math.max(Number(elapsed) / 1e9, 1e-9) });
  } finally {
    await fh.close();
  }
}

/** MB/s (10^6 bytes per second) with two decimals, as upstream prints speeds. */
export function formatSpeed(bytesPerSecond: number): string {
  return `${(bytesPerSecond / MB).toFixed(2)} MB/s`;
}

/** The JSON form: stable field names, speeds in bytes/s and MB/s. */
export function benchmarkToJson(result: CryptoBenchmarkResult): Record<string, unknown> {
  return {
    'buffer-size': result.bufferSize,
    'seconds-per-test': result.secondsPerTest,
    'zstd-backend': result.zstdBackend,
    node: process.version,
    results: result.rows.map((r) => ({
      id: r.id,
      name: r.name,
      speed: r.speed,
      'mb-per-s': round2(r.speed / MB),
      bytes: r.bytes,
      seconds: r.seconds,
      ...(r.reference !== undefined ? { 'upstream-reference-mb-per-s': round2(r.reference / MB) } : {}),
    })),
    'upstream-reference': {
      source: UPSTREAM_REFERENCE.source,
      'mb-per-s': UPSTREAM_REFERENCE.docs,
      'baseline-cpu': UPSTREAM_REFERENCE.baselineCpu,
      'baseline-mb-per-s': UPSTREAM_REFERENCE.baseline,
    },
  };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
