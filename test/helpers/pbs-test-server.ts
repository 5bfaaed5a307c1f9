/**
 * A PBS server for the tests, written from pbs-remote-4.2.md §4.3: HTTPS on 127.0.0.1 (port 0),
 * the listing API with upstream's JSON shapes, tickets and API tokens, and the reader protocol
 * (HTTP/1.1 upgrade, then HTTP/2 on the same connection) with the per-session chunk allowlist.
 * It serves a datastore directory read-only, and has knobs for a misbehaving server: latency,
 * stalls, dropped streams, 401 after N requests, corrupt or oversized chunks, an old server
 * without namespaces, namespaces without permission.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { decodeManifestBlob, MANIFEST_BLOB_NAME } from '../../src/manifest/manifest.js';
import { parseIndex } from '../../src/index/parse-index.js';
import {
  formatBackupTime,
  formatNamespace,
  groupRelPath,
  isBackupType,
  parseNamespace,
  snapshotRelPath,
  type Namespace,
  type SnapshotRef,
} from '../../src/store/backup-ref.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';

export const READER_PROTOCOL = 'proxmox-backup-reader-protocol-v1';

export interface PbsTestServerKnobs {
  /** Delay before every answer inside reader sessions. */
  latencyMs?: number;
  /** Paths (REST or reader, with query) that are never answered. */
  stall?: RegExp;
  /** Reader paths whose body is cut (RST_STREAM) after `bytes`, `times` times (default always). */
  drop?: { path: RegExp; bytes: number; times?: number };
  /** Every request after this many authenticated ones is answered 401 (tickets then expire). */
  unauthorizedAfter?: number;
  /** Chunks (hex digest) served with one byte flipped in the middle. */
  corruptChunks?: Set<string>;
  /** Chunks (hex digest) served as 20 MiB of garbage. */
  oversizedChunks?: Set<string>;
  /** Answer the namespace API with 404, as a server older than namespaces. */
  noNamespaceApi?: boolean;
  /** Namespaces (`a/b`) the client may not read. */
  deniedNamespaces?: string[];
  /** Sessions are dropped by the server after this many chunk answers (then: reconnect). */
  dropSessionAfterChunks?: number;
}

export interface PbsTestServerOptions {
  root: string;
  store?: string;
  key: string;
  cert: string;
  /** API tokens `user@realm!name` -> secret. */
  tokens?: Record<string, string>;
  /** Users `user@realm` -> password. */
  users?: Record<string, string>;
  knobs?: PbsTestServerKnobs;
}

interface SessionState {
  allowed: Set<string>;
  chunksServed: number;
}

export interface PbsTestServerStats {
  restRequests: number;
  sessions: number;
  downloads: string[];
  chunkRequests: number;
  logins: number;
  /** Authorization / Cookie headers seen (to check that secrets are sent as specified). */
  authHeaders: string[];
}

const JSON_TYPE = 'application/json;charset=UTF-8';

export class PbsTestServer {
  readonly store: string;
  knobs: PbsTestServerKnobs;
  readonly stats: PbsTestServerStats = { restRequests: 0, sessions: 0, downloads: [], chunkRequests: 0, logins: 0, authHeaders: [] };
  private server: https.Server | undefined;
  private readonly sockets = new Set<Socket | Duplex>();
  private readonly tickets = new Map<string, { user: string; csrf: string }>();
  private authenticated = 0;
  private ds!: LocalDatastore;
  port = 0;

  constructor(private readonly opts: PbsTestServerOptions) {
    this.store = opts.store ?? 'store1';
    this.knobs = opts.knobs ?? {};
  }

  /** `AUTHID@127.0.0.1:PORT:STORE`. */
  repository(authId: string): string {
    return `${authId}@127.0.0.1:${this.port}:${this.store}`;
  }

  async start(): Promise<this> {
    this.ds = await LocalDatastore.open(this.opts.root);
    const server = https.createServer({ key: this.opts.key, cert: this.opts.cert }, (req, res) => {
      void this.rest(req, res).catch((e: unknown) => {
        if (!res.headersSent) this.fail(res, 400, String((e as Error).message));
      });
    });
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => void this.upgrade(req, socket, head));
    server.on('secureConnection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private fail(res: ServerResponse | Http2ServerResponse, status: number, text: string): void {
    (res as ServerResponse).writeHead(status, { 'Content-Type': JSON_TYPE });
    res.end(text);
  }

  private ok(res: ServerResponse, data: unknown): void {
    res.writeHead(200, { 'Content-Type': JSON_TYPE });
    res.end(JSON.stringify({ data }));
  }

  /** The caller's user (auth id) or undefined: API token or ticket cookie (+ CSRF for non-GET). */
  private authenticate(req: IncomingMessage): string | undefined {
    const a = req.headers.authorization;
    const cookie = req.headers.cookie;
    if (a !== undefined) this.stats.authHeaders.push(a);
    if (cookie !== undefined) this.stats.authHeaders.push(cookie);
    let who: string | undefined;
    const m = a !== undefined ? /^PBSAPIToken[ =]([^:]+):(.*)$/.exec(a) : null;
    if (m) {
      const secret = decodeURIComponent(m[2]!);
      if (this.opts.tokens?.[m[1]!] === secret) who = m[1];
    } else if (cookie !== undefined) {
      const c = /(?:^|;\s*)(?:__Host-)?PBSAuthCookie=([^;]*)/.exec(cookie);
      const t = c ? this.tickets.get(decodeURIComponent(c[1]!)) : undefined;
      if (t && (req.method === 'GET' || req.headers.csrfpreventiontoken === t.csrf)) who = t.user;
    }
    if (who === undefined) return undefined;
    this.authenticated++;
    const after = this.knobs.unauthorizedAfter;
    if (after !== undefined && this.authenticated > after) {
      this.tickets.clear();
      return undefined;
    }
    return who;
  }

  private async body(req: IncomingMessage): Promise<string> {
    const parts: Buffer[] = [];
    for await (const d of req) parts.push(d as Buffer);
    return Buffer.concat(parts).toString('utf8');
  }

  private denied(ns: Namespace): string | undefined {
    const s = formatNamespace(ns);
    const hit = (this.knobs.deniedNamespaces ?? []).some((d) => s === d || s.startsWith(`${d}/`));
    return hit ? `no permissions on /datastore/${this.store}${ns.length ? `/${s}` : ''}` : undefined;
  }

  private async rest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.restRequests++;
    const url = new URL(req.url ?? '/', 'https://localhost');
    if (this.knobs.stall?.test(url.pathname + url.search)) return; // never answered
    const path = url.pathname.replace(/\/+$/, '');
    const q = url.searchParams;
    if (req.method === 'POST' && path === '/api2/json/access/ticket') {
      const text = await this.body(req);
      let p: Record<string, string>;
      try {
        p = (req.headers['content-type'] ?? '').includes('json') ? (JSON.parse(text) as Record<string, string>) : Object.fromEntries(new URLSearchParams(text));
      } catch {
        return this.fail(res, 400, 'unable to parse parameters');
      }
      const user = p.username ?? '';
      const viaTicket = this.tickets.get(p.password ?? '');
      const good = this.opts.users?.[user] !== undefined && (this.opts.users[user] === p.password || viaTicket?.user === user);
      if (!good) return this.fail(res, 401, 'authentication failed');
      this.stats.logins++;
      const hex = Math.floor(Date.now() / 1000).toString(16).toUpperCase().padStart(8, '0');
      const ticket = `PBS:${user}:${hex}::${randomBytes(24).toString('base64').replace(/=+$/, '')}`;
      const csrf = `${hex}:${randomBytes(16).toString('base64').replace(/=+$/, '')}`;
      this.tickets.set(ticket, { user, csrf });
      return this.ok(res, { username: user, ticket, CSRFPreventionToken: csrf });
    }
    const who = this.authenticate(req);
    if (who === undefined) return this.fail(res, 401, 'authentication failed - invalid credentials');
    if (req.method !== 'GET') return this.fail(res, 405, 'method not allowed');
    if (path === '/api2/json/version') return this.ok(res, { version: '4.2.3', release: '1', repoid: 'c0ffee' });
    if (path === '/api2/json/admin/datastore') {
      return this.ok(res, [{ store: this.store, comment: null, 'mount-status': 'nonremovable', 'backend-type': 'filesystem' }]);
    }
    const m = /^\/api2\/json\/admin\/datastore\/([^/]+)\/(namespace|groups|snapshots|files)$/.exec(path);
    if (!m) return this.fail(res, 404, `Path '${url.pathname}' not found.`);
    if (m[1] !== this.store) return this.fail(res, 400, `datastore '${m[1]}' does not exist`);
    const ns = parseNamespace(q.get('ns') ?? q.get('parent') ?? '');
    const deny = this.denied(ns);
    if (deny !== undefined) return this.fail(res, 403, deny);
    switch (m[2]) {
      case 'namespace': {
        if (this.knobs.noNamespaceApi) return this.fail(res, 404, `Path '${url.pathname}' not found.`);
        const depth = Number(q.get('max-depth') ?? 7);
        const below = (await this.ds.listNamespaces(ns)).filter((c) => c.length - ns.length <= depth && this.denied(c) === undefined);
        return this.ok(res, [{ ns: formatNamespace(ns) }, ...below.map((c) => ({ ns: formatNamespace(c) }))]);
      }
      case 'groups': {
        const groups = await this.ds.listGroups(ns);
        const out = [];
        for (const g of groups) {
          const snaps = await this.ds.listSnapshots(ns, g);
          const done = snaps.filter((s) => s.complete);
          const last = done.length > 0 ? done[done.length - 1]!.time : snaps.length === 1 ? snaps[0]!.time : 0;
          const item: Record<string, unknown> = {
            'backup-type': g.type,
            'backup-id': g.id,
            'last-backup': last,
            'backup-count': snaps.length,
            files: done.length > 0 ? done[done.length - 1]!.files : [],
          };
          const owner = this.owner(ns, g);
          if (owner !== undefined) item.owner = owner;
          out.push(item);
        }
        return this.ok(res, out);
      }
      case 'snapshots': {
        const type = q.get('backup-type');
        const id = q.get('backup-id');
        const groups = (await this.ds.listGroups(ns)).filter((g) => (type === null || g.type === type) && (id === null || g.id === id));
        const out = [];
        for (const g of groups) for (const s of await this.ds.listSnapshots(ns, g)) out.push(this.snapshotItem(ns, s));
        return this.ok(res, out);
      }
      case 'files': {
        const type = q.get('backup-type') ?? '';
        const ref = { type, id: q.get('backup-id') ?? '', time: Number(q.get('backup-time')) } as SnapshotRef;
        if (!isBackupType(type) || !(await this.ds.hasSnapshot(ns, ref))) return this.fail(res, 400, 'snapshot does not exist.');
        return this.ok(res, this.snapshotItem(ns, { ...ref, files: await this.ds.listSnapshotFiles(ns, ref) }).files);
      }
    }
  }

  private owner(ns: Namespace, g: { type: string; id: string }): string | undefined {
    try {
      return readFileSync(join(this.opts.root, groupRelPath(ns, g as SnapshotRef), 'owner'), 'utf8').trim();
    } catch {
      return undefined;
    }
  }

  /** SnapshotListItem as backup_info_to_snapshot_list_item builds it. */
  private snapshotItem(ns: Namespace, s: SnapshotRef & { files: string[] }): Record<string, unknown> {
    const dir = join(this.opts.root, snapshotRelPath(ns, s));
    const item: Record<string, unknown> = { 'backup-type': s.type, 'backup-id': s.id, 'backup-time': s.time };
    let files: Record<string, unknown>[] = s.files.map((f) => ({ filename: f }));
    try {
      const raw = readFileSync(join(dir, MANIFEST_BLOB_NAME));
      const m = decodeManifestBlob(raw, MANIFEST_BLOB_NAME);
      const notes = m.unprotected.notes;
      if (typeof notes === 'string' && notes !== '') item.comment = notes.split('\n')[0];
      const vs = m.unprotected.verify_state as { upid?: string; state?: string } | undefined;
      if (vs?.upid !== undefined && vs.state !== undefined) item.verification = { upid: vs.upid, state: vs.state };
      const fp = m.unprotected['key-fingerprint'];
      if (typeof fp === 'string') item.fingerprint = fp;
      const listed = m.files.map((f) => ({ filename: f.filename, 'crypt-mode': f.cryptMode, size: f.size }));
      listed.push({ filename: MANIFEST_BLOB_NAME, 'crypt-mode': m.signature !== null ? 'sign-only' : 'none', size: raw.length });
      const known = new Set(listed.map((f) => f.filename));
      files = [...listed, ...s.files.filter((f) => !known.has(f)).map((f) => ({ filename: f }))];
      item.size = listed.reduce((a, f) => a + f.size, 0);
    } catch {
      // no readable manifest: names only, no size (an unfinished backup)
    }
    item.files = files;
    const owner = this.owner(ns, s);
    if (owner !== undefined) item.owner = owner;
    item.protected = existsSync(join(dir, '.protected'));
    return item;
  }

  private refuse(socket: Socket, status: number, text: string): void {
    const reason = status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 404 ? 'Not Found' : 'Bad Request';
    socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
  }

  /** GET /api2/json/reader with Upgrade: the checks of §1.6, then HTTP/2 on this socket. */
  private async upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    this.stats.restRequests++;
    const url = new URL(req.url ?? '/', 'https://localhost');
    if (this.knobs.stall?.test(url.pathname + url.search)) return;
    if (url.pathname.replace(/\/+$/, '') !== '/api2/json/reader') return this.refuse(socket, 404, `Path '${url.pathname}' not found.`);
    const who = this.authenticate(req);
    if (who === undefined) return this.refuse(socket, 401, 'authentication failed - invalid credentials');
    const q = url.searchParams;
    const ns = parseNamespace(q.get('ns') ?? '');
    const deny = this.denied(ns);
    if (deny !== undefined) return this.refuse(socket, 403, deny);
    if (q.get('store') !== this.store) return this.refuse(socket, 400, `datastore '${q.get('store')}' does not exist`);
    const proto = req.headers.upgrade;
    if (proto === undefined) return this.refuse(socket, 400, 'missing Upgrade header');
    if (proto !== READER_PROTOCOL) return this.refuse(socket, 400, 'invalid protocol name');
    const type = q.get('backup-type') ?? '';
    const ref = { type, id: q.get('backup-id') ?? '', time: Number(q.get('backup-time')) } as SnapshotRef;
    if (!isBackupType(type) || !(await this.ds.hasSnapshot(ns, ref).catch(() => false))) {
      return this.refuse(socket, 400, `snapshot ${type}/${ref.id}/${Number.isFinite(ref.time) ? formatBackupTime(ref.time) : '?'} does not exist.`);
    }
    this.stats.sessions++;
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${READER_PROTOCOL}\r\n\r\n`);
    const state: SessionState = { allowed: new Set(), chunksServed: 0 };
    const dir = join(this.opts.root, snapshotRelPath(ns, ref));
    const h2 = http2.createServer({ settings: { initialWindowSize: 32 * 1024 * 1024, maxFrameSize: 4 * 1024 * 1024 } }, (r, w) => {
      void this.reader(state, dir, r, w, socket).catch((e: unknown) => {
        if (!w.headersSent) this.fail(w, 400, String((e as Error).message));
        else w.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      });
    });
    // The upgraded TLS socket is not an h2-negotiated one: hand http2 a plain duplex over it.
    const duplex = new Duplex({
      read: () => socket.resume(),
      write: (chunk: Buffer, _enc, cb) => {
        if (socket.destroyed) cb();
        else socket.write(chunk, () => cb());
      },
      final: (cb) => {
        socket.end();
        cb();
      },
      destroy: (err, cb) => {
        socket.destroy();
        cb(err);
      },
    });
    if (head.length > 0) duplex.push(head);
    socket.on('data', (d: Buffer) => {
      if (!duplex.push(d)) socket.pause();
    });
    socket.on('end', () => duplex.push(null));
    socket.on('close', () => duplex.destroy());
    socket.on('error', () => duplex.destroy());
    duplex.on('error', () => socket.destroy());
    this.sockets.add(duplex);
    duplex.on('close', () => this.sockets.delete(duplex));
    h2.emit('connection', duplex);
  }

  private async reader(state: SessionState, dir: string, req: Http2ServerRequest, res: Http2ServerResponse, socket: Socket): Promise<void> {
    const url = new URL(req.url, 'https://localhost');
    const k = this.knobs;
    if (k.latencyMs) await new Promise((r) => setTimeout(r, k.latencyMs));
    if (k.stall?.test(url.pathname + url.search)) return;
    const path = url.pathname.replace(/^\/+|\/+$/g, '');
    let body: Buffer;
    if (path === 'download') {
      const name = url.searchParams.get('file-name') ?? '';
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name)) return this.fail(res, 400, `parameter verification errors: file-name`);
      this.stats.downloads.push(name);
      const file = join(dir, name);
      try {
        body = await readWhole(file);
      } catch {
        return this.fail(res, 404, `open file "${file}" failed - not found`);
      }
      if (/\.(fidx|didx)$/.test(name)) {
        const index = parseIndex(body, name);
        for (let i = 0; i < index.count; i++) state.allowed.add(index.digest(i).toString('hex'));
      }
    } else if (path === 'chunk') {
      this.stats.chunkRequests++;
      const hex = url.searchParams.get('digest') ?? '';
      if (!/^[0-9a-f]{64}$/.test(hex)) return this.fail(res, 400, 'parameter verification errors: digest');
      if (!state.allowed.has(hex)) return this.fail(res, 401, `download chunk ${hex} not allowed`);
      const file = join(this.opts.root, '.chunks', hex.slice(0, 4), hex);
      try {
        body = await readWhole(file);
      } catch {
        return this.fail(res, 400, `reading file "${file}" failed: No such file or directory (os error 2)`);
      }
      if (k.corruptChunks?.has(hex)) {
        body = Buffer.from(body);
        const mid = body.length >> 1;
        body.writeUInt8(body.readUInt8(mid) ^ 0x55, mid);
      }
      if (k.oversizedChunks?.has(hex)) body = Buffer.alloc(20 * 1024 * 1024, 0x42);
      state.chunksServed++;
      if (k.dropSessionAfterChunks !== undefined && state.chunksServed > k.dropSessionAfterChunks) {
        state.chunksServed = 0;
        socket.destroy();
        return;
      }
    } else if (path === 'speedtest') {
      body = Buffer.alloc(1024 * 1024, 0x41);
    } else if (path === '') {
      res.writeHead(200, { 'content-type': JSON_TYPE });
      res.end(JSON.stringify({ data: [{ subdir: 'chunk' }, { subdir: 'download' }, { subdir: 'speedtest' }] }));
      return;
    } else {
      return this.fail(res, 404, `Path '/${path}' not found.`);
    }
    const drop = k.drop;
    if (drop !== undefined && drop.path.test(url.pathname + url.search) && (drop.times === undefined || drop.times > 0)) {
      if (drop.times !== undefined) drop.times--;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(body.subarray(0, drop.bytes));
      setTimeout(() => res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(body);
  }
}

async function readWhole(path: string): Promise<Buffer> {
  if (!statSync(path).isFile()) throw new Error('not a file');
  const fh = await openFile(path, 'r');
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

