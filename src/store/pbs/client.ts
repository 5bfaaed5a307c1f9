/**
 * The connection to a PBS server: TLS with CA validation or a pinned certificate fingerprint,
 * authentication (API token, or ticket + CSRF token renewed before expiry), and the REST calls
 * of the listing API. Every request has timeouts of its own and a bound on the response size;
 * nothing is sent (credentials included) before the certificate has been accepted.
 */
import http from 'node:http';
import { isIP } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { CryptoError, FormatError, IoError, LimitError, NotFoundError, PbsfsError, UsageError } from '../../errors.js';
import { formatPbsAddress, isTokenAuthId, socketHost, type PbsAddress } from './address.js';

export const USER_AGENT = 'proxmox-backup-client/1.0';
/** Upstream renews its ticket every 15 minutes; tickets live 2 hours. */
const TICKET_RENEW_MS = 15 * 60 * 1000;
/** Error texts are shown in one sentence: longer ones are cut. */
const MAX_ERROR_TEXT = 300;
/** Listing responses bigger than this are refused (a datastore of ~100,000 snapshots fits). */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

export interface PbsTimeouts {
  /** TCP connect plus TLS handshake (upstream: 10 s). */
  connectMs: number;
  /** Longest silence while a response is awaited or arrives, per request. */
  idleMs: number;
}

export interface PbsClientOptions {
  address: PbsAddress;
  /** The password or API token secret; asked for at most once, when first needed. */
  secret: () => Promise<string>;
  /** Pinned SHA-256 fingerprint of the server certificate, lowercase `aa:bb:…`. */
  fingerprint?: string;
  /** CA certificates to validate the server with, instead of the system's. */
  ca?: string | Buffer;
  timeouts: PbsTimeouts;
}

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** `aa:bb:…` form of a fingerprint Node prints as `AA:BB:…`. */
export function normaliseFingerprint(fp: string): string {
  return fp.trim().toLowerCase();
}

const FINGERPRINT_RE = /^([0-9a-f]{2}:){31}[0-9a-f]{2}$/;

export function checkFingerprintSyntax(fp: string, source: string): string {
  const n = normaliseFingerprint(fp);
  if (!FINGERPRINT_RE.test(n)) {
    throw new UsageError(`${source} must be a SHA-256 fingerprint of 32 hex byte pairs joined by ":" (aa:bb:…), got ${JSON.stringify(fp)}`);
  }
  return n;
}

/** Percent-encoding of upstream's DEFAULT_ENCODE_SET (controls, space, "#<>`?{}, DEL, non-ASCII). */
export function encodeDefaultSet(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const keep = b > 0x20 && b < 0x7f && !'"#<>`?{}'.includes(String.fromCharCode(b));
    out += keep ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The query string the way upstream builds it: keys sorted, form-urlencoded, undefined left out. */
export function buildQuery(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const k of Object.keys(params).sort()) {
    const v = params[k];
    if (v !== undefined) q.append(k, String(v));
  }
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

/** A server's error text, trimmed to one readable line. */
export function errorText(body: Buffer): string {
  const t = body.toString('utf8').replace(/\s+/g, ' ').trim();
  return t.length > MAX_ERROR_TEXT ? `${t.slice(0, MAX_ERROR_TEXT)}…` : t;
}

interface Ticket {
  ticket: string;
  csrf: string;
  cookieName: string;
  at: number;
}

export class PbsClient {
  /** `host:port`, how messages name the server. */
  readonly server: string;
  private secretValue: Promise<string> | undefined;
  private ticket: Ticket | undefined;
  private ticketPending: Promise<Ticket> | undefined;

  constructor(readonly opts: PbsClientOptions) {
    this.server = `${opts.address.host}:${opts.address.port}`;
  }

  get address(): PbsAddress {
    return this.opts.address;
  }

  /** `host:port:store`. */
  get label(): string {
    return formatPbsAddress(this.opts.address);
  }

  private secret(): Promise<string> {
    this.secretValue ??= this.opts.secret();
    return this.secretValue;
  }

  /** A TLS connection whose certificate has been accepted (CA-valid, or the pinned fingerprint). */
  async connect(): Promise<TLSSocket> {
    const host = socketHost(this.opts.address);
    const socket = tls.connect({
      host,
      port: this.opts.address.port,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      // The certificate is judged below, before a byte is sent; no ALPN (upstream sets none).
      rejectUnauthorized: false,
      ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}),
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 120_000);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new IoError(`${this.server}: no TLS connection within ${this.opts.timeouts.connectMs / 1000} s; check the host, the port and the network`));
        }, this.opts.timeouts.connectMs);
        socket.once('secureConnect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (e) => {
          clearTimeout(timer);
          reject(this.networkError(e, 'cannot connect'));
        });
      });
      this.checkCertificate(socket, host);
    } catch (e) {
      socket.destroy();
      throw e;
    }
    return socket;
  }

  private checkCertificate(socket: TLSSocket, host: string): void {
    const cert = socket.getPeerX509Certificate();
    if (cert === undefined) throw new CryptoError(`${this.server}: the server sent no certificate`);
    const actual = normaliseFingerprint(cert.fingerprint256);
    const expected = this.opts.fingerprint;
    if (expected !== undefined) {
      // A pinned fingerprint is checked even for a CA-valid certificate (stricter than upstream).
      if (actual !== expected) {
        throw new CryptoError(
          `${this.server}: the server certificate's fingerprint ${actual} does not match the expected ${expected}; someone may be intercepting the connection, or the server has a new certificate (check it on the server and update --fingerprint / PBS_FINGERPRINT)`,
        );
      }
      return;
    }
    const identity = socket.authorized ? tls.checkServerIdentity(host, socket.getPeerCertificate()) : undefined;
    if (!socket.authorized || identity !== undefined) {
      const why = identity !== undefined ? identity.message : String(socket.authorizationError ?? 'not trusted');
      throw new CryptoError(
        `${this.server}: the server certificate is not trusted (${why}); its SHA-256 fingerprint is ${actual}: if that is your server's (proxmox-backup-manager cert info), pin it with --fingerprint or PBS_FINGERPRINT`,
      );
    }
  }

  /** A network failure as one sentence naming the server. */
  networkError(e: unknown, action: string): PbsfsError {
    if (e instanceof PbsfsError) return e;
    const code = (e as NodeJS.ErrnoException).code;
    const hints: Record<string, string> = {
      ECONNREFUSED: 'connection refused: is the PBS server running, and is the port right?',
      ENOTFOUND: 'unknown host: check the host name',
      EAI_AGAIN: 'the host name cannot be resolved right now: check DNS',
      ECONNRESET: 'the server closed the connection',
      EHOSTUNREACH: 'host unreachable: check the network',
      ENETUNREACH: 'network unreachable: check the network',
      ETIMEDOUT: 'the connection timed out: check the host, the port and the network',
      EPIPE: 'the server closed the connection',
    };
    const hint = (code !== undefined ? hints[code] : undefined) ?? (e instanceof Error ? e.message : String(e));
    if (code === 'ENOTFOUND') return new NotFoundError(`${this.server}: ${action}: ${hint}`, { cause: e });
    return new IoError(`${this.server}: ${action}: ${hint}`, { cause: e, ...(code !== undefined ? { code } : {}) });
  }

  /** Headers that authenticate a request (REST or the reader upgrade). */
  async authHeaders(): Promise<Record<string, string>> {
    const { authId } = this.opts.address;
    if (isTokenAuthId(authId)) {
      return { Authorization: `PBSAPIToken ${authId}:${encodeDefaultSet(await this.secret())}` };
    }
    const t = await this.currentTicket();
    return { Cookie: `${t.cookieName}=${encodeDefaultSet(t.ticket)}`, CSRFPreventionToken: t.csrf };
  }

  /** Drops the ticket so that the next request logs in again (after a 401). */
  forgetTicket(): boolean {
    if (isTokenAuthId(this.opts.address.authId)) return false;
    this.ticket = undefined;
    return true;
  }

  private async currentTicket(): Promise<Ticket> {
    const t = this.ticket;
    if (t !== undefined && Date.now() - t.at < TICKET_RENEW_MS) return t;
    this.ticketPending ??= this.login(t).finally(() => (this.ticketPending = undefined));
    const fresh = await this.ticketPending;
    this.ticket = fresh;
    return fresh;
  }

  /** POST /access/ticket: renews with the current ticket, else (or if that fails) the password. */
  private async login(old: Ticket | undefined): Promise<Ticket> {
    const username = this.opts.address.authId;
    if (old !== undefined) {
      try {
        return await this.postTicket(username, old.ticket);
      } catch (e) {
        if (!(e instanceof CryptoError)) throw e;
      }
    }
    return this.postTicket(username, await this.secret());
  }

  private async postTicket(username: string, password: string): Promise<Ticket> {
    const body = Buffer.from(JSON.stringify({ username, password }));
    const r = await this.send('POST', '/api2/json/access/ticket', {}, body, MAX_ERROR_TEXT * 64);
    if (r.status === 401) throw new CryptoError(`${this.server}: authentication failed for ${username}: check the password (PBS_PASSWORD)`);
    if (r.status !== 200) throw this.statusError(r, 'login');
    const data = jsonData(r.body, `${this.server} /access/ticket`) as Record<string, unknown> | null;
    let ticket = typeof data?.ticket === 'string' ? data.ticket : undefined;
    const csrf = data?.CSRFPreventionToken;
    let cookieName = 'PBSAuthCookie';
    for (const c of [r.headers['set-cookie'] ?? []].flat()) {
      const m = /^__Host-PBSAuthCookie=([^;]*)/.exec(c);
      if (m) {
        cookieName = '__Host-PBSAuthCookie';
        ticket = decodeURIComponent(m[1]!);
      }
    }
    if (ticket === undefined || typeof csrf !== 'string') {
      throw new FormatError(`${this.server}: the login answer has no ticket or CSRFPreventionToken`);
    }
    return { ticket, csrf, cookieName, at: Date.now() };
  }

  /** One HTTP/1.1 request on a fresh verified connection; the body is read up to `maxBytes`. */
  async send(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    maxBytes: number,
  ): Promise<HttpReply> {
    const socket = await this.connect();
    const { timeouts } = this.opts;
    return new Promise<HttpReply>((resolve, reject) => {
      let settled = false;
      const fail = (e: PbsfsError): void => {
        if (settled) return;
        settled = true;
        req.destroy();
        socket.destroy();
        reject(e);
      };
      const req = http.request({
        createConnection: () => socket,
        method,
        path,
        headers: {
          Host: `${this.opts.address.host}:${this.opts.address.port}`,
          'User-Agent': USER_AGENT,
          'Content-Type': body !== undefined ? 'application/json' : 'application/x-www-form-urlencoded',
          ...(body !== undefined ? { 'Content-Length': String(body.length) } : {}),
          ...headers,
        },
      });
      req.setTimeout(timeouts.idleMs, () =>
        fail(new IoError(`${this.server}: no answer to ${method} ${path.split('?')[0]} within ${timeouts.idleMs / 1000} s (server stalled)`)),
      );
      req.on('error', (e) => fail(this.networkError(e, `${method} ${path.split('?')[0]} failed`)));
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        let len = 0;
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (declared > maxBytes) {
          fail(new LimitError(`${this.server}: the answer to ${path.split('?')[0]} is ${declared} bytes, more than the ${maxBytes}-byte limit`));
          return;
        }
        res.on('data', (d: Buffer) => {
          len += d.length;
          if (len > maxBytes) {
            fail(new LimitError(`${this.server}: the answer to ${path.split('?')[0]} is larger than the ${maxBytes}-byte limit`));
            return;
          }
          parts.push(d);
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          socket.end();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) });
        });
        res.on('error', (e) => fail(this.networkError(e, `reading the answer to ${path.split('?')[0]} failed`)));
        res.on('aborted', () => fail(new IoError(`${this.server}: the server dropped the connection during the answer to ${path.split('?')[0]}`)));
      });
      req.end(body);
    });
  }

  /**
   * GET of a JSON API path under /api2/json; returns `data`. A 401 with ticket auth logs in again
   * once (the ticket may have expired on the server).
   */
  async getJson(path: string, query: Record<string, string | number | boolean | undefined> = {}): Promise<unknown> {
    const full = `/api2/json${path}${buildQuery(query)}`;
    for (let attempt = 0; ; attempt++) {
      const r = await this.send('GET', full, await this.authHeaders(), undefined, MAX_JSON_BYTES);
      if (r.status === 401 && attempt === 0 && this.forgetTicket()) continue;
      if (r.status !== 200) throw this.statusError(r, `GET ${path}`);
      return jsonData(r.body, `${this.server} ${path}`);
    }
  }

  /** A non-success HTTP status as one sentence with the server's own text. */
  statusError(r: { status: number; body: Buffer }, what: string): PbsfsError {
    const text = errorText(r.body);
    const said = text !== '' ? `: ${text}` : '';
    if (r.status === 401) {
      return new CryptoError(
        `${this.server}: authentication failed for ${this.opts.address.authId} (${what}, HTTP 401${said}); check the ${isTokenAuthId(this.opts.address.authId) ? 'API token secret' : 'password'} (PBS_PASSWORD)`,
      );
    }
    if (r.status === 403 || /no permissions? on|permission check failed/.test(text)) {
      return new CryptoError(`${this.server}: permission denied (${what}${said}); the user or token needs Datastore.Read or Datastore.Audit there`);
    }
    if (r.status === 404) return new NotFoundError(`${this.server}: not found (${what}${said})`);
    return new IoError(`${this.server}: ${what} failed with HTTP ${r.status}${said}`);
  }
}

/** `data` of a `{"data": …}` answer; anything else is a FormatError naming the call. */
export function jsonData(body: Buffer, what: string): unknown {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new FormatError(`${what}: the server's answer is not JSON`);
  }
  if (v === null || typeof v !== 'object' || !('data' in v)) throw new FormatError(`${what}: the server's answer has no "data" member`);
  return (v as { data: unknown }).data;
}
