/**
 * A read-only S3 client: GetObject (whole or ranged), HeadObject and ListObjectsV2, signed with
 * SigV4 by aws4fetch over Node's fetch. The class has no method that sends anything else, so
 * pbsfs cannot write to a bucket it reads.
 *
 * Every request has a deadline and an idle timeout (a server that stops sending mid-body is cut
 * off), every body a size cap, and 500/503/504 answers, transport errors, timeouts and truncated
 * bodies are retried with backoff, as PBS's own client does (3 tries, 1 s x 3^n). Failures
 * become typed errors naming the bucket and key.
 */
import { AwsClient } from 'aws4fetch';
import { CryptoError, IoError, LimitError, NotFoundError, PbsfsError, UsageError } from '../errors.js';
import type { S3Config } from './s3-config.js';
import { parseListObjectsV2, parseS3Error, type ListedObject } from './s3-xml.js';

/** SHA-256 of the empty payload: SigV4 with the real payload hash (every request here has no body). */
const EMPTY_PAYLOAD_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** Largest ListObjectsV2 page we read (1000 keys of at most 1 KiB each, plus XML). */
const MAX_LIST_PAGE_BYTES = 8 * 1024 * 1024;
/** Largest error body we read. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** A listing that returns more pages than this is taken for a server in a loop. */
const MAX_LIST_PAGES = 1_000_000;

export interface S3ClientOptions {
  /** Tries per request (first one included); default 3. */
  tries?: number;
  /** Backoff before retry n (n = 1, 2, ...): base * 3^(n-1) ms; default 1000 (env PBSFS_S3_RETRY_BASE_MS). */
  retryBaseMs?: number;
  /** Whole-request deadline in ms; default 30 min (env PBSFS_S3_TIMEOUT_MS). */
  timeoutMs?: number;
  /** No byte for this long ends a request (then retried); default 30 s (env PBSFS_S3_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
  /** Requests in flight at once; default 32. */
  maxInFlight?: number;
  /** max-keys of every listing page (tests: force pagination; PBS never sends it). */
  listMaxKeys?: number;
  /** The fetch to send with (tests and TLS pinning pass their own). */
  fetch?: typeof fetch;
  /** Told once about plain-text endpoints and other one-line warnings. */
  warn?: (line: string) => void;
}

export interface GetOptions {
  /** Refuse bodies larger than this (Content-Length or bytes received). */
  maxBytes: number;
  /** Byte range [start, end) to fetch instead of the whole object. */
  range?: readonly [number, number];
}

export interface HeadResult {
  size: number;
  etag: string;
}

/** Methods S3Client sends; tests assert that a server saw nothing else. */
export const S3_READ_METHODS = ['GET', 'HEAD'] as const;

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${name} must be a non-negative number of milliseconds, got ${JSON.stringify(v)}`);
  return n;
}

/** A failure worth another try (server busy, connection lost, body cut short, timeout). */
class Retryable extends Error {
  constructor(
    message: string,
    readonly final: () => PbsfsError,
  ) {
    super(message);
  }
}

/** Counts requests in flight and queues the rest. */
class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async enter(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  leave(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

export class S3Client {
  readonly bucket: string;
  private readonly aws: AwsClient;
  private readonly tries: number;
  private readonly retryBaseMs: number;
  private readonly timeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly fetchFn: typeof fetch;
  private readonly gate: Gate;
  private readonly listMaxKeys: number | undefined;

  constructor(
    readonly config: S3Config,
    opts: S3ClientOptions = {},
  ) {
    this.bucket = config.location.bucket;
    this.aws = new AwsClient({
      ...config.credentials,
      service: 's3',
      region: config.region,
      retries: 0, // retries are ours: aws4fetch's would also retry on errors we must not repeat
    });
    this.tries = Math.max(1, opts.tries ?? 3);
    this.retryBaseMs = opts.retryBaseMs ?? envNumber('PBSFS_S3_RETRY_BASE_MS', 1000);
    this.timeoutMs = opts.timeoutMs ?? envNumber('PBSFS_S3_TIMEOUT_MS', 30 * 60 * 1000);
    this.idleTimeoutMs = opts.idleTimeoutMs ?? envNumber('PBSFS_S3_IDLE_TIMEOUT_MS', 30_000);
    this.fetchFn = opts.fetch ?? fetch;
    this.listMaxKeys = opts.listMaxKeys;
    this.gate = new Gate(Math.max(1, opts.maxInFlight ?? 32));
    if (config.plainHttp) {
      (opts.warn ?? ((l) => process.stderr.write(`pbsfs: warning: ${l}\n`)))(
        `the S3 endpoint ${config.endpoint.origin} is plain http://: requests and data travel unencrypted`,
      );
    }
  }

  /** `s3://bucket/key`, for messages. */
  where(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  /** The URL of an object (keys are URI-encoded with '/' kept) or of the bucket (key ''). */
  url(key: string, query?: Record<string, string>): URL {
    const base = new URL(this.config.endpoint.href);
    const prefix = base.pathname.replace(/\/+$/, '');
    const encodedKey = key.split('/').map(encodeRfc3986).join('/');
    base.pathname = this.config.vhostStyle ? `${prefix}/${encodedKey}` : `${prefix}/${this.bucket}${key === '' ? '' : '/' + encodedKey}`;
    if (query) {
      // Sorted and RFC 3986-encoded, the canonical form SigV4 signs.
      base.search = Object.keys(query)
        .sort()
        .map((k) => `${encodeRfc3986(k)}=${encodeRfc3986(query[k]!)}`)
        .join('&');
    }
    return base;
  }

  /** GetObject: the body (or the asked range), at most opts.maxBytes. */
  async get(key: string, opts: GetOptions): Promise<Buffer> {
    const headers: Record<string, string> = {};
    let expected: number | undefined;
    if (opts.range) {
      const [start, end] = opts.range;
      if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && end > start)) {
        throw new UsageError(`bad byte range [${start}, ${end}) for ${this.where(key)}`);
      }
      if (end - start > opts.maxBytes) throw new LimitError(`range of ${end - start} bytes is more than the ${opts.maxBytes}-byte limit`, { file: this.where(key) });
      headers.range = `bytes=${start}-${end - 1}`;
      expected = end - start;
    }
    return this.request('GET', key, undefined, headers, async (res, idle) => {
      let body = await this.readBody(res, key, opts.range ? Math.max(opts.maxBytes, opts.range[1]) : opts.maxBytes, idle);
      if (opts.range) {
        if (res.status === 200) {
          // The server ignored Range and sent the whole object: take the range from it.
          body = body.subarray(opts.range[0], opts.range[1]);
        } else {
          const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
          if (!cr || Number(cr[1]) !== opts.range[0]) {
            throw new IoError(`the S3 server answered a ranged GET with the wrong Content-Range ${JSON.stringify(res.headers.get('content-range'))}`, { file: this.where(key) });
          }
        }
        if (body.length > expected!) body = body.subarray(0, expected);
      }
      return body;
    });
  }

  /** HeadObject: size and ETag, or undefined when the object does not exist. */
  async head(key: string): Promise<HeadResult | undefined> {
    try {
      return await this.request('HEAD', key, undefined, {}, async (res) => {
        await res.body?.cancel();
        const size = Number(res.headers.get('content-length') ?? 'NaN');
        return { size: Number.isSafeInteger(size) ? size : -1, etag: res.headers.get('etag') ?? '' };
      });
    } catch (e) {
      if (e instanceof NotFoundError && e.file === this.where(key)) return undefined;
      throw e;
    }
  }

  /**
   * ListObjectsV2 over a prefix (no delimiter, as PBS itself lists), following continuation
   * tokens. `maxKeys` is only for tests (PBS never sends it); startAfter skips to a key.
   */
  async *list(prefix: string, opts: { maxKeys?: number; startAfter?: string } = {}): AsyncGenerator<ListedObject> {
    let token: string | undefined;
    const seen = new Set<string>();
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const query: Record<string, string> = { 'list-type': '2', prefix };
      if (token !== undefined) query['continuation-token'] = token;
      else if (opts.startAfter !== undefined) query['start-after'] = opts.startAfter;
      const maxKeys = opts.maxKeys ?? this.listMaxKeys;
      if (maxKeys !== undefined) query['max-keys'] = String(maxKeys);
      const what = `listing of ${this.where(prefix)}`;
      const result = await this.request('GET', '', query, {}, async (res, idle) => {
        const xml = (await this.readBody(res, prefix, MAX_LIST_PAGE_BYTES, idle)).toString('utf8');
        return parseListObjectsV2(xml, what);
      });
      for (const o of result.objects) {
        // A hostile or broken server could send keys outside the prefix: they are not ours.
        if (o.key.startsWith(prefix)) yield o;
      }
      if (!result.isTruncated) return;
      token = result.nextContinuationToken;
      if (token === undefined || token === '') {
        throw new IoError('the S3 listing says it is truncated but gives no continuation token', { file: what });
      }
      if (seen.has(token)) throw new IoError('the S3 listing repeats a continuation token (the server is in a loop)', { file: what });
      seen.add(token);
    }
    throw new LimitError(`the S3 listing has more than ${MAX_LIST_PAGES} pages`, { file: this.where(prefix) });
  }

  /** One signed request with retries; `handle` reads a 2xx answer (and may throw Retryable). */
  private async request<T>(
    method: 'GET' | 'HEAD',
    key: string,
    query: Record<string, string> | undefined,
    headers: Record<string, string>,
    handle: (res: Response, idle: IdleTimer) => Promise<T>,
  ): Promise<T> {
    const url = this.url(key, query);
    const where = key === '' ? `s3://${this.bucket}` : this.where(key);
    let last: (() => PbsfsError) | undefined;
    for (let attempt = 1; attempt <= this.tries; attempt++) {
      if (attempt > 1) await sleep(this.retryBaseMs * 3 ** (attempt - 2));
      await this.gate.enter();
      const ctl = new AbortController();
      const deadline = setTimeout(() => ctl.abort(new Retryable('deadline', () => timeoutError(where, this.timeoutMs, 'deadline'))), this.timeoutMs);
      const idle = new IdleTimer(this.idleTimeoutMs, () =>
        ctl.abort(new Retryable('idle', () => timeoutError(where, this.idleTimeoutMs, 'idle'))),
      );
      try {
        const signed = await this.aws.sign(url.href, {
          method,
          headers: { ...headers, 'x-amz-content-sha256': EMPTY_PAYLOAD_SHA256 },
        });
        let res: Response;
        try {
          res = await this.fetchFn(signed, { signal: ctl.signal, redirect: 'manual' });
        } catch (e) {
          throw this.transportFailure(e, ctl.signal, where);
        }
        idle.poke();
        if (res.status >= 200 && res.status < 300) {
          try {
            return await handle(res, idle);
          } catch (e) {
            throw this.transportFailure(e, ctl.signal, where);
          }
        }
        throw await this.statusFailure(res, method, key, where, idle);
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        last = e.final;
      } finally {
        clearTimeout(deadline);
        idle.stop();
        this.gate.leave();
      }
    }
    throw last!();
  }

  /** A thrown error from fetch or from reading a body: a timeout, a cut connection, or ours. */
  private transportFailure(e: unknown, signal: AbortSignal, where: string): unknown {
    if (e instanceof PbsfsError || e instanceof Retryable) return e;
    if (signal.aborted && signal.reason instanceof Retryable) return signal.reason;
    const detail = describeTransportError(e);
    return new Retryable(detail, () => new IoError(`cannot reach the S3 endpoint ${this.config.endpoint.origin}: ${detail}`, { file: where, cause: e }));
  }

  /** Maps a non-2xx answer to a typed error (Retryable for 500/503/504). */
  private async statusFailure(res: Response, method: string, key: string, where: string, idle: IdleTimer): Promise<unknown> {
    let body = '';
    if (method !== 'HEAD') {
      try {
        body = (await this.readBody(res, key, MAX_ERROR_BODY_BYTES, idle, true)).toString('utf8');
      } catch {
        body = '';
      }
    } else {
      await res.body?.cancel().catch(() => {});
    }
    const err = parseS3Error(body);
    const code = err.code ?? '';
    const status = res.status;
    const detail = `HTTP ${status}${code ? ` ${code}` : ''}${err.message ? `: ${err.message}` : ''}`;
    if (status === 500 || status === 503 || status === 504) {
      const final =
        code === 'SlowDown'
          ? () => new IoError(`the S3 endpoint keeps throttling requests (503 SlowDown) after ${this.tries} tries; try again later`, { file: where })
          : () => new IoError(`the S3 endpoint keeps failing (${detail}) after ${this.tries} tries`, { file: where });
      return new Retryable(detail, final);
    }
    const regionHint = err.region ?? res.headers.get('x-amz-bucket-region') ?? undefined;
    if (code === 'AuthorizationHeaderMalformed' || code === 'PermanentRedirect' || code === 'IllegalLocationConstraintException' || status === 301) {
      const hint = regionHint ? `: the bucket is in region ${regionHint}; use --s3-region ${regionHint}` : ': check --s3-region and --s3-endpoint';
      return new UsageError(`the bucket ${this.bucket} is not in region ${this.config.region} (${detail})${hint}`, { file: where });
    }
    if (code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'InvalidToken' || code === 'ExpiredToken') {
      return new CryptoError(`the S3 endpoint rejected the credentials (${code}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN`, { file: where });
    }
    if (status === 403) {
      return new CryptoError(`access denied by the S3 endpoint (${detail}): the credentials may not read this bucket`, { file: where });
    }
    if (code === 'NoSuchBucket' || (status === 404 && key === '')) {
      return new NotFoundError(`the bucket ${this.bucket} does not exist at ${this.config.endpoint.origin}`, { file: `s3://${this.bucket}` });
    }
    if (status === 404) return new NotFoundError('no such object in the bucket', { file: where });
    if (status === 416) return new LimitError(`the asked byte range is outside the object (${detail})`, { file: where });
    return new IoError(`unexpected answer from the S3 endpoint (${detail})`, { file: where });
  }

  /**
   * The whole body, refusing more than maxBytes. A body shorter than its Content-Length (a cut
   * connection) is retried; one that keeps arriving past the cap is refused at once.
   */
  private async readBody(res: Response, key: string, maxBytes: number, idle: IdleTimer, lenient = false): Promise<Buffer> {
    const where = this.where(key);
    const declared = res.headers.get('content-length');
    const length = declared === null ? undefined : Number(declared);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
      throw new IoError(`the S3 server sent a bad Content-Length ${JSON.stringify(declared)}`, { file: where });
    }
    if (length !== undefined && length > maxBytes) {
      await res.body?.cancel().catch(() => {});
      if (lenient) return Buffer.alloc(0);
      throw new LimitError(`object is ${length} bytes, more than the ${maxBytes}-byte limit`, { file: where });
    }
    const out = length !== undefined ? Buffer.allocUnsafeSlow(length) : undefined;
    const parts: Buffer[] = [];
    let got = 0;
    if (res.body) {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        idle.poke();
        if (got + value.byteLength > (length ?? maxBytes)) {
          await reader.cancel().catch(() => {});
          if (lenient) break;
          throw length !== undefined
            ? new IoError(`the S3 server sent more than the ${length} bytes of its Content-Length`, { file: where })
            : new LimitError(`object is more than the ${maxBytes}-byte limit`, { file: where });
        }
        if (out) out.set(value, got);
        else parts.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
        got += value.byteLength;
      }
    }
    if (length !== undefined && got !== length && !lenient) {
      throw new Retryable('short body', () => new IoError(`the S3 server sent ${got} of ${length} bytes (the body was cut short)`, { file: where }));
    }
    return out ? out.subarray(0, got) : Buffer.concat(parts, got);
  }
}

/** A timer that fires after `ms` without a poke(). */
class IdleTimer {
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly ms: number,
    private readonly fire: () => void,
  ) {
    this.poke();
  }
  poke(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(this.fire, this.ms);
  }
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function timeoutError(where: string, ms: number, kind: 'deadline' | 'idle'): IoError {
  return kind === 'idle'
    ? new IoError(`the S3 endpoint sent nothing for ${ms} ms (stalled); gave up after retries`, { file: where })
    : new IoError(`the S3 request did not finish within ${ms} ms; gave up after retries`, { file: where });
}

function describeTransportError(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return e instanceof Error ? e.message : String(e);
}

/** RFC 3986 encoding (what SigV4 canonicalises to): everything but A-Z a-z 0-9 - _ . ~. */
export function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
