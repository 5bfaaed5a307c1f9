/**
 * One reader session on a PBS server (`proxmox-backup-reader-protocol-v1`): an HTTP/1.1 upgrade
 * of a verified TLS connection, then HTTP/2 on the same connection, for one snapshot.
 *
 * The server lets a session fetch only chunks named by an index it downloaded in that session,
 * so the session remembers the indexes it downloaded: when it has to reconnect (the server
 * dropped it, or it was closed while idle) it downloads them again first, and refuses to go on
 * if one of them changed. Requests run many at once (upstream's pull sync uses 20 per session),
 * each with an idle timeout of its own (upstream has none), and failed or reset requests are
 * retried with backoff. Bytes are only moved here: the chunk reader verifies every chunk.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { IoError, LimitError, NotFoundError, PbsfsError, IntegrityError } from '../../errors.js';
import { formatSnapshotRef, formatNamespace, snapshotRelPath, type Namespace, type SnapshotRef } from '../backup-ref.js';
import { buildQuery, errorText, USER_AGENT, type PbsClient } from './client.js';

export const READER_PROTOCOL = 'proxmox-backup-reader-protocol-v1';
/** Upstream's reader accepts encoded chunks of at most 16 MiB + header on upload. */
export const MAX_REMOTE_CHUNK_BYTES = 16 * 1024 * 1024 + 64;
const MAX_INDEX_REDOWNLOAD_BYTES = 1024 * 1024 * 1024;

export interface ReaderSessionOptions {
  /** Requests in flight at once (default 20, upstream's pull sync level). */
  concurrency: number;
  /** Attempts after the first for a failed or reset request (default 3). */
  retries: number;
  /** First retry delay; each further one is 4x longer. */
  retryDelayMs: number;
  /** The session is closed after this long without a request, and reopened when next needed. */
  idleCloseMs: number;
  maxChunkBytes: number;
}

export const DEFAULT_SESSION_OPTIONS: ReaderSessionOptions = {
  concurrency: 20,
  retries: 3,
  retryDelayMs: 200,
  idleCloseMs: 60_000,
  maxChunkBytes: MAX_REMOTE_CHUNK_BYTES,
};

/** A failure worth another attempt on a fresh stream or session (reset, drop, stall). */
class TransientError extends IoError {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ReaderSession {
  /** Datastore-relative snapshot path, for messages. */
  readonly path: string;
  private h2: ClientHttp2Session | undefined;
  private connecting: Promise<ClientHttp2Session> | undefined;
  /** Index files downloaded in this session, with their SHA-256 (re-registered on reconnect). */
  private readonly indexes = new Map<string, string>();
  private inflight = 0;
  private readonly waiting: (() => void)[] = [];
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly client: PbsClient,
    readonly ns: Namespace,
    readonly ref: SnapshotRef,
    private readonly opts: ReaderSessionOptions = DEFAULT_SESSION_OPTIONS,
  ) {
    this.path = snapshotRelPath(ns, ref);
  }

  /** Opens the session now (a snapshot that does not exist fails here). */
  async open(): Promise<void> {
    await this.session();
  }

  private get where(): string {
    return `${this.client.server}:${this.client.address.store}`;
  }

  private session(): Promise<ClientHttp2Session> {
    if (this.closed) return Promise.reject(new IoError(`${this.where}: the reader session of ${this.path} is closed`));
    if (this.h2 !== undefined && !this.h2.closed && !this.h2.destroyed) return Promise.resolve(this.h2);
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<ClientHttp2Session> {
    let socket: Socket;
    for (let attempt = 0; ; attempt++) {
      try {
        socket = await this.upgrade();
        break;
      } catch (e) {
        if (e instanceof PbsfsError && e.kind === 'crypto' && attempt === 0 && this.client.forgetTicket()) continue;
        throw e;
      }
    }
    const h2 = http2.connect(`https://localhost:8007`, {
      createConnection: () => socket,
      settings: { initialWindowSize: 2 ** 31 - 1, maxFrameSize: 4 * 1024 * 1024 },
    });
    await new Promise<void>((resolve, reject) => {
      h2.once('connect', () => resolve());
      h2.once('error', (e) => reject(this.client.networkError(e, 'the reader session failed')));
    });
    h2.setLocalWindowSize(2 ** 31 - 1);
    h2.on('error', () => undefined); // each stream reports its own failure
    h2.on('goaway', () => h2.destroy());
    this.h2 = h2;
    // The server forgot what this session may fetch: register the indexes again.
    for (const [name, sum] of this.indexes) {
      const raw = await this.fetch(h2, `/download${buildQuery({ 'file-name': name })}`, MAX_INDEX_REDOWNLOAD_BYTES, `${this.path}/${name}`);
      if (createHash('sha256').update(raw).digest('hex') !== sum) {
        throw new IntegrityError(`changed on the server while it was being read (downloaded again after a reconnect)`, {
          file: `${this.where}/${this.path}/${name}`,
        });
      }
    }
    return h2;
  }

  /** GET /api2/json/reader with Upgrade; resolves with the socket that now speaks HTTP/2. */
  private async upgrade(): Promise<Socket> {
    const a = this.client.address;
    const path = `/api2/json/reader${buildQuery({
      store: a.store,
      'backup-type': this.ref.type,
      'backup-id': this.ref.id,
      'backup-time': this.ref.time,
      ns: this.ns.length > 0 ? formatNamespace(this.ns) : undefined,
      debug: false,
    })}`;
    const auth = await this.client.authHeaders();
    const tlsSocket = await this.client.connect();
    const idleMs = this.client.opts.timeouts.idleMs;
    return new Promise<Socket>((resolve, reject) => {
      let settled = false;
      const fail = (e: PbsfsError): void => {
        if (settled) return;
        settled = true;
        req.destroy();
        tlsSocket.destroy();
        reject(e);
      };
      const req = http.request({
        createConnection: () => tlsSocket,
        method: 'GET',
        path,
        headers: {
          Host: `${a.host}:${a.port}`,
          'User-Agent': USER_AGENT,
          'Content-Type': 'application/x-www-form-urlencoded',
          Connection: 'upgrade',
          Upgrade: READER_PROTOCOL,
          ...auth,
        },
      });
      req.setTimeout(idleMs, () => fail(new IoError(`${this.client.server}: no answer to the reader upgrade for ${this.path} within ${idleMs / 1000} s (server stalled)`)));
      req.on('error', (e) => fail(this.client.networkError(e, `opening a reader session for ${this.path} failed`)));
      req.on('upgrade', (res, sock, head) => {
        if (settled) return;
        if (String(res.headers.upgrade ?? '').toLowerCase() !== READER_PROTOCOL) {
          fail(new IoError(`${this.client.server}: the server switched to ${JSON.stringify(res.headers.upgrade)}, not ${READER_PROTOCOL}`));
          return;
        }
        settled = true;
        sock.setTimeout(0);
        if (head.length > 0) sock.unshift(head);
        resolve(sock);
      });
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        let len = 0;
        res.on('data', (d: Buffer) => {
          len += d.length;
          if (len <= 64 * 1024) parts.push(d);
        });
        res.on('end', () => fail(this.upgradeError(res.statusCode ?? 0, Buffer.concat(parts))));
        res.on('error', (e) => fail(this.client.networkError(e, 'reading the reader upgrade answer failed')));
      });
      req.end();
    });
  }

  private upgradeError(status: number, body: Buffer): PbsfsError {
    const text = errorText(body);
    if (/does not exist/.test(text) || status === 404) {
      const inNs = this.ns.length > 0 ? ` in namespace ${formatNamespace(this.ns)}` : '';
      return new NotFoundError(`no such snapshot${inNs} on ${this.where} (${text || `HTTP ${status}`})`, { file: formatSnapshotRef(this.ref) });
    }
    return this.client.statusError({ status, body }, `reader session for ${this.path}`);
  }

  /** Waits for a free request slot (at most `concurrency` in flight). */
  private async slot(): Promise<void> {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    if (this.inflight < this.opts.concurrency) {
      this.inflight++;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) {
      next(); // the slot passes on
      return;
    }
    this.inflight--;
    if (this.inflight === 0 && !this.closed) {
      this.idleTimer = setTimeout(() => this.dropConnection(), this.opts.idleCloseMs);
      this.idleTimer.unref();
    }
  }

  /** Closes the connection while keeping what the session knows (it reconnects when needed). */
  private dropConnection(): void {
    this.idleTimer = undefined;
    const h2 = this.h2;
    this.h2 = undefined;
    h2?.close();
  }

  /** One GET inside the session with retries; `file` names what is fetched in messages. */
  private async request(path: string, maxBytes: number, file: string): Promise<Buffer> {
    await this.slot();
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.fetch(await this.session(), path, maxBytes, file);
        } catch (e) {
          if (!(e instanceof TransientError) || attempt >= this.opts.retries || this.closed) throw e;
          await sleep(this.opts.retryDelayMs * 4 ** attempt);
        }
      }
    } finally {
      this.release();
    }
  }

  private fetch(h2: ClientHttp2Session, path: string, maxBytes: number, file: string): Promise<Buffer> {
    const idleMs = this.client.opts.timeouts.idleMs;
    const what = `${this.where}/${file}`;
    return new Promise<Buffer>((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = h2.request({ ':method': 'GET', ':path': path, 'user-agent': USER_AGENT, 'content-type': 'application/x-www-form-urlencoded' });
      } catch (e) {
        // The session went away between lookup and request: a fresh one is made on retry.
        if (this.h2 === h2) this.h2 = undefined;
        reject(new TransientError(`${what}: the reader session was closed (${(e as Error).message})`));
        return;
      }
      let status = 0;
      const parts: Buffer[] = [];
      let len = 0;
      let settled = false;
      const finish = (e: PbsfsError | undefined, value?: Buffer): void => {
        if (settled) return;
        settled = true;
        if (e !== undefined) {
          if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
          reject(e);
        } else resolve(value!);
      };
      stream.setTimeout(idleMs, () => finish(new TransientError(`${what}: the server sent nothing for ${idleMs / 1000} s (stalled)`)));
      stream.on('response', (h) => {
        status = Number(h[':status'] ?? 0);
        const declared = Number(h['content-length'] ?? NaN);
        if (status === 200 && declared > maxBytes) {
          finish(new LimitError(`the server announced ${declared} bytes, more than the ${maxBytes}-byte limit`, { file: what }));
        }
      });
      stream.on('data', (d: Buffer) => {
        len += d.length;
        const cap = status === 200 ? maxBytes : 64 * 1024;
        if (len > cap) {
          if (status === 200) finish(new LimitError(`the server sent more than the ${maxBytes}-byte limit`, { file: what }));
          return;
        }
        parts.push(d);
      });
      stream.on('end', () => {
        const body = Buffer.concat(parts);
        if (status === 200) finish(undefined, body);
        else finish(this.streamError(status, body, file, what));
      });
      stream.on('error', (e) => finish(new TransientError(`${what}: the transfer failed (${(e as Error).message})`)));
      stream.on('close', () => {
        if (!settled) {
          const code = stream.rstCode;
          finish(new TransientError(`${what}: the server dropped the transfer${code ? ` (HTTP/2 reset code ${code})` : ''}`));
        }
      });
    });
  }

  private streamError(status: number, body: Buffer, file: string, what: string): PbsfsError {
    const text = errorText(body);
    if (status === 404 || /not found|No such file/i.test(text)) {
      return new NotFoundError(`the server has no such file (HTTP ${status}: ${text})`, { file: `${this.path}/${file.split('/').pop()}` });
    }
    if (status === 401) {
      return new IoError(`${what}: the server refused it (HTTP 401: ${text}); a chunk is only served in the reader session that downloaded an index naming it`);
    }
    if (status >= 500) return new TransientError(`${what}: server error HTTP ${status}${text ? `: ${text}` : ''}`);
    return new IoError(`${what}: the server answered HTTP ${status}${text ? `: ${text}` : ''}`);
  }

  /** A whole file of the snapshot (`/download`); an index's chunks become fetchable after it. */
  async download(name: string, maxBytes: number): Promise<Buffer> {
    const raw = await this.request(`/download${buildQuery({ 'file-name': name })}`, maxBytes, name);
    if (/\.(fidx|didx)$/.test(name) && !this.indexes.has(name)) {
      this.indexes.set(name, createHash('sha256').update(raw).digest('hex'));
    }
    return raw;
  }

  /** The raw DataBlob of a chunk (`/chunk`). */
  chunk(digest: Buffer): Promise<Buffer> {
    const hex = digest.toString('hex');
    return this.request(`/chunk${buildQuery({ digest: hex })}`, this.opts.maxChunkBytes, `.chunks/${hex.slice(0, 4)}/${hex}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    const h2 = this.h2;
    this.h2 = undefined;
    if (h2 === undefined) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        h2.destroy();
        resolve();
      }, 2000);
      t.unref();
      h2.close(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
